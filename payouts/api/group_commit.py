"""Group commit for single earnings: many requests, one transaction, each answered alone.

Each single-earning request waits on a future while a flusher records everything that queued
up during the previous flush in one transaction (``ingest.handlers.record_each``). Under load the
groups grow by themselves; with one request at a time a group is that one request, so no
request ever waits for a timer. A response is sent only after its transaction committed.
"""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool

from payouts.errors import IdempotencyInFlight
from payouts.ingest import handlers
from payouts.ingest.earnings import Earning
from payouts.runtime import Runtime

MAX_GROUP = 1000
# Transactions in flight at once per process. Two: one commits while the next is built. More
# split the same requests into smaller groups whose transactions contend in PostgreSQL: with
# 256 connections on 2 cores, 4 flushers took 134 us of PostgreSQL CPU per earning and
# 3,200/s, 2 took 95 us and 3,580/s (scripts/bench's single-earning load).
MAX_FLUSHERS = 2

_Waiting = tuple[int, Earning, "asyncio.Future[tuple[dict[str, object], bool]]"]


class EarningWriter:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._queue: list[_Waiting] = []
        self._keys: set[tuple[int, str]] = set()
        self._flushers = 0
        self._tasks: set[asyncio.Task[None]] = set()  # held so the loop cannot drop them

    async def record(self, marketplace_id: int, earning: Earning) -> tuple[dict[str, object], bool]:
        key = (marketplace_id, earning.idempotency_key)
        if key in self._keys:  # the same key is already waiting here: it is in flight
            raise IdempotencyInFlight(earning.idempotency_key)
        future: asyncio.Future[tuple[dict[str, object], bool]] = (
            asyncio.get_running_loop().create_future()
        )
        self._keys.add(key)
        self._queue.append((marketplace_id, earning, future))
        try:
            if self._flushers < MAX_FLUSHERS:
                self._flushers += 1
                task = asyncio.ensure_future(self._flush())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return await future
        finally:
            self._keys.discard(key)

    async def _flush(self) -> None:
        try:
            while self._queue:
                group = self._queue[:MAX_GROUP]
                del self._queue[:MAX_GROUP]
                try:
                    outcomes = await run_in_threadpool(
                        handlers.record_each,
                        self._runtime,
                        [(m, e) for m, e, _ in group],
                    )
                except Exception as exc:  # noqa: BLE001 - every waiter gets the failure
                    for _, _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), outcome in zip(group, outcomes, strict=True):
                    if future.done():  # its client went away; the earning is recorded anyway
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._flushers -= 1
