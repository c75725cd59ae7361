"""Holds: a payout, or a creator (and so all their payouts), kept out of batches.

Every hold is a row with what it holds, the rule that placed it (an operator, a marketplace, a
velocity limit or outflow ceiling, the deny list, the token's own deny check, the
address-change cool-down, a transfer the token refused), the reason, the figures that
tripped a rule, who placed it and when it expires. A payout is ``held`` while it has an
active hold of its own; a creator is ``held`` while they have an active creator-wide hold,
and settlement skips their payouts. Ending a hold (released, or rejected in review) is final
and audited, and only the last active hold of a payout or creator lets it go again. A held
payout's amount stays the creator's: released, it is paid like any other. The creator's
marketplace hears of each hold placed (``hold.placed``, in the statement that inserts it) and
ended (``hold.released``, ``hold.rejected``, from the lifecycle).

Rejecting a payout in review cancels it: its amount goes back to the creator as carried
balance (paid with their next payout) and the creator is held (``review_rejected``) until an
operator releases them, so nothing of theirs goes meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import events, lifecycle
from payouts.errors import IllegalTransition, InvalidInput, NotFound
from payouts.ledger.accounts import AccountKind, ensure_accounts
from payouts.ledger.journals import Leg, post
from payouts.states import CreatorState, HoldState, PayoutState

# A token refused a transfer to the creator's address: held until an operator resolves it.
TRANSFER_FAILED = "transfer_failed"
# The creator's payout address changed: held for the cool-down (an account takeover guard).
ADDRESS_COOL_DOWN = "address_cool_down"
# Rules whose holds an operator reviews (approve or reject), as opposed to holds people placed.
REVIEWED_RULES = ("velocity:", "outflow:", "deny_list", "token_deny")


@dataclass(frozen=True)
class NewHold:
    creator_id: int
    rule: str
    reason: str
    payout_id: int | None = None  # None: the creator, and so all their payouts
    figures: Mapping[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None


def place(session: Session, holds: Sequence[NewHold], *, actor: str) -> list[int]:
    """Record the holds and hold what they name, in a few statements whatever their number.
    A payout must be pending (or held already); returns the new holds' ids."""
    if not holds:
        return []
    rows = json.dumps(
        [
            {
                "creator_id": h.creator_id,
                "payout_id": h.payout_id,
                "rule": h.rule,
                "reason": h.reason,
                "figures": dict(h.figures),
                "expires_at": h.expires_at.isoformat() if h.expires_at else None,
            }
            for h in holds
        ]
    )
    # The holds and their hold.placed events, in one statement.
    placed = events.insert_sql("hold", "'hold.placed'", source="placed", cause="m.reason")
    ids = list(
        session.execute(
            text(
                f"""
                WITH placed AS (
                    INSERT INTO holds (creator_id, payout_id, rule, reason, figures, placed_by,
                                       expires_at)
                    SELECT v.creator_id, v.payout_id, v.rule, v.reason, v.figures, :actor,
                           v.expires_at
                      FROM json_to_recordset(CAST(:rows AS json)) AS v(creator_id bigint,
                           payout_id bigint, rule text, reason text, figures jsonb,
                           expires_at timestamptz)
                    RETURNING *, CAST(NULL AS text) AS from_state
                ), evented AS ({placed})
                SELECT id FROM placed ORDER BY id
                """
            ),
            {"rows": rows, "actor": actor, "_event": "{}"},
        ).scalars()
    )
    payouts = sorted({h.payout_id for h in holds if h.payout_id is not None})
    lifecycle.move(
        session,
        lifecycle.PAYOUT,
        payouts,
        PayoutState.HELD,
        cause="; ".join(sorted({f"{h.rule}: {h.reason}" for h in holds if h.payout_id}))[:500],
        actor=actor,
        from_states=[PayoutState.PENDING],
    )
    for h in holds:
        if h.payout_id is None:
            lifecycle.move(
                session,
                lifecycle.CREATOR,
                [h.creator_id],
                CreatorState.HELD,
                cause=f"{h.rule}: {h.reason}",
                actor=actor,
                also={"held_reason": ":reason"},
                params={"reason": h.reason},
            )
    return ids


