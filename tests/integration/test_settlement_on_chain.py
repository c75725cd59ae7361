"""Settlement against a real anvil chain, in-process: seal, sign, broadcast, reconcile."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.settlement.policy import policy_for
from payouts.submission import handlers as submission
from payouts.tracking import reports
from tests.chainkit import (
    assert_chain_pays_what_the_ledger_says,
    mine,
    roll_up_now,
    scalar,
    seed,
    settle_and_submit,
    token_balance,
)
from tests.waiting import wait_until


def test_payouts_reach_the_chain_and_the_ledger_matches_to_the_base_unit(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    recipients = seed(rt, creators=25)
    assert roll_up_now(rt) == 25
    batches = settle_and_submit(rt)
    assert len(batches) == 1

    reconciler.reconcile(rt)
    mine(rt, 3)
    outcome = reconciler.reconcile(rt)

    assert outcome.advance.finalized == 1
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    assert scalar(rt, "SELECT count(*) FROM credit_states WHERE state <> 'paid'") == 0
    with rt.uow() as session:
        assert reports.check(session).ok


def test_reconciling_twice_changes_nothing(make_chain_runtime: Callable[..., Runtime]) -> None:
    rt = make_chain_runtime()
    seed(rt, creators=5)
    roll_up_now(rt)
    settle_and_submit(rt)
    mine(rt, 3)
    reconciler.reconcile(rt)
    before = {
        table: scalar(rt, f"SELECT count(*) FROM {table}")
        for table in ("transitions", "entries", "journals", "onchain_transfers", "exceptions")
    }
    again = reconciler.reconcile(rt)
    after = {table: scalar(rt, f"SELECT count(*) FROM {table}") for table in before}
    assert after == before
    assert (again.scan.included, again.advance.finalized) == (0, 0)


def test_submitting_a_batch_twice_sends_one_transaction(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    seed(rt, creators=4)
    roll_up_now(rt)
    batch_id = settlement.settle(rt, actor="test")["USDC"].sealed[0].batch_id
    first = submission.submit(rt, batch_id)
    second = submission.submit(rt, batch_id)
    assert first.outcome == "broadcast"
    assert second.tx_hash in (None, first.tx_hash)
    assert scalar(rt, "SELECT count(*) FROM tx_attempts") == 1
    mine(rt, 3)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 4


def test_dry_run_shows_batches_but_keeps_nothing(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    seed(rt, creators=6)
    roll_up_now(rt)
    plan = settlement.settle(rt, dry_run=True)["USDC"]
    assert [b.size for b in plan.sealed] == [6]
    assert scalar(rt, "SELECT count(*) FROM batches") == 0
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'pending'") == 6


def test_batches_are_split_to_fit_the_gas_cap(make_chain_runtime: Callable[..., Runtime]) -> None:
    cap = 400_000  # room for about a dozen fresh recipients with headroom
    rt = make_chain_runtime(max_gas_per_tx=cap)
    seed(rt, creators=40)
    roll_up_now(rt)
    batches = settle_and_submit(rt)
    assert len(batches) > 2
    with rt.uow() as session:
        rows = session.execute(
            text("SELECT gas_estimate, item_count FROM batches ORDER BY id")
        ).all()
    assert sum(r.item_count for r in rows) == 40
    policy = policy_for(rt.settings)
    assert all(policy.gas_limit(r.gas_estimate) <= cap for r in rows)
    mine(rt, 3)
    reconciler.reconcile(rt)
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 40


def test_the_wallet_never_seals_more_than_it_can_pay(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    seed(rt, creators=5)
    roll_up_now(rt)
    token = rt.settings.assets[0].address
    assert token is not None
    wallet = rt.signer.address
    balance = token_balance(rt, token, wallet)
    # Move nearly everything out of the hot wallet, leaving less than one payout.
    from payouts.chain import codec

    burn = "0x000000000000000000000000000000000000dEaD"
    rt.chain.rpc("anvil_impersonateAccount", [wallet])
    data = (
        "0x"
        + codec.ERC20_TRANSFER.hex()
        + burn[2:].lower().rjust(64, "0")
        + hex(balance - 5_000)[2:].rjust(64, "0")
    )
    tx_hash = rt.chain.rpc("eth_sendTransaction", [{"from": wallet, "to": token, "data": data}])
    # anvil may answer before it mines: wait for the receipt before reading the balance.
    wait_until(
        lambda: rt.chain.receipt(tx_hash),
        timeout=30,
        what="the transfer out of the hot wallet to be mined",
    )
    assert token_balance(rt, token, wallet) == 5_000
    plan = settlement.settle(rt)["USDC"]
    assert plan.sealed == []
    assert "cannot pay" in plan.reason
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'pending'") == 5
