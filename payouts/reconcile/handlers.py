"""The reconcile handler: beat's task every few seconds and an operator's ``payouts reconcile``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.claims import escrow
from payouts.claims.onchain import ClaimsReport
from payouts.reconcile.finality import advance
from payouts.reconcile.scan import ReconcileReport, scan
from payouts.runtime import Runtime

# Memory for each sort and CTE of a reconcile's statements, for its transaction only: moving
# 100,000 payouts sorts their events (tens of MB) and keeps the moved rows between CTEs, and
# with the server's default (4 MB) both spill to temporary files, a third of the statement.
WORK_MEM = "64MB"


def _room_to_sort(session: Session) -> None:
    session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))


@dataclass(frozen=True)
class ReconcileOutcome:
    scan: ReconcileReport
    advance: ReconcileReport
    claims: ClaimsReport | None = None  # None: no escrow configured


def reconcile(
    rt: Runtime,
    *,
    actor: str = "reconciler",
    on_blocks: Callable[[int, int], None] | None = None,
) -> ReconcileOutcome:
    """Scan from the checkpoint to the head, then confirm, finalize or unwind what is out
    (``on_blocks``: see ``scan``)."""
    head = rt.chain.block_number()
    rt.asset_ids()
    with rt.uow() as session:
        _room_to_sort(session)
        scanned = scan(
            session,
            rt.chain,
            chain_id=rt.settings.chain_id,
            batcher_address=rt.batcher,
            payer=rt.signer.address,
            tokens=[a.address for a in rt.token_assets() if a.address],
            head=head,
            chunk=rt.settings.log_chunk_blocks,
            actor=actor,
            on_blocks=on_blocks,
        )
        session.commit()
    with rt.uow() as session:
        _room_to_sort(session)
        advanced = advance(
            session,
            rt.chain,
            head=head,
            confirmation_depth=rt.settings.confirmation_depth,
            finality_depth=rt.settings.finality_depth,
            reorg_watch_blocks=rt.settings.reorg_watch_blocks,
            actor=actor,
        )
        session.commit()
    # The escrow's claims and the hot wallet's own transactions, to the same head.
    claims = escrow.reconcile(rt, head=head, actor=actor)
    return ReconcileOutcome(scanned, advanced, claims)