def end(
    session: Session,
    hold_ids: Sequence[int],
    *,
    actor: str,
    resolution: str,
    to: HoldState = HoldState.RELEASED,
) -> list[int]:
    """End active holds (released or rejected), then let go of every payout and creator that
    has no active hold left. Returns the holds that ended."""
    ended = lifecycle.move(
        session,
        lifecycle.HOLD,
        hold_ids,
        to,
        cause=resolution,
        actor=actor,
        also={"ended_by": ":ended_by", "ended_at": "now()", "resolution": ":resolution"},
        params={"ended_by": actor, "resolution": resolution},
    )
    if not ended:
        return []
    if to is HoldState.RELEASED:
        lifecycle.move_where(
            session,
            lifecycle.PAYOUT,
            PayoutState.PENDING,
            where=f"""t.id IN (SELECT payout_id FROM holds WHERE id = ANY(:ended))
                      AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.payout_id = t.id
                                       AND h.state = {HoldState.ACTIVE.sql})""",
            params={"ended": ended},
            cause=f"released: {resolution}",
            actor=actor,
            from_states=[PayoutState.HELD],
        )
    lifecycle.move_where(
        session,
        lifecycle.CREATOR,
        CreatorState.ACTIVE,
        where=f"""t.id IN (SELECT creator_id FROM holds WHERE id = ANY(:ended)
                            AND payout_id IS NULL)
                  AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.creator_id = t.id
                                   AND h.payout_id IS NULL
                                   AND h.state = {HoldState.ACTIVE.sql})""",
        params={"ended": ended},
        cause=f"released: {resolution}",
        actor=actor,
        from_states=[CreatorState.HELD],
        also={"held_reason": "NULL"},
    )
    return ended


def release_creator(
    session: Session, creator_id: int, *, actor: str, resolution: str, rule: str | None = None
) -> list[int]:
    """End the creator's active creator-wide holds (only those of ``rule``, when given)."""
    ids = session.execute(
        text(
            f"SELECT id FROM holds WHERE creator_id = :c AND payout_id IS NULL"
            f" AND state = {HoldState.ACTIVE.sql} AND (CAST(:rule AS text) IS NULL OR rule = :rule)"
            " ORDER BY id"
        ),
        {"c": creator_id, "rule": rule},
    ).scalars()
    return end(session, list(ids), actor=actor, resolution=resolution)


def expire(session: Session, *, actor: str) -> list[int]:
    """Release every hold whose time is up."""
    due = session.execute(
        text(
            f"SELECT id FROM holds WHERE state = {HoldState.ACTIVE.sql}"
            " AND expires_at IS NOT NULL AND expires_at <= now() ORDER BY id"
        )
    ).scalars()
    return end(session, list(due), actor=actor, resolution="expired")


def reject(session: Session, hold_id: int, *, actor: str, resolution: str) -> dict[str, Any]:
    """Review says no: the payout is cancelled into the creator's carried balance and the
    creator held until an operator releases them."""
    hold = get(session, hold_id)
    if hold["status"] != HoldState.ACTIVE:
        raise IllegalTransition(f"hold {hold_id} is already {hold['status']}")
    payout_id = hold["payout_id"]
    end(session, [hold_id], actor=actor, resolution=resolution, to=HoldState.REJECTED)
    if payout_id is not None:
        _cancel_into_carry(session, int(payout_id), actor=actor, cause=resolution)
    place(
        session,
        [
            NewHold(
                int(hold["creator_key"]),
                "review_rejected",
                f"hold {hold_id} rejected: {resolution}",
            )
        ],
        actor=actor,
    )
    return get(session, hold_id)


def _cancel_into_carry(session: Session, payout_id: int, *, actor: str, cause: str) -> None:
    row = session.execute(
        text("SELECT creator_id, asset_id, amount FROM payouts WHERE id = :p"), {"p": payout_id}
    ).one()
    cancelled = lifecycle.move(
        session,
        lifecycle.PAYOUT,
        [payout_id],
        PayoutState.CANCELLED,
        cause=f"rejected in review: {cause}",
        actor=actor,
        from_states=[PayoutState.HELD, PayoutState.PENDING],
    )
    if not cancelled:
        return
    keys = [
        (AccountKind.PAYOUTS_IN_FLIGHT, None, row.asset_id),
        (AccountKind.CREATOR_DUST, row.creator_id, row.asset_id),
    ]
    accounts = ensure_accounts(session, keys)
    post(
        session,
        "payout_cancelled",
        f"payout {payout_id} rejected in review: back to the creator's carried balance",
        [
            Leg(accounts[keys[0]], int(row.amount), payout_id=payout_id),
            Leg(accounts[keys[1]], -int(row.amount), payout_id=payout_id),
        ],
    )


