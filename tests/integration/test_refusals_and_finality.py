"""One refused recipient does not sink a batch; larger payouts wait deeper; a reorg past
finality is reported, never rewritten."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from payouts import exception_queue
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from tests.chainkit import (
    assert_books_balance,
    assert_chain_pays_what_the_ledger_says,
    block_recipient,
    mine,
    roll_up_now,
    scalar,
    seed,
    settle_and_submit,
    token_balance,
)


def settle_fully(rt: Runtime) -> None:
    settle_and_submit(rt)
    mine(rt, 3)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)


def rows(rt: Runtime, sql: str) -> list[Any]:
    with rt.uow() as session:
        return list(session.execute(text(sql)).all())


def test_a_refused_recipient_goes_back_to_pending_on_hold_and_the_others_are_paid(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    recipients = seed(rt, creators=4)
    roll_up_now(rt)
    refused = recipients["c1-2"]
    block_recipient(rt, refused)

    settle_fully(rt)

    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 3
    ((state, batch_id, held),) = rows(
        rt,
        "SELECT p.state, p.batch_id, c.held_reason FROM payouts p"
        f" JOIN creators c ON c.id = p.creator_id WHERE p.recipient = '{refused}'",
    )
    assert (state, batch_id) == ("pending", None)
    assert held == f"token refused a transfer to {refused}"
    assert token_balance(rt, rt.settings.assets[0].address or "", refused) == 0
    ((exception_id, kind),) = rows(rt, "SELECT id, kind FROM exceptions WHERE state = 'open'")
    assert kind == "transfer_failed"
    assert_books_balance(rt)  # in flight still holds exactly the refused payout
    # While the creator is held, nothing is sent to them.
    assert settlement.settle(rt, actor="test")["USDC"].sealed == []

    block_recipient(rt, refused, blocked=False)
    with rt.uow() as session:
        exception_queue.resolve_exception(
            session, exception_id, "address cleared by the token issuer", actor="operator"
        )
        session.commit()
    assert rows(rt, "SELECT held_reason FROM creators WHERE held_reason IS NOT NULL") == []
    settle_fully(rt)

    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 4
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    assert_books_balance(rt)
    history = [
        r.to_state
        for r in rows(
            rt,
            "SELECT to_state FROM transitions WHERE entity = 'payout' AND entity_id ="
            f" (SELECT id FROM payouts WHERE recipient = '{refused}')"
            " AND from_state IS NOT NULL ORDER BY id",  # its moves, not its creation
        )
    ]
    assert history == [
        "batched",
        "submitted",
        "confirmed",
        "pending",
        "batched",
        "submitted",
        "confirmed",
        "finalized",
    ]


def test_larger_payouts_are_final_only_deeper(make_chain_runtime: Callable[..., Runtime]) -> None:
    rt = make_chain_runtime(
        confirmation_depth=1,
        finality_depth=2,
        assets=[
            {
                "symbol": "USDC",
                "decimals": 6,
                "address": make_chain_runtime().settings.assets[0].address,
                "min_payout": 10_000,
                "rounding_unit": 100,
                "finality_tiers": [{"at_least": 1, "depth": 4}, {"at_least": 10**12, "depth": 99}],
            }
        ],
    )
    recipients = seed(rt, creators=2)
    roll_up_now(rt)
    (batch_id,) = [s.batch_id for s in settle_and_submit(rt)]
    assert scalar(rt, f"SELECT finality_depth FROM batches WHERE id = {batch_id}") == 4

    mine(rt, 1)  # 2 blocks deep: final by default, not for this tier
    reconciler.reconcile(rt)
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'confirmed'") == 2
    assert scalar(rt, "SELECT count(*) FROM credit_states WHERE state = 'paid'") == 0
    mine(rt, 2)  # 4 deep
    reconciler.reconcile(rt)

    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 2
    assert_chain_pays_what_the_ledger_says(rt, recipients)


def test_a_reorg_past_finality_alerts_an_operator_and_rewrites_nothing(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime(confirmation_depth=1, finality_depth=2, reorg_watch_blocks=64)
    seed(rt, creators=3)
    roll_up_now(rt)
    mine(rt, 10)
    assert len(settle_and_submit(rt)) == 1
    mine(rt, 2)
    reconciler.reconcile(rt)
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 3
    before = rows(rt, "SELECT * FROM batches")

    rt.chain.rpc("anvil_reorg", [5, []])  # the finalized block and its transaction are gone
    outcome = reconciler.reconcile(rt)
    reconciler.reconcile(rt)

    assert outcome.advance.exceptions == 1
    ((kind, detail),) = rows(rt, "SELECT kind, detail FROM exceptions")
    assert kind == "reorg_after_finality"
    assert detail["tx_still_on_chain"] is False
    assert rows(rt, "SELECT * FROM batches") == before
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 3
    assert_books_balance(rt)
