"""What a marketplace may read of its payouts: state, batch, transaction, block, history.

Every query here is scoped to one marketplace in SQL, so another tenant's id is simply not
found; nothing says whether it exists. Amounts leave as strings of base units.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.errors import NotFound
from payouts.states import BATCH_SEEN


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


_PAYOUT_SELECT = """
    SELECT p.id, cr.external_id AS creator_id, p.amount, a.symbol, p.recipient, p.state,
           p.window_start, p.created_at, b.public_id AS batch_id, b.state AS batch_state,
           b.nonce, b.tx_hash, b.block_number, b.block_hash,
           (SELECT max(k.block_number) FROM chain_checkpoints k) AS head
      FROM payouts p
      JOIN creators cr ON cr.id = p.creator_id
      JOIN assets a ON a.id = p.asset_id
      LEFT JOIN batches b ON b.id = p.batch_id
"""


def _payout_row(row: Any) -> dict[str, Any]:
    included = row.block_number is not None and row.batch_state in BATCH_SEEN
    return {
        "id": row.id,
        "creator_id": row.creator_id,
        "amount": str(int(row.amount)),
        "asset": row.symbol,
        "recipient": row.recipient,
        "status": row.state,
        "window_start": _iso(row.window_start),
        "created_at": _iso(row.created_at),
        "batch": None
        if row.batch_id is None
        else {"id": str(row.batch_id), "status": row.batch_state, "nonce": row.nonce},
        # The transaction that carries it on the canonical chain, none while it is out.
        "tx_hash": row.tx_hash if included else None,
        "block_number": row.block_number if included else None,
        "block_hash": row.block_hash if included else None,
        # As of the last block the reconciler has read, not a live call to the node.
        "confirmations": max(0, row.head - row.block_number + 1)
        if included and row.head is not None
        else 0,
    }


def payout(session: Session, marketplace_id: int, payout_id: int) -> dict[str, Any]:
    row = session.execute(
        text(_PAYOUT_SELECT + " WHERE p.id = :id AND cr.marketplace_id = :m"),
        {"id": payout_id, "m": marketplace_id},
    ).one_or_none()
    if row is None:
        raise NotFound(f"payout {payout_id}")
    out = _payout_row(row)
    # Its moves; the roll-up's audit row of its creation (no from-state) is the trace's.
    out["transitions"] = [
        {
            "from": t.from_state,
            "to": t.to_state,
            "at": _iso(t.at),
            "cause": t.cause,
            "actor": t.actor,
        }
        for t in session.execute(
            text(
                "SELECT from_state, to_state, cause, actor, at FROM transitions"
                " WHERE entity = 'payout' AND entity_id = :id AND from_state IS NOT NULL"
                " ORDER BY id"
            ),
            {"id": payout_id},
        )
    ]
    return out


def payouts(
    session: Session,
    marketplace_id: int,
    *,
    creator_external_id: str | None,
    before_id: int | None,
    limit: int,
) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first; the second value is the id to continue from, None on the last page."""
    rows = session.execute(
        text(
            _PAYOUT_SELECT
            + """
             WHERE cr.marketplace_id = :m
               AND (CAST(:x AS text) IS NULL OR cr.external_id = :x)
               AND (CAST(:before AS bigint) IS NULL OR p.id < :before)
             ORDER BY p.id DESC LIMIT :limit
            """
        ),
        {"m": marketplace_id, "x": creator_external_id, "before": before_id, "limit": limit + 1},
    ).all()
    page = [_payout_row(r) for r in rows[:limit]]
    return page, (page[-1]["id"] if len(rows) > limit else None)