_SELECT = """
    SELECT h.id, h.creator_id, cr.external_id AS creator, cr.marketplace_id, h.payout_id,
           p.amount, p.state AS payout_state, h.rule, h.reason, h.figures, h.placed_by,
           h.placed_at, h.expires_at, h.state, h.ended_by, h.ended_at, h.resolution
      FROM holds h JOIN creators cr ON cr.id = h.creator_id
      LEFT JOIN payouts p ON p.id = h.payout_id
"""


def _row(r: Any) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v is not None else None

    return {
        "id": r.id,
        "creator_id": r.creator,
        "payout_id": r.payout_id,
        "amount": None if r.amount is None else str(int(r.amount)),
        "rule": r.rule,
        "reason": r.reason,
        "figures": r.figures,
        "placed_by": r.placed_by,
        "placed_at": iso(r.placed_at),
        "expires_at": iso(r.expires_at),
        "status": r.state,
        "ended_by": r.ended_by,
        "ended_at": iso(r.ended_at),
        "resolution": r.resolution,
        "creator_key": r.creator_id,
        "marketplace_id": r.marketplace_id,
    }


def get(session: Session, hold_id: int) -> dict[str, Any]:
    row = session.execute(text(_SELECT + " WHERE h.id = :id"), {"id": hold_id}).one_or_none()
    if row is None:
        raise NotFound(f"hold {hold_id}")
    return _row(row)


def listing(
    session: Session,
    *,
    state: str | None = HoldState.ACTIVE,
    review: bool = False,
    marketplace_id: int | None = None,
    creator_external_id: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first; ``review``: only what rules placed (the review queue)."""
    if state is not None and state not in tuple(HoldState):
        raise InvalidInput(f"state must be one of {', '.join(HoldState)}", field="state")
    reviewed = reviewed_sql("h.rule")
    rows = session.execute(
        text(
            _SELECT
            + f"""
             WHERE (CAST(:s AS text) IS NULL OR h.state = :s)
               AND (NOT CAST(:review AS boolean) OR {reviewed})
               AND (CAST(:m AS bigint) IS NULL OR cr.marketplace_id = :m)
               AND (CAST(:x AS text) IS NULL OR cr.external_id = :x)
               AND (CAST(:before AS bigint) IS NULL OR h.id < :before)
             ORDER BY h.id DESC LIMIT :limit
            """
        ),
        {
            "s": state,
            "review": review,
            "m": marketplace_id,
            "x": creator_external_id,
            "before": before_id,
            "limit": limit + 1,
        },
    ).all()
    page = [_row(r) for r in rows[:limit]]
    return page, (page[-1]["id"] if len(rows) > limit else None)


def reviewed_sql(rule: str) -> str:
    """SQL true when ``rule`` (an SQL expression) names a rule whose holds an operator
    reviews (``REVIEWED_RULES``)."""
    return " OR ".join(f"{rule} LIKE '{r}%'" for r in REVIEWED_RULES)


def approved_sql(payout_id: str) -> str:
    """SQL true when an operator approved in review the payout whose id is the SQL
    expression ``payout_id``: a rule does not hold it again, wherever it is screened."""
    return (
        f"EXISTS (SELECT 1 FROM holds h WHERE h.payout_id = {payout_id}"
        f" AND h.state = {HoldState.RELEASED.sql} AND ({reviewed_sql('h.rule')}))"
    )


def approved_payouts(session: Session, payout_ids: Sequence[int]) -> frozenset[int]:
    """Payouts an operator approved in review: a rule does not hold them again."""
    rows = session.execute(
        text(f"SELECT p FROM unnest(CAST(:ids AS bigint[])) p WHERE {approved_sql('p')}"),
        {"ids": list(payout_ids)},
    ).scalars()
    return frozenset(int(p) for p in rows)
