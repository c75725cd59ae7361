"""Scenario 4: a hundred thousand payouts on chain, matched and finalized by the reconciler.

The payouts are sealed and sent by the real handlers (``settle``, ``submit``) on anvil
(automine), the chain is mined past the finality depth, and the database is copied. Then
one ``reconcile.handlers.reconcile`` call matches every batch's logs and finalizes every payout
(the batcher's logs by range of ``eth_getLogs``, then the receipts of our batches'
transactions in batched JSON-RPC for their transfers and gas); the baseline is the same
reconciler on the copy, reading the batcher's logs the naive way: one
``eth_getTransactionReceipt`` per transaction the wallet sent, instead of ranges of
``eth_getLogs``. Both decode raw logs with ``payouts.chain.codec``.

The floor is what the node and one Python process must do whatever the reconciler does:
read the same blocks' Transfer logs from the hot wallet with one raw ``eth_getLogs`` and
decode them (``benchmarks.floors``), on the same anvil right after the measured call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from benchmarks import chainwork, floors, stack
from benchmarks.report import (
    FLOOR_RATIO,
    ScenarioResult,
    Table,
    Target,
    floor_ratio,
    fmt_ratio,
    fmt_seconds,
    met,
)
from benchmarks.seed import MIN_AMOUNT, seed_ledger
from benchmarks.timing import stopwatch, time_statements
from payouts.chain.client import ChainClient
from payouts.db import engine_for, unit_of_work
from payouts.reconcile import handlers as reconciler
from payouts.rollup import handlers as rollups
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.submission import handlers as submission

TARGET_SECONDS = 5.0
TARGET_OF_FLOOR = 3.0


@dataclass(frozen=True)
class ReconcileSizes:
    payouts: int


class ReceiptPerTransaction(ChainClient):
    """A chain client whose ``logs`` come from one receipt per transaction we sent."""

    def __init__(self, rpc_url: str, tx_hashes: list[str]) -> None:
        super().__init__(rpc_url, timeout=60)
        self._tx_hashes = tx_hashes
        self._receipts: list[dict[str, Any]] | None = None

    def logs(
        self, address: str | list[str], topics: list[Any], from_block: int, to_block: int
    ) -> list[dict[str, Any]]:
        if self._receipts is None:
            self._receipts = [r for h in self._tx_hashes if (r := self.receipt(h))]
        wanted = {a.lower() for a in ([address] if isinstance(address, str) else address)}
        return [
            log
            for receipt in self._receipts
            if from_block <= int(receipt["blockNumber"], 16) <= to_block
            for log in receipt["logs"]
            if log["address"].lower() in wanted and _topics_match(log["topics"], topics)
        ]


def _topics_match(have: list[str], want: list[Any]) -> bool:
    for position, allowed in enumerate(want):
        if allowed is None:
            continue
        options = allowed if isinstance(allowed, list) else [allowed]
        if position >= len(have) or have[position] not in options:
            return False
    return True


def settle_all(rt: Runtime) -> int:
    """Seal every pending payout and send each batch (automine mines it); returns batches."""
    batches = 0
    while True:
        sealed = [b for plan in settlement.settle(rt, actor="bench").values() for b in plan.sealed]
        if not sealed:
            return batches
        for batch in sealed:
            submission.submit(rt, batch.batch_id, actor="bench")
        batches += len(sealed)


def _reconcile(rt: Runtime) -> tuple[float, float, chainwork.RpcTimer, list[str]]:
    rpc = chainwork.RpcTimer(rt.chain)
    with time_statements(engine_for(rt.database_url)) as sql, stopwatch() as watch:
        reconciler.reconcile(rt, actor="bench")
    rpc.stop()
    top = [f"{s:,.2f} s in {n} x `{q}`" for q, s, n in sql.top(3)]
    return watch.seconds, sql.total, rpc, top


def run(servers: stack.Servers, sizes: ReconcileSizes) -> ScenarioResult:
    with (
        stack.chain(servers) as (anvil, deployment),
        stack.fresh_db(servers, "reconcile") as url,
    ):
        # One credit per creator, each worth a payout (the smallest credit is the minimum).
        env = stack.bench_env(
            servers, url, rpc_url=anvil.url, deployment=deployment, min_payout=MIN_AMOUNT
        )
        rt = stack.runtime_for(env)
        seed_ledger(rt, creators=sizes.payouts, credits=sizes.payouts)
        start = datetime.now(UTC) + timedelta(seconds=1) - timedelta(hours=1)
        rollups.rollup(rt, window_start=start, actor="bench")
        with stopwatch() as sending:
            batches = settle_all(rt)
        rt.chain.rpc("anvil_mine", [hex(rt.settings.finality_depth + 1)])
        with unit_of_work(url) as session:
            hashes = list(session.execute(text("SELECT tx_hash FROM tx_attempts")).scalars())
        # Untimed, the floor's own read once: a fresh anvil builds what it answers for a block
        # on the first read of it (the reconciler's receipts took 2.1 s then, 1.1 s after),
        # so the reconciler, its baseline and the floor all read a node that has served these
        # blocks before, as a node in service has.
        floors.raw_transfer_logs(
            anvil.url, deployment.token_address, rt.signer.address, rt.chain.block_number()
        )
        with stack.cloned_db(servers, url, "reconcile_receipts") as copy:
            seconds, sql_seconds, rpc, top = _reconcile(rt)
            floor = floors.raw_transfer_logs(
                anvil.url, deployment.token_address, rt.signer.address, rt.chain.block_number()
            )
            checks = chainwork.ledger_matches_chain(rt)
            checks["every payout finalized"] = chainwork.states(url, "payouts") == {
                "finalized": sizes.payouts
            }
            baseline_rt = stack.runtime_for({**env, "PAYOUTS_DATABASE_URL": copy})
            baseline_rt.__dict__["chain"] = ReceiptPerTransaction(anvil.url, hashes)
            baseline, _, baseline_rpc, _ = _reconcile(baseline_rt)
            checks["baseline finalized every payout too"] = chainwork.states(copy, "payouts") == {
                "finalized": sizes.payouts
            }

    python_seconds = seconds - sql_seconds - rpc.total
    of_floor = seconds / floor.seconds
    checks["the floor read one Transfer per payout"] = floor.transfers == sizes.payouts
    return ScenarioResult(
        key="reconcile",
        title="4. Reconciliation",
        setup=(
            f"{sizes.payouts:,} payouts to fresh addresses, sealed by `settle` into "
            f"{batches} batches and sent by `submit` ({fmt_seconds(sending.seconds)}, "
            "estimate, sign and send included) on anvil with automine, then "
            f"{rt.settings.finality_depth + 1} blocks mined. Measured: one `reconcile` "
            "that matches every batch and finalizes every payout (ledger postings, states, "
            "credits paid). Baseline: the same call on a copy of the database, its logs read "
            f"with one receipt per transaction ({len(hashes)} receipts). Floor: the hot "
            "wallet's Transfer logs of the same blocks (0 to the head) read with one raw "
            "`eth_getLogs` (httpx POST, `json.loads`) and decoded by slicing lowercase hex and "
            "parsing integers, on the same anvil; no SQL (`benchmarks/floors.py`). That read "
            "is made once, untimed, before anything is measured, so the reconciler, its "
            "baseline and the floor all read blocks the node has served before."
        ),
        tables=[
            Table(
                [
                    "measure",
                    "log ranges, receipts batched",
                    "receipt per transaction",
                    "ratio (baseline ÷ value)",
                    "floor: eth_getLogs + JSON + decode",
                    FLOOR_RATIO,
                    "target",
                    "met",
                ],
                [
                    [
                        f"seconds to match and finalize {sizes.payouts:,} payouts",
                        fmt_seconds(seconds),
                        fmt_seconds(baseline),
                        fmt_ratio(baseline / seconds),
                        fmt_seconds(floor.seconds),
                        floor_ratio(seconds, floor.seconds),
                        f"≤ {fmt_seconds(TARGET_SECONDS)}; ≤ {TARGET_OF_FLOOR:g}x floor",
                        f"{met(seconds <= TARGET_SECONDS)}; {met(of_floor <= TARGET_OF_FLOOR)}",
                    ]
                ],
            )
        ],
        targets=[
            Target(
                f"reconcile {sizes.payouts:,} payouts",
                fmt_seconds(seconds),
                f"≤ {fmt_seconds(TARGET_SECONDS)}",
                seconds <= TARGET_SECONDS,
                of_floor=of_floor,
            ),
            Target(
                f"reconcile {sizes.payouts:,} payouts against its floor",
                f"{fmt_seconds(seconds)}, floor {fmt_seconds(floor.seconds)}",
                f"≤ {TARGET_OF_FLOOR:g}x floor",
                of_floor <= TARGET_OF_FLOOR,
                of_floor=of_floor,
            ),
        ],
        checks=checks,
        breakdown=[
            f"SQL {sql_seconds:,.2f} s ({sql_seconds / seconds:.0%}); slowest: " + "; ".join(top),
            f"JSON-RPC {rpc.total:,.2f} s ({rpc.total / seconds:.0%}): {rpc.summary()}",
            f"Python between them (decoding, matching, building statements) "
            f"{python_seconds:,.2f} s ({python_seconds / seconds:.0%})",
            f"baseline JSON-RPC {baseline_rpc.total:,.2f} s: {baseline_rpc.summary()}",
            f"floor: {floor.transfers:,} logs, {floor.response_bytes / 2**20:,.1f} MB of JSON "
            f"fetched and parsed in {floor.fetch_seconds:,.2f} s, decoded in "
            f"{floor.decode_seconds:,.3f} s",
        ],
    )
