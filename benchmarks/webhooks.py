"""Scenario 6: webhook delivery, by one real worker, to a real receiver on loopback.

A fresh database, one marketplace with one endpoint (every event type) pointing at a
receiver that verifies each delivery's signature (``devstack.receiver``), and the processes an
operator runs: ``celery worker`` with one process on the ``webhooks`` queue, and ``celery
beat`` (its dispatch every second, the default).

- **Backlog**: events written while no worker runs (through ``events.emit``, in transactions of
  ``BATCH`` as a busy state machine writes them), then the worker and beat start; measured:
  events per second written, and delivered from the worker's start to the last arrival.
- **Steady**: events written at a fixed rate while the worker runs; measured: the lag from
  the state change (the event's timestamp, its transaction's start) to the receiver, p50 and
  p99.
- **Floor**: the same number of signed bodies posted by one Python thread over one kept-alive
  connection to the same receiver: no database, no queue, the least one process can do.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from benchmarks import stack
from benchmarks.report import (
    FLOOR_RATIO,
    ScenarioResult,
    Table,
    floor_ratio,
    fmt_int,
    fmt_seconds,
)
from devstack import processes
from devstack.receiver import Receiver
from payouts import catalog, events
from payouts.notify import handlers as webhooks
from payouts.runtime import Runtime
from workers.queues import WEBHOOKS

BATCH = 50  # events per writing transaction


@dataclass(frozen=True)
class WebhookSizes:
    backlog: int  # events waiting when the worker starts
    rate: int  # events per second written in the steady phase
    seconds: float  # how long the steady phase writes
    timeout: float


def _write(rt: Runtime, marketplace_id: int, first: int, count: int) -> None:
    with rt.uow() as session:
        for n in range(first, first + count):
            events.emit(
                session,
                marketplace_id,
                "bench.event",
                f"bench:{n}",
                {"n": n, "amount": "12345", "url": f"/v1/bench/{n}"},
            )
        session.commit()


def _produce_backlog(rt: Runtime, marketplace_id: int, total: int) -> float:
    started = time.perf_counter()
    for first in range(0, total, BATCH):
        _write(rt, marketplace_id, first, min(BATCH, total - first))
    return time.perf_counter() - started


def _produce_steady(rt: Runtime, marketplace_id: int, first: int, rate: int, seconds: float) -> int:
    """``rate`` events a second for ``seconds``, in ticks of 50 ms; returns how many."""
    tick = 0.05
    per_tick = max(1, round(rate * tick))
    written = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        _write(rt, marketplace_id, first + written, per_tick)
        written += per_tick
        ahead = started + (written / per_tick) * tick - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    return written


def _wait_for(receiver: Receiver, count: int, timeout: float) -> float | None:
    """Seconds until the receiver has ``count`` distinct event ids, None on timeout."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if len(receiver.unique()) >= count:
            return time.perf_counter() - started
        time.sleep(0.05)
    return None


def _floor(receiver_url: str, secret: str, count: int) -> float:
    """One thread, one connection, signed bodies: the least a sender can do per event."""
    signer = Webhook(secret)
    sink = Receiver()  # a receiver of its own, so the scenario's counts stay clean
    with sink, httpx.Client(timeout=10) as client:
        sink.trust(secret)
        started = time.perf_counter()
        for n in range(count):
            body = json.dumps(
                {
                    "id": f"floor_{n}",
                    "seq": n + 1,
                    "type": "bench.event",
                    "timestamp": datetime.now(UTC).isoformat(),
                    "data": {"n": n, "amount": "12345"},
                }
            )
            now = datetime.now(UTC)
            headers = {
                "webhook-id": f"floor_{n}",
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signer.sign(f"floor_{n}", now, body),
                "content-type": "application/json",
            }
            client.post(sink.url, content=body, headers=headers).raise_for_status()
        return time.perf_counter() - started


