"""Which inclusions the reconciler read are on the canonical chain.

An inclusion is a batch's transaction in one block. ``onchain_transfers`` keeps the rows of
every inclusion ever read (append-only), so after a reorg it holds the orphaned block's
transfers next to those of the block that carried the batch (or its fee-bumped replacement)
instead. The unwind records each inclusion a reorg took away in ``orphaned_inclusions``
(append-only too, keyed by block hash and tx hash), and every check, report and count reads
the transfers of canonical inclusions only (``CANONICAL_TRANSFERS``):

- those never recorded orphaned, and
- the one its batch stands in now. A block can come back after the reconciler saw it gone (a
  node behind the others answers null for it, a fork choice flips back): the scan then finds
  the batch in that block again and takes it back. The unwind clears the batch's block and
  transaction in the statement that moves it out, so a batch that names an orphaned inclusion
  was put back there by a later scan; its record stays, as history.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.states import BatchState

# The rows of onchain_transfers in canonical inclusions, as a subquery: ``FROM (...) o``.
CANONICAL_TRANSFERS = """
    SELECT o.* FROM onchain_transfers o
      JOIN batches c ON c.id = o.batch_id
      LEFT JOIN orphaned_inclusions x ON x.block_hash = o.block_hash AND x.tx_hash = o.tx_hash
     WHERE x.block_hash IS NULL OR (c.block_hash = o.block_hash AND c.tx_hash = o.tx_hash)
"""


def record_orphaned(
    session: Session, batch_id: int, *, block_number: int, block_hash: str, tx_hash: str
) -> bool:
    """Record that a reorg took the inclusion away; call it after the batch's move back to
    broadcast, whose audit row it names. Returns whether it is new (a block that came back
    and left again keeps its first record)."""
    inserted = session.execute(
        text(
            f"""
            INSERT INTO orphaned_inclusions (block_hash, tx_hash, batch_id, block_number,
                                             unwound_by)
            SELECT :bh, :tx, :b, :n, max(t.id) FROM transitions t
             WHERE t.entity = 'batch' AND t.entity_id = :b
               AND t.to_state = {BatchState.BROADCAST.sql}
            ON CONFLICT (block_hash, tx_hash) DO NOTHING RETURNING 1
            """
        ),
        {"bh": block_hash, "tx": tx_hash, "b": batch_id, "n": block_number},
    ).scalar()
    return inserted is not None


def orphaned_of(session: Session, batch_id: int) -> list[dict[str, Any]]:
    """The inclusions of one batch a reorg took away, oldest first."""
    rows = session.execute(
        text(
            "SELECT block_number, block_hash, tx_hash, seen_at FROM orphaned_inclusions"
            " WHERE batch_id = :b ORDER BY seen_at, block_number"
        ),
        {"b": batch_id},
    )
    return [dict(r._mapping) for r in rows]
