"""Metrics after a real run: the worker's (every pool process merged) and the API's (read
from the ledger at scrape time), each checked against the database and the chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from devstack.spawning import free_port
from payouts.api.app import create_app
from payouts.runtime import Runtime
from tests.chainkit import block_recipient, roll_up_now, seed, token_balance, value
from tests.e2e.conftest import Miner, count, running
from tests.waiting import wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and want <= got)


def scrape_worker(port: int) -> Samples:
    return parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)


def time_to_final(rt: Runtime) -> tuple[int, float]:
    """How many earnings are final and their summed seconds from recorded to final."""
    row: Any = value(
        rt,
        """
        SELECT count(*)::text || ' ' || coalesce(sum(extract(epoch FROM t.at - c.created_at)), 0)
          FROM credits c JOIN credit_states s ON s.credit_id = c.id
          JOIN transitions t ON t.entity = 'payout' AND t.entity_id = s.payout_id
           AND t.to_state = 'finalized'
        """,
    )
    n, seconds = str(row).split()
    return int(n), float(seconds)


def test_metrics_of_a_real_run_match_the_ledger_and_the_chain(
    make_stack: Callable[..., Runtime], chain: Miner
) -> None:
    port = free_port()
    rt = make_stack("metrics", metrics_port=port)
    recipients = seed(rt, creators=6)
    block_recipient(rt, sorted(recipients.values())[0])  # the token refuses one transfer
    roll_up_now(rt)
    with running(rt.settings, beat=True):
        wait_until(
            lambda: (
                count(rt, "payouts WHERE state = 'finalized'") == 5
                and count(rt, "payouts WHERE state = 'pending' AND batch_id IS NULL") == 1
            ),
            timeout=90,
            what="five payouts final, the refused one back to pending",
        )
        earnings, seconds = time_to_final(rt)
        wait_until(
            lambda: (
                total(scrape_worker(port), "payouts_earning_to_final_seconds_count") == earnings
            ),
            timeout=30,
            what="every earning's time to final observed",
        )
        worker = scrape_worker(port)

    # Time to final: one observation per earning, summed as the ledger's own timestamps say.
    assert earnings == 10
    assert abs(total(worker, "payouts_earning_to_final_seconds_sum") - seconds) < 1e-3 * earnings
    assert total(worker, "payouts_earning_to_final_seconds_bucket", le="+Inf") == earnings
    # Tasks from the pool processes, by task, queue and outcome, with their runtimes.
    reconciles = sample(
        worker,
        "payouts_tasks_total",
        task="payouts.reconcile",
        queue="reconcile",
        outcome="success",
    )
    assert reconciles >= 1
    assert total(worker, "payouts_task_duration_seconds_count", task="payouts.reconcile") >= (
        reconciles
    )
    assert total(worker, "payouts_tasks_total", task="payouts.submit_batch", queue="submit") >= 1
    assert total(worker, "payouts_task_last_success_timestamp_seconds", task="payouts.settle") > 0
    assert total(worker, "payouts_rpc_requests_total", method="eth_getLogs") >= reconciles

    with TestClient(create_app(rt)) as client:
        answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    api = parse(answer.text)
    finalized = count(rt, "payouts WHERE state = 'finalized'")
    paid = int(value(rt, "SELECT sum(amount) FROM payouts WHERE state = 'finalized'"))
    assert sample(api, "payouts_payouts", state="finalized", asset="USDC") == finalized == 5
    assert sample(api, "payouts_payouts_value", state="finalized", asset="USDC") == paid
    assert sample(api, "payouts_payouts", state="pending", asset="USDC") == 1
    assert sample(api, "payouts_payouts_finalized_total") == finalized
    assert sample(api, "payouts_payout_failures_total", cause="transfer_refused") == 1
    assert sample(api, "payouts_payout_failures_total", cause="batch_failed") == 0
    assert sample(api, "payouts_batches", state="finalized") == count(
        rt, "batches WHERE state = 'finalized'"
    )
    assert sample(api, "payouts_oldest_nonfinal_payout_age_seconds", state="pending") > 0
    assert count(rt, "exceptions WHERE kind = 'transfer_failed' AND state = 'open'") == 1
    assert sample(api, "payouts_exceptions_open", kind="transfer_failed") == 1
    assert sample(api, "payouts_holds_active", rule="transfer_failed") == 1
    assert sample(api, "payouts_rpc_circuit_open") == 0
    assert total(api, "payouts_measure_up") == 4  # ledger, runway, escrow, breaker
    # Nothing went by claim: the escrow holds nothing and is short of nothing.
    assert sample(api, "payouts_claims_escrow_shortfall", asset="USDC") == 0

    # Runway: the wallet's balances as the chain has them; the burn is what the batches took
    # (the refused transfer took nothing).
    wallet = rt.signer.address
    usdc = token_balance(rt, str(rt.token_assets()[0].address), wallet)
    assert sample(api, "payouts_wallet_balance", asset="USDC") == usdc
    # Samples are float64: wei are exact to 16 digits.
    assert sample(api, "payouts_wallet_balance", asset="native") == float(rt.chain.balance(wallet))
    window = rt.settings.runway_window_hours
    assert sample(api, "payouts_wallet_burn_per_hour", asset="USDC") == -(-paid // window)
    assert sample(api, "payouts_wallet_runway_hours", asset="USDC") == usdc * window / paid
    gas = int(value(rt, "SELECT sum(gas_used * effective_gas_price) FROM batches"))
    assert gas > 0
    assert sample(api, "payouts_wallet_burn_per_hour", asset="native") == float(-(-gas // window))