def _percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def run(servers: stack.Servers, sizes: WebhookSizes) -> ScenarioResult:
    with stack.fresh_db(servers, "webhooks") as url, Receiver() as receiver:
        env = stack.bench_env(
            servers,
            url,
            webhook_allow_private_addresses="true",
            webhook_allow_http="true",
        )
        rt = stack.runtime_for(env)
        with rt.uow() as session:
            marketplace_id = catalog.ensure_marketplace(session, "bench-webhooks")
            session.commit()
        endpoint = webhooks.create_endpoint(rt, marketplace_id, receiver.url, [])
        secret = str(endpoint["secret"])
        receiver.trust(secret)

        produce_seconds = _produce_backlog(rt, marketplace_id, sizes.backlog)
        processes.purge_queues(rt.settings, servers.redis_url)
        # One process on the webhooks queue only: delivery's own worker, as it is deployed.
        worker = processes.start_celery(
            "worker", env, servers.state_dir, concurrency=1, queues=[WEBHOOKS]
        )
        beat = processes.start_celery("beat", env, servers.state_dir)
        try:
            drain_seconds = _wait_for(receiver, sizes.backlog, sizes.timeout)
            steady_from = len(receiver.snapshot())
            steady_started = time.perf_counter()
            written = _produce_steady(rt, marketplace_id, sizes.backlog, sizes.rate, sizes.seconds)
            steady_write = time.perf_counter() - steady_started
            steady_done = _wait_for(receiver, sizes.backlog + written, sizes.timeout)
        finally:
            processes.stop(beat)
            processes.stop(worker)
        floor_seconds = _floor(receiver.url, secret, sizes.backlog)

        with rt.uow() as session:
            stored = int(
                session.execute(
                    text("SELECT count(*) FROM events WHERE marketplace_id = :m"),
                    {"m": marketplace_id},
                ).scalar_one()
            )
    unique = receiver.unique()
    arrivals = receiver.snapshot()
    steady = [a for a in arrivals[steady_from:] if a.seq > sizes.backlog]
    lags = [(a.arrived - a.timestamp).total_seconds() for a in steady]
    delivered_rate = sizes.backlog / drain_seconds if drain_seconds else 0.0
    floor_rate = sizes.backlog / floor_seconds
    produced_rate = sizes.backlog / produce_seconds
    seqs = [a.seq for a in arrivals]
    checks = {
        "every event arrived (distinct ids == events written)": len(unique) == stored,
        "every delivery verified": all(a.verified for a in unique.values()),
        "arrivals in sequence order": seqs == sorted(seqs),
        "backlog drained before the timeout": drain_seconds is not None,
        "steady phase delivered before the timeout": steady_done is not None,
    }
    lag_row = (
        [fmt_seconds(_percentile(lags, 50)), fmt_seconds(_percentile(lags, 99))]
        if lags
        else ["-", "-"]
    )
    return ScenarioResult(
        key="webhooks",
        title="6. Webhooks",
        setup=(
            f"A fresh database, one marketplace, one endpoint to a verifying receiver on "
            f"loopback; one `celery worker` process and `celery beat` (dispatch every "
            f"{rt.settings.webhook_dispatch_interval_seconds:g} s, "
            f"{rt.settings.webhook_delivery_budget} events per delivery task). Backlog: "
            f"{sizes.backlog:,} events written in transactions of {BATCH} before the worker "
            f"starts. Steady: {sizes.rate:,} events/s written for {sizes.seconds:g} s "
            f"({written:,} events in {fmt_seconds(steady_write)}) while it runs. Floor: "
            f"the same {sizes.backlog:,} signed bodies posted by one thread over one "
            "kept-alive connection (no database, no queue)."
        ),
        tables=[
            Table(
                ["measure", "value", "floor: one thread posting the same bodies", FLOOR_RATIO],
                [
                    [
                        "events written per second (outbox, one writer)",
                        fmt_int(produced_rate),
                        "—",
                        "—",
                    ],
                    [
                        "events delivered per second (backlog, one worker)",
                        fmt_int(delivered_rate),
                        fmt_int(floor_rate),
                        floor_ratio(delivered_rate, floor_rate),
                    ],
                    ["lag, state change to receiver, p50 (steady)", lag_row[0], "—", "—"],
                    ["lag, state change to receiver, p99 (steady)", lag_row[1], "—", "—"],
                ],
            )
        ],
        checks=checks,
        breakdown=[
            f"backlog of {sizes.backlog:,}: written in {fmt_seconds(produce_seconds)}, "
            f"delivered in {fmt_seconds(drain_seconds or 0)} from the worker's start "
            f"(its start-up included)",
            f"{len(arrivals):,} deliveries for {len(unique):,} distinct ids "
            f"({len(arrivals) - len(unique)} repeats)",
            f"steady lag over {len(lags):,} events: p50 {lag_row[0]}, p99 {lag_row[1]}",
        ],
    )
