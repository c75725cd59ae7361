"""Risk controls in the sealing step, on anvil: holds, velocity limits, the review queue and
recipient screening. What a rule stops is held (never dropped) with its reason and figures,
and an operator's decision is audited; a held payout's amount stays the creator's and goes
out once released.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from payouts import holds
from payouts.errors import IllegalTransition, InvalidInput, NotFound
from payouts.holds import NewHold
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.settlement.handlers import HoldTarget
from payouts.submission import handlers as submission
from tests.chainkit import (
    MARKETPLACE,
    assert_books_balance,
    block_recipient,
    mine,
    roll_up_now,
    scalar,
    seed,
)


def _payouts(rt: Runtime) -> dict[str, tuple[int, str, int]]:
    """External creator id -> (payout id, state, amount)."""
    with rt.uow() as session:
        rows = session.execute(
            text(
                "SELECT c.external_id, p.id, p.state, p.amount FROM payouts p"
                " JOIN creators c ON c.id = p.creator_id ORDER BY p.id"
            )
        ).all()
    return {r.external_id: (r.id, r.state, int(r.amount)) for r in rows}


def _marketplace_id(rt: Runtime) -> int:
    return scalar(rt, f"SELECT id FROM marketplaces WHERE name = '{MARKETPLACE}'")


def _pay_out(rt: Runtime) -> None:
    plan = settlement.settle(rt, actor="test")["USDC"]
    for batch in plan.sealed:
        submission.submit(rt, batch.batch_id, actor="test")
    mine(rt, 3)
    reconciler.reconcile(rt)


def _limited(make_chain_runtime: Callable[..., Runtime], **asset: Any) -> Runtime:
    base = make_chain_runtime().settings.assets[0].model_dump()
    return make_chain_runtime(assets=[{**base, **asset}])


# -- holds placed by people ------------------------------------------------------------------


def test_an_operators_hold_keeps_a_payout_out_until_it_is_released(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    seed(rt, creators=3)
    roll_up_now(rt)
    payout_id, _, _ = _payouts(rt)["c1-0"]
    hold = settlement.place_hold(
        rt, HoldTarget(payout_id=payout_id), "chargeback dispute", rule="operator", actor="ops"
    )
    assert (hold["status"], hold["rule"], hold["placed_by"]) == ("active", "operator", "ops")

    _pay_out(rt)
    states = {k: v[1] for k, v in _payouts(rt).items()}
    assert states == {"c1-0": "held", "c1-1": "finalized", "c1-2": "finalized"}

    released = settlement.release_hold(rt, hold["id"], "dispute closed", actor="ops")
    assert (released["status"], released["resolution"]) == ("released", "dispute closed")
    _pay_out(rt)
    assert _payouts(rt)["c1-0"][1] == "finalized"
    assert_books_balance(rt)
    trail = [
        (r.from_state, r.to_state, r.actor)
        for r in _transitions(rt, "payout", payout_id)
        if r.to_state in ("held", "pending") and r.from_state is not None  # moves, not creation
    ]
    assert trail == [("pending", "held", "ops"), ("held", "pending", "ops")]


def _transitions(rt: Runtime, entity: str, entity_id: int) -> list[Any]:
    with rt.uow() as session:
        return list(
            session.execute(
                text(
                    "SELECT from_state, to_state, cause, actor FROM transitions"
                    " WHERE entity = :e AND entity_id = :i ORDER BY id"
                ),
                {"e": entity, "i": entity_id},
            ).all()
        )


def test_a_marketplace_holds_its_own_creator_and_only_it_may_release_that_hold(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    seed(rt, creators=2)
    roll_up_now(rt)
    mine_id = _marketplace_id(rt)
    hold = settlement.place_hold(
        rt,
        HoldTarget(marketplace_id=mine_id, creator_external_id="c1-1"),
        "account under review",
        rule="marketplace",
        actor=f"marketplace:{mine_id}",
    )
    _pay_out(rt)
    assert _payouts(rt)["c1-1"][1] == "pending"  # the creator is held: nothing of theirs goes
    assert scalar(rt, "SELECT count(*) FROM creators WHERE state = 'held'") == 1

    with pytest.raises(NotFound):
        settlement.release_hold(rt, hold["id"], "no", actor="other", marketplace_id=mine_id + 1)
    operators = settlement.place_hold(
        rt, HoldTarget(payout_id=_payouts(rt)["c1-1"][0]), "kyc", rule="operator", actor="ops"
    )
    with pytest.raises(NotFound):  # an operator's hold is not the marketplace's to end
        settlement.release_hold(rt, operators["id"], "mine", actor="m", marketplace_id=mine_id)

    settlement.release_hold(rt, hold["id"], "cleared", actor="m", marketplace_id=mine_id)
    assert scalar(rt, "SELECT count(*) FROM creators WHERE state = 'held'") == 0
    _pay_out(rt)
    assert _payouts(rt)["c1-1"][1] == "held"  # the operator's hold on the payout still stands


def test_a_hold_past_its_expiry_is_released_by_the_next_settlement(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    seed(rt, creators=1)
    roll_up_now(rt)
    payout_id, _, _ = _payouts(rt)["c1-0"]
    with pytest.raises(InvalidInput):
        settlement.place_hold(
            rt,
            HoldTarget(payout_id=payout_id),
            "late",
            rule="operator",
            actor="ops",
            expires_at=datetime.now(UTC) - timedelta(hours=1),
        )
    with rt.uow() as session:  # placed an hour ago, for half an hour
        creator = scalar(rt, f"SELECT creator_id FROM payouts WHERE id = {payout_id}")
        holds.place(
            session,
            [
                NewHold(
                    creator,
                    "operator",
                    "cool off",
                    payout_id=payout_id,
                    expires_at=datetime.now(UTC) - timedelta(minutes=30),
                )
            ],
            actor="ops",
        )
        session.commit()
    _pay_out(rt)
    assert _payouts(rt)["c1-0"][1] == "finalized"
    [(status, resolution)] = _holds(rt)
    assert (status, resolution) == ("released", "expired")


def _holds(rt: Runtime) -> list[Any]:
    with rt.uow() as session:
        return list(session.execute(text("SELECT state, resolution FROM holds ORDER BY id")))


def test_only_a_pending_payout_can_be_held(make_chain_runtime: Callable[..., Runtime]) -> None:
    rt = make_chain_runtime()
    seed(rt, creators=1)
    roll_up_now(rt)
    settlement.settle(rt, actor="test")
    payout_id, state, _ = _payouts(rt)["c1-0"]
    assert state == "batched"
    with pytest.raises(IllegalTransition):
        settlement.place_hold(
            rt, HoldTarget(payout_id=payout_id), "too late", rule="operator", actor="ops"
        )


# -- velocity limits and the review queue ----------------------------------------------------


def test_a_payout_over_the_creators_hourly_limit_is_held_for_review_and_paid_once_approved(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = _limited(make_chain_runtime, creator_limits={"per_hour_amount": 100_000})
    seed(rt, creators=3, per_creator=1)  # each earns 10,000..90,000: under the limit
    roll_up_now(rt)
    _pay_out(rt)
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 3
    # One creator earns again within the hour: their hour would pass 100,000.
    from payouts.ingest import handlers as ingest
    from payouts.ingest.earnings import Earning

    ingest.record(rt, MARKETPLACE, [Earning("again-1", "c1-0", 95_000, "USDC")])
    roll_up_now(rt)
    _pay_out(rt)

    [queued], _ = settlement.list_holds(rt, review=True)
    assert queued["rule"] == "velocity:creator:hour:amount"
    assert queued["figures"]["ceiling"] == "100000"
    assert int(queued["figures"]["with_this_payout"]) > 100_000
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'held'") == 1

    preview = settlement.release_hold(rt, queued["id"], "known seller", actor="ops", dry_run=True)
    assert preview["status"] == "released"
    assert settlement.list_holds(rt, review=True)[0] == [queued]  # a dry run keeps nothing

    settlement.release_hold(rt, queued["id"], "known seller", actor="ops")
    _pay_out(rt)
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'held'") == 0
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 4
    assert_books_balance(rt)


def test_a_rejected_payout_goes_back_to_the_creator_who_is_held(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = _limited(make_chain_runtime, outflow_per_hour=1)  # every payout trips the ceiling
    seed(rt, creators=1, per_creator=1)
    roll_up_now(rt)
    _pay_out(rt)
    [queued], _ = settlement.list_holds(rt, review=True)
    assert queued["rule"] == "outflow:asset:hour:amount"
    _, _, amount = _payouts(rt)["c1-0"]

    settlement.reject_hold(rt, queued["id"], "looks like fraud", actor="ops")

    assert _payouts(rt)["c1-0"][1] == "cancelled"
    carried = scalar(
        rt,
        "SELECT -sum(e.amount) FROM entries e JOIN accounts a ON a.id = e.account_id"
        " WHERE a.kind = 'creator_dust'",
    )
    assert carried >= amount  # the amount is the creator's again, carried to the next payout
    assert scalar(rt, "SELECT count(*) FROM creators WHERE state = 'held'") == 1
    [creator_hold], _ = settlement.list_holds(rt)
    assert creator_hold["rule"] == "review_rejected"
    assert_books_balance(rt)


# -- screening -------------------------------------------------------------------------------


def test_a_deny_listed_recipient_never_reaches_a_batch(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    recipients = seed(rt, creators=3)
    roll_up_now(rt)
    with pytest.raises(InvalidInput, match="line 2"):
        settlement.import_deny_list(
            rt, ["# sanctions", "not-an-address"], source="bad.txt", actor="ops"
        )
    denied = recipients["c1-1"]
    assert (
        settlement.import_deny_list(
            rt, [f"{denied},sanctions list 2026-11", ""], source="sanctions.csv", actor="ops"
        )
        == 1
    )
    assert [e["address"] for e in settlement.deny_list(rt)] == [denied]

    _pay_out(rt)

    assert _payouts(rt)["c1-1"][1] == "held"
    assert scalar(rt, f"SELECT count(*) FROM batch_items WHERE recipient = '{denied}'") == 0
    [queued], _ = settlement.list_holds(rt, review=True)
    assert (queued["rule"], queued["figures"]["source"]) == ("deny_list", "sanctions.csv")
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 2


def test_the_tokens_own_deny_check_holds_a_recipient_before_sealing(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = _limited(make_chain_runtime, deny_check="isBlocked(address)")
    recipients = seed(rt, creators=4)
    roll_up_now(rt)
    blocked = recipients["c1-2"]
    block_recipient(rt, blocked)

    _pay_out(rt)

    assert _payouts(rt)["c1-2"][1] == "held"
    assert scalar(rt, f"SELECT count(*) FROM batch_items WHERE recipient = '{blocked}'") == 0
    assert scalar(rt, "SELECT count(*) FROM exceptions WHERE kind = 'transfer_failed'") == 0
    [queued], _ = settlement.list_holds(rt, review=True)
    assert queued["rule"] == "token_deny"
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 3
