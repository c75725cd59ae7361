"""What a marketplace may read: its earnings, its creators' balances, its payouts.

Every query here is scoped to one marketplace in SQL, so another tenant's id is simply not
found; nothing says whether it exists. Amounts leave as strings of base units.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.errors import NotFound

# The payout states in which the creator's money has left the creator's balance but is not
# yet paid for good.
IN_PAYOUT = ("pending", "batched", "submitted", "confirmed")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def earning(session: Session, marketplace_id: int, credit_id: int) -> dict[str, Any]:
    row = session.execute(
        text(
            """
            SELECT c.id, c.idempotency_key, cr.external_id AS creator_id, c.amount, a.symbol,
                   c.occurred_at, c.reference, c.metadata, c.created_at, c.state,
                   p.id AS payout_id, p.state AS payout_state, b.tx_hash, b.block_number
              FROM credits c
              JOIN creators cr ON cr.id = c.creator_id
              JOIN assets a ON a.id = c.asset_id
              LEFT JOIN payouts p ON p.id = c.payout_id
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
    """Per asset: accrued (not yet rolled up, dust carried included), in payout, paid."""
    creator_id = session.execute(
        text("SELECT id FROM creators WHERE marketplace_id = :m AND external_id = :x"),
        {"m": marketplace_id, "x": external_id},
    ).scalar()
    if creator_id is None:
        raise NotFound(f"creator {external_id}")
    rows = session.execute(
        text(
            """
            WITH accrued AS (
                SELECT asset_id, sum(amount) AS amount FROM credits
                 WHERE creator_id = :c AND state IN ('accrued', 'held') GROUP BY asset_id
            ), dust AS (
                SELECT a.asset_id, -sum(e.amount) AS amount
                  FROM accounts a JOIN entries e ON e.account_id = a.id
                 WHERE a.kind = 'creator_dust' AND a.owner_id = :c GROUP BY a.asset_id
            ), payouts AS (
                SELECT asset_id,
                       sum(amount) FILTER (WHERE state = ANY(:in_payout)) AS in_payout,
                       sum(amount) FILTER (WHERE state = 'finalized') AS paid
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
        {"c": creator_id, "in_payout": list(IN_PAYOUT)},
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
    included = row.block_number is not None and row.batch_state in (
        "included",
        "confirmed",
        "finalized",
    )
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
        "tx_hash": row.tx_hash,
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
                " WHERE entity = 'payout' AND entity_id = :id ORDER BY id"
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
