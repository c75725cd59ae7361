"""Account kinds and their bulk creation.

Entries are signed: positive is a debit, negative a credit. A liability (what we owe a
creator) therefore carries a negative balance; ``owed`` flips the sign for display.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import text
from sqlalchemy.orm import Session


class AccountKind(StrEnum):
    CREATOR_PAYABLE = "creator_payable"  # what we owe a creator, not yet in a payout
    CREATOR_DUST = "creator_dust"  # the remainder a rounded payout left behind, carried
    MARKETPLACE_FUNDING = "marketplace_funding"  # what a marketplace owes us for its earnings
    PAYOUTS_IN_FLIGHT = "payouts_in_flight"  # rolled into payouts, not yet final on chain
    HOT_WALLET = "hot_wallet"  # the tokens in the paying wallet
    GAS_EXPENSE = "gas_expense"  # native currency burnt as transaction fees
    CLAIMABLE = "claimable"  # a creator's payouts settled by claim, not yet claimed on chain
    CLAIMS_ESCROW = "claims_escrow"  # the tokens the PayoutClaims escrow holds (no owner)


AccountKey = tuple[AccountKind, int | None, int]  # kind, owner id, asset id


def ensure_accounts(session: Session, keys: Iterable[AccountKey]) -> dict[AccountKey, int]:
    """Return the id of each account, creating the missing ones in one statement."""
    unique = sorted(set(keys), key=lambda k: (k[0], k[1] or 0, k[2]))
    if not unique:
        return {}
    params = {
        "kinds": [str(k[0]) for k in unique],
        "owners": [k[1] for k in unique],
        "assets": [k[2] for k in unique],
    }
    session.execute(
        text(
            """
            INSERT INTO accounts (kind, owner_id, asset_id)
            SELECT * FROM unnest(CAST(:kinds AS text[]), CAST(:owners AS bigint[]),
                                 CAST(:assets AS bigint[]))
            ON CONFLICT DO NOTHING
            """
        ),
        params,
    )
    # Equality on owner_id, not IS NOT DISTINCT FROM: only equality lets the planner use the
    # unique index (the other form compared every account with every key, O(n*m)).
    rows = session.execute(
        text(
            """
            WITH k AS (
                SELECT * FROM unnest(CAST(:kinds AS text[]), CAST(:owners AS bigint[]),
                                     CAST(:assets AS bigint[])) AS k(kind, owner_id, asset_id)
            )
            SELECT a.id, a.kind, a.owner_id, a.asset_id FROM accounts a
              JOIN k ON a.kind = k.kind AND a.owner_id = k.owner_id AND a.asset_id = k.asset_id
            UNION ALL
            SELECT a.id, a.kind, a.owner_id, a.asset_id FROM accounts a
              JOIN k ON a.kind = k.kind AND a.owner_id IS NULL AND k.owner_id IS NULL
               AND a.asset_id = k.asset_id
            """
        ),
        params,
    )
    return {(AccountKind(r.kind), r.owner_id, r.asset_id): r.id for r in rows}


def account_id(session: Session, kind: AccountKind, owner_id: int | None, asset_id: int) -> int:
    return ensure_accounts(session, [(kind, owner_id, asset_id)])[(kind, owner_id, asset_id)]
