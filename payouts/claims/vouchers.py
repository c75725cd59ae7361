"""Current vouchers, re-derived from the ledger, and the payouts a claim covers.

Nothing here is stored: a voucher is (recipient, token, cumulative) signed now, and the
cumulative is what the payouts say (``settlement.claiming.cumulatives``), so a voucher can be
issued again at any time, after a signer rotation too, and the API being down loses no proof
(``export`` writes every one). A creator's vouchers are one per address and asset their
payouts were ever claimable at: a creator who changed address has the old address's
remainder and the new one's. The cumulative is the address's, whatever creator or
marketplace its payouts belong to, since the escrow records what each address claimed.

A claim for ``cumulative`` covers the payouts of its (recipient, asset) in the order they
became claimable (their first audit row to claimable: one run per asset at a time numbers a
run's rows after the last's) whose running sum stays within it (``covered``, ``COVERED``).
Every voucher ever signed counts whole runs, so a claim never covers part of one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.settlement.claiming import BY_CLAIM, VoucherIssuer, cumulatives, voucher_json
from payouts.states import PayoutState

# The payouts settled by claim of the recipients ``:recipients`` in asset ``:a``, with the
# running sum of amounts in the order they became claimable (``running``): their first
# audit row to claimable (one run per asset at a time numbers a run's rows after the last's),
# then id, as the reconciler orders them (``claims.onchain.COVERAGE``).
ORDERED = f"""
    SELECT p.id, p.recipient, p.asset_id, p.amount, p.state, p.creator_id,
           sum(p.amount) OVER (PARTITION BY p.recipient, p.asset_id
                               ORDER BY became.at, p.id) AS running
      FROM payouts p
      CROSS JOIN LATERAL (
          SELECT min(t.id) AS at FROM transitions t WHERE t.entity = 'payout'
             AND t.entity_id = p.id AND t.to_state = {PayoutState.CLAIMABLE.sql}) became
     WHERE p.settled_by = {BY_CLAIM} AND p.asset_id = :a AND p.recipient = ANY(:recipients)
"""

# The ids of the claimable payouts a claim of ``:cumulative`` by ``:recipient`` covers.
COVERED = f"""
    SELECT o.id FROM ({ORDERED}) o
     WHERE o.running <= :cumulative AND o.state = {PayoutState.CLAIMABLE.sql}
     ORDER BY o.running
"""


def cumulative(session: Session, recipient: str, asset_id: int) -> int:
    """Everything ``recipient`` was ever made able to claim in the asset."""
    return cumulatives(session, asset_id, [recipient]).get(recipient, 0)


def covered(session: Session, recipient: str, asset_id: int, claimed_to: int) -> list[int]:
    """The claimable payouts a claim bringing ``recipient``'s claimed total to ``claimed_to``
    covers, oldest first (those already claimed are not claimable any more)."""
    return list(
        session.execute(
            text(COVERED),
            {"a": asset_id, "recipients": [recipient], "cumulative": claimed_to},
        ).scalars()
    )


@dataclass(frozen=True)
class Token:
    asset_id: int
    symbol: str
    address: str


def _rows(session: Session, creator_id: int | None, asset_ids: list[int]) -> list[Any]:
    """Per (recipient, asset) that ever had a claimable payout (of one creator, or any):
    the cumulative over every creator, and what is claimable, claimed and final of it."""
    return list(
        session.execute(
            text(
                f"""
                WITH keys AS (
                    SELECT DISTINCT recipient, asset_id FROM payouts
                     WHERE settled_by = {BY_CLAIM} AND asset_id = ANY(:assets)
                       AND (CAST(:creator AS bigint) IS NULL OR creator_id = :creator)
                )
                SELECT k.recipient, k.asset_id, sum(p.amount) AS cumulative,
                       coalesce(sum(p.amount) FILTER (
                           WHERE p.state = {PayoutState.CLAIMABLE.sql}), 0) AS claimable,
                       coalesce(sum(p.amount) FILTER (
                           WHERE p.state <> {PayoutState.CLAIMABLE.sql}), 0) AS claimed,
                       array_agg(DISTINCT cr.marketplace_id || ':' || cr.external_id)
                           AS creators
                  FROM keys k
                  JOIN payouts p ON p.recipient = k.recipient AND p.asset_id = k.asset_id
                   AND p.settled_by = {BY_CLAIM}
                  JOIN creators cr ON cr.id = p.creator_id
                 GROUP BY k.recipient, k.asset_id ORDER BY k.recipient, k.asset_id
                """
            ),
            {"assets": asset_ids, "creator": creator_id},
        ).all()
    )


def current(
    session: Session,
    issuer: VoucherIssuer,
    tokens: Mapping[int, Token],
    creator_id: int | None = None,
) -> list[dict[str, Any]]:
    """The current voucher of every (recipient, asset) of one creator (or of everyone),
    signed now, with what is still claimable and what was claimed of it."""
    issuer.bind(session)
    out = []
    for row in _rows(session, creator_id, sorted(tokens)):
        token = tokens[row.asset_id]
        [signed] = issuer.issue(token.address, {row.recipient: int(row.cumulative)}).values()
        out.append(
            {
                "asset": token.symbol,
                "recipient": row.recipient,
                "claimable": str(int(row.claimable)),
                "claimed": str(int(row.claimed)),
                "creators": sorted(row.creators),
                "voucher": voucher_json(signed),
            }
        )
    return out
