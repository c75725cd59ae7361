"""Each way the chain misbehaves, with a real Celery worker and beat settling on anvil.

After each fault every creator is paid exactly once, the ledger balances, and what the
chain paid equals what the ledger says.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from click.testing import Result

import devstack
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.submission import handlers as submission
from payouts.submission.handlers import SubmitResult
from tests.chainkit import block_recipient, roll_up_now, seed, value
from tests.e2e.conftest import Miner, assert_paid_exactly_once, count, running
from tests.tcp_proxy import CuttingProxy
from tests.waiting import assert_stays, wait_until

GWEI = 10**9


def reconciled_to(rt: Runtime) -> int:
    """The last block the reconciler has read (-1 before its first run)."""
    return int(value(rt, "SELECT coalesce(max(block_number), -1) FROM chain_checkpoints"))


def test_a_dropped_transaction_is_resent_and_paid_once(
    make_stack: Callable[..., Runtime],
    chain: Miner,
) -> None:
    rt = make_stack("dropped")
    recipients = seed(rt, creators=6)
    roll_up_now(rt)
    chain.paused = True
    with running(rt.settings):
        wait_until(
            lambda: count(rt, "batches WHERE state = 'broadcast'") == 1,
            timeout=90,
            what="a broadcast",
        )
        rt.chain.rpc("anvil_dropTransaction", [value(rt, "SELECT tx_hash FROM tx_attempts")])
        wait_until(
            lambda: count(rt, "tx_attempts WHERE broadcasts >= 2") == 1,
            timeout=90,
            what="a rebroadcast",
        )
        chain.paused = False
        wait_until(
            lambda: count(rt, "payouts WHERE state <> 'finalized'") == 0,
            timeout=90,
            what="finality",
        )

    assert count(rt, "tx_attempts") == 1
    assert_paid_exactly_once(rt, recipients)


def test_a_fee_spike_gets_a_replacement_with_bumped_fees(
    make_stack: Callable[..., Runtime],
    chain: Miner,
) -> None:
    rt = make_stack("spike", stuck_after_blocks=2)
    recipients = seed(rt, creators=6)
    roll_up_now(rt)
    chain.paused = True
    with running(rt.settings):
        wait_until(
            lambda: count(rt, "batches WHERE state = 'broadcast'") == 1,
            timeout=90,
            what="a broadcast",
        )
        # Every block now costs ten times what the first attempt offers, until a replacement
        # that pays it is out.
        chain.spike_base_fee = 10 * int(value(rt, "SELECT max_fee_per_gas FROM tx_attempts"))
        chain.paused = False
        wait_until(lambda: count(rt, "tx_attempts") >= 2, timeout=90, what="a replacement")
        chain.spike_base_fee = None
        wait_until(
            lambda: count(rt, "payouts WHERE state <> 'finalized'") == 0,
            timeout=90,
            what="finality",
        )

    assert count(rt, "tx_attempts WHERE state = 'mined'") == 1
    assert count(rt, "tx_attempts WHERE state = 'replaced'") == count(rt, "tx_attempts") - 1
    assert_paid_exactly_once(rt, recipients)


def test_a_transaction_stuck_in_full_blocks_is_replaced_and_paid_once(
    make_stack: Callable[..., Runtime], chain: Miner
) -> None:
    rt = make_stack("stuck", stuck_after_blocks=2)
    recipients = seed(rt, creators=6)
    roll_up_now(rt)
    chain.paused = True
    with running(rt.settings):
        wait_until(
            lambda: count(rt, "batches WHERE state = 'broadcast'") == 1,
            timeout=90,
            what="a broadcast",
        )
        gas_limit = rt.chain.block("latest").gas_limit
        rt.chain.rpc("anvil_setBlockGasLimit", [hex(100_000)])  # too small for the batch
        rt.chain.rpc("anvil_mine", [hex(3)])
        assert count(rt, "batches WHERE state = 'broadcast'") == 1
        # anvil refuses new transactions larger than the current block (real nodes do not),
        # so the blocks get room again before the watcher sends the replacement.
        rt.chain.rpc("anvil_setBlockGasLimit", [hex(gas_limit)])
        wait_until(lambda: count(rt, "tx_attempts") >= 2, timeout=90, what="a replacement")
        chain.paused = False
        wait_until(
            lambda: count(rt, "payouts WHERE state <> 'finalized'") == 0,
            timeout=90,
            what="finality",
        )

    assert count(rt, "tx_attempts WHERE state = 'mined'") == 1
    assert count(rt, "tx_attempts WHERE state = 'replaced'") == count(rt, "tx_attempts") - 1
    assert_paid_exactly_once(rt, recipients)


def test_a_node_that_goes_away_is_not_hammered_and_settlement_resumes(
    make_stack: Callable[..., Runtime],
    chain: Miner,
    anvil: devstack.Anvil,
) -> None:
    proxy = CuttingProxy(anvil.port)
    rt = make_stack("down")
    workers = rt.settings.model_copy(update={"rpc_url": proxy.url})
    recipients = seed(rt, creators=6)
    roll_up_now(rt)
    (batch,) = settlement.settle(rt, actor="test")["USDC"].sealed  # sealed while the node was up
    circuit = Runtime(workers).chain.breaker  # the workers' circuit, read through Redis
    assert circuit is not None
    proxy.go_down()
    try:
        with running(workers):
            wait_until(
                lambda: count(rt, "batches WHERE submit_tier >= 1") == 1,
                timeout=90,
                what="a retry tier",
            )
            wait_until(circuit.is_open, timeout=30, what="the workers' circuit to open")
            # Calls that are not made send no signal to wait for: count the connections over a
            # fixed window (monotonic clock), failing as soon as they exceed 4 a second.
            window = 3.0
            before, started = proxy.connections, time.monotonic()
            assert_stays(
                lambda: proxy.connections - before < 4 * window,
                seconds=window,
                what="fewer than 4 connections a second to a dead node",
            )
            per_second = (proxy.connections - before) / (time.monotonic() - started)
            # settle, reconcile and watch run every second, each with three tries per call:
            # without the breaker that is 9+ connections a second.
            assert per_second < 4, f"{per_second:.1f} connections/s to a dead node"
            proxy.come_back()
            wait_until(
                lambda: count(rt, "payouts WHERE state <> 'finalized'") == 0,
                timeout=90,
                what="finality",
            )
    finally:
        proxy.close()

    assert count(rt, f"batches WHERE id = {batch.batch_id} AND state = 'finalized'") == 1
    assert_paid_exactly_once(rt, recipients)


def test_when_the_retries_run_out_an_operator_replays_the_batch(
    make_stack: Callable[..., Runtime],
    chain: Miner,
    anvil: devstack.Anvil,
    operator: Callable[..., Result],
) -> None:
    proxy = CuttingProxy(anvil.port)
    rt = make_stack("exhausted", submit_retry_delays_seconds=[1, 1])
    workers = rt.settings.model_copy(update={"rpc_url": proxy.url})
    recipients = seed(rt, creators=4)
    roll_up_now(rt)
    settlement.settle(rt, actor="test")
    proxy.go_down()
    try:
        with running(workers):
            wait_until(
                lambda: count(rt, "batches WHERE parked_at IS NOT NULL") == 1,
                timeout=90,
                what="parking",
            )
            proxy.come_back()
            # The workers reach the node again: the reconciler reads past today's head.
            head = rt.chain.block_number()
            wait_until(
                lambda: reconciled_to(rt) >= head,
                timeout=90,
                what="the workers to read the chain again",
            )
            # A batch that is not resent leaves no trace to wait for: watch it over a fixed
            # window of three watcher and settle ticks (monotonic clock), failing on a change.
            assert_stays(
                lambda: count(rt, "batches WHERE state = 'sealed'") == 1,
                seconds=3,
                what="the parked batch to stay sealed",
            )
            assert count(rt, "batches WHERE state = 'sealed'") == 1  # waits for an operator
            (item,) = json.loads(operator(rt, "exceptions", "list", "--json").output)
            assert item["kind"] == "submission_exhausted"

            replayed = operator(rt, "exceptions", "replay", str(item["id"]))

            assert replayed.exit_code == 0, replayed.output
            wait_until(
                lambda: count(rt, "payouts WHERE state <> 'finalized'") == 0,
                timeout=90,
                what="finality",
            )
    finally:
        proxy.close()
    assert_paid_exactly_once(rt, recipients)


def test_a_refused_recipient_is_held_and_paid_after_an_operator_resolves_it(
    make_stack: Callable[..., Runtime],
    chain: Miner,
    operator: Callable[..., Result],
) -> None:
    rt = make_stack("refused")
    recipients = seed(rt, creators=6)
    refused = recipients["c1-3"]
    block_recipient(rt, refused)
    roll_up_now(rt)
    with running(rt.settings):
        wait_until(
            lambda: count(rt, "payouts WHERE state = 'finalized'") == 5,
            timeout=90,
            what="the others paid",
        )
        wait_until(
            lambda: count(rt, "creators WHERE held_reason IS NOT NULL") == 1,
            timeout=90,
            what="a hold",
        )
        # A payout that is not sent again leaves no trace to wait for: watch it over a fixed
        # window of two settle ticks (monotonic clock), failing as soon as it leaves pending.
        assert_stays(
            lambda: count(rt, "payouts WHERE state = 'pending'") == 1,
            seconds=2,
            what="the held payout to stay pending",
        )
        assert count(rt, "payouts WHERE state = 'pending'") == 1  # held: not sent again
        block_recipient(rt, refused, blocked=False)
        (item,) = json.loads(operator(rt, "exceptions", "list", "--json").output)
        assert (item["kind"], item["detail"]["recipient"]) == ("transfer_failed", refused)
        resolved = operator(rt, "exceptions", "resolve", str(item["id"]), "-m", "unblocked")
        assert resolved.exit_code == 0, resolved.output
        wait_until(
            lambda: count(rt, "payouts WHERE state <> 'finalized'") == 0,
            timeout=90,
            what="finality",
        )

    assert count(rt, "batches WHERE state = 'finalized'") == 2
    assert_paid_exactly_once(rt, recipients)


def test_a_reorg_unwinds_the_batch_and_it_is_paid_once(
    make_stack: Callable[..., Runtime],
    chain: Miner,
) -> None:
    rt = make_stack("reorg", finality_depth=12)
    recipients = seed(rt, creators=6)
    roll_up_now(rt)
    rt.chain.rpc("anvil_mine", [hex(10)])  # room to reorganise without losing the contracts
    with running(rt.settings):
        wait_until(
            lambda: count(rt, "batches WHERE state = 'confirmed'") == 1,
            timeout=90,
            what="a confirmation",
        )
        chain.pause()  # returns once no block is being mined: the head stays put
        # The block that carried the batch (three deep at most) is replaced by empty ones.
        head = rt.chain.block_number()
        depth = head - int(value(rt, "SELECT block_number FROM batches")) + 1
        rt.chain.rpc("anvil_reorg", [depth, []])
        chain.paused = False
        wait_until(
            lambda: count(rt, "transitions WHERE cause LIKE '%reorganised away'") > 0,
            timeout=90,
            what="unwind",
        )
        wait_until(
            lambda: count(rt, "payouts WHERE state <> 'finalized'") == 0,
            timeout=90,
            what="finality",
        )

    assert count(rt, "tx_attempts") == 1
    assert_paid_exactly_once(rt, recipients)


def test_a_nonce_taken_by_another_transaction_fails_the_batch_and_the_next_pays(
    make_stack: Callable[..., Runtime],
    chain: Miner,
) -> None:
    rt = make_stack("nonce", resubmit_grace_seconds=0)
    recipients = seed(rt, creators=5)
    roll_up_now(rt)
    (batch,) = settlement.settle(rt, actor="test")["USDC"].sealed
    signed = submission.sign(rt, batch.batch_id)  # a worker that died right after signing
    assert not isinstance(signed, SubmitResult)
    rt.chain.rpc(
        "eth_sendTransaction",
        [{"from": rt.signer.address, "to": rt.signer.address, "nonce": hex(signed.nonce)}],
    )
    with running(rt.settings):
        wait_until(
            lambda: count(rt, "payouts WHERE state <> 'finalized'") == 0,
            timeout=90,
            what="finality",
        )

    assert count(rt, f"batches WHERE id = {batch.batch_id} AND state = 'failed'") == 1
    assert count(rt, "exceptions WHERE kind = 'nonce_consumed'") == 1
    assert_paid_exactly_once(rt, recipients)
