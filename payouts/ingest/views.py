"""What a marketplace may read of what it sent: its earnings, its creators and their balances.

Every query here is scoped to one marketplace in SQL, so another tenant's id is simply not
found; nothing says whether it exists. Amounts leave as strings of base units.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.errors import NotFound
from payouts.lifecycle import CREDIT_UNCLAIMED
from payouts.states import PAYOUT_IN_FLIGHT, PayoutState


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def earning(session: Session, marketplace_id: int, credit_id: int) -> dict[str, Any]:
    row = session.execute(
        text(
            """
            SELECT c.id, c.idempotency_key, cr.external_id AS creator_id, c.amount, a.symbol,
                   c.occurred_at, c.reference, c.metadata, c.created_at, s.state,
                   p.id AS payout_id, p.state AS payout_state, b.tx_hash, b.block_number
              FROM credits c
              JOIN credit_states s ON s.credit_id = c.id
              JOIN creators cr ON cr.id = c.creator_id
              JOIN assets a ON a.id = c.asset_id
              LEFT JOIN payouts p ON p.id = s.payout_id
              LEFT JOIN batches b ON b.id = p.batch_id
             WHERE c.id = :id AND c.marketplace_id = :m
            """
        ),
        {"id": credit_id, "m": marketplace_id},
    ).one_or_none()
    if row is None:
        raise NotFound(f"earning {credit_id}")
    out = earning_created(row)
    out["status"] = row.state
    out["payout"] = (
        None
        if row.payout_id is None
        else {
            "id": row.payout_id,
            "status": row.payout_state,
            "tx_hash": row.tx_hash,
            "block_number": row.block_number,
        }
    )
    return out


def earning_created(row: Any) -> dict[str, Any]:
    """The body a successful POST returned; a replay rebuilds exactly this from the row."""
    return {
        "id": row.id,
        "idempotency_key": row.idempotency_key,
        "creator_id": row.creator_id,
        "amount": str(int(row.amount)),
        "asset": row.symbol,
        "occurred_at": _iso(row.occurred_at),
        "reference": row.reference,
        "metadata": row.metadata,
        "created_at": _iso(row.created_at),
        "status": "accrued",  # every earning is accrued when it is recorded
    }


def earnings_created(
    session: Session, marketplace_id: int, credit_ids: list[int]
) -> dict[int, dict[str, Any]]:
    rows = session.execute(
        text(
            """
            SELECT c.id, c.idempotency_key, cr.external_id AS creator_id, c.amount, a.symbol,
                   c.occurred_at, c.reference, c.metadata, c.created_at
              FROM credits c
              JOIN creators cr ON cr.id = c.creator_id
              JOIN assets a ON a.id = c.asset_id
             WHERE c.id = ANY(:ids) AND c.marketplace_id = :m
            """
        ),
        {"ids": credit_ids, "m": marketplace_id},
    )
    return {r.id: earning_created(r) for r in rows}


def creator(session: Session, marketplace_id: int, external_id: str) -> dict[str, Any]:
    row = session.execute(
        text(
            "SELECT id, external_id, payout_address, hold_until, created_at FROM creators"
            " WHERE marketplace_id = :m AND external_id = :x"
        ),
        {"m": marketplace_id, "x": external_id},
    ).one_or_none()
    if row is None:
        raise NotFound(f"creator {external_id}")
    return {
        "creator_id": row.external_id,
        "payout_address": row.payout_address,
        "hold_until": _iso(row.hold_until),
        "created_at": _iso(row.created_at),
    }


def balance(session: Session, marketplace_id: int, external_id: str) -> dict[str, Any]:
    """Per asset: accrued (not yet rolled up, what is carried included), in payout, paid."""
    creator_id = session.execute(
        text("SELECT id FROM creators WHERE marketplace_id = :m AND external_id = :x"),
        {"m": marketplace_id, "x": external_id},
    ).scalar()
    if creator_id is None:
        raise NotFound(f"creator {external_id}")
    rows = session.execute(
        text(
            f"""
            WITH accrued AS (
                SELECT asset_id, sum(amount) AS amount FROM credits c
                 WHERE creator_id = :c AND {CREDIT_UNCLAIMED} GROUP BY asset_id
            ), dust AS (
                SELECT a.asset_id, -b.balance AS amount
                  FROM accounts a JOIN account_balances b ON b.account_id = a.id
                 WHERE a.kind = 'creator_dust' AND a.owner_id = :c
            ), payouts AS (
                SELECT asset_id,
                       sum(amount) FILTER (WHERE state = ANY(:in_payout)) AS in_payout,
                       sum(amount) FILTER (WHERE state = {PayoutState.FINALIZED.sql}) AS paid
                  FROM payouts WHERE creator_id = :c GROUP BY asset_id
            ), assets_seen AS (
                SELECT asset_id FROM accrued UNION SELECT asset_id FROM dust
                UNION SELECT asset_id FROM payouts
            )
            SELECT a.symbol, a.decimals, coalesce(ac.amount, 0) AS accrued,
                   coalesce(d.amount, 0) AS dust, coalesce(p.in_payout, 0) AS in_payout,
                   coalesce(p.paid, 0) AS paid
              FROM assets_seen s JOIN assets a ON a.id = s.asset_id
              LEFT JOIN accrued ac ON ac.asset_id = s.asset_id
              LEFT JOIN dust d ON d.asset_id = s.asset_id
              LEFT JOIN payouts p ON p.asset_id = s.asset_id
             ORDER BY a.symbol
            """
        ),
        {"c": creator_id, "in_payout": [str(s) for s in PAYOUT_IN_FLIGHT]},
    )
    return {
        "creator_id": external_id,
        "balances": [
            {
                "asset": r.symbol,
                "decimals": r.decimals,
                "accrued": str(int(r.accrued) + int(r.dust)),
                "carried_dust": str(int(r.dust)),
                "in_payout": str(int(r.in_payout)),
                "paid": str(int(r.paid)),
            }
            for r in rows
        ],
    }
