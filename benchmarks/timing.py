"""Clocks for the benchmarks: wall time, SQL time per statement, peak memory of a process.

``StatementTimer`` hooks SQLAlchemy's cursor events, so it sees exactly the statements the
code under test sends, without changing that code; it is how a roll-up or a reconciliation
says which statement the time went to.
"""

from __future__ import annotations

import re
import resource
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event


@dataclass
class Stopwatch:
    seconds: float = 0.0


@contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    watch = Stopwatch()
    started = time.perf_counter()
    try:
        yield watch
    finally:
        watch.seconds = time.perf_counter() - started


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


_SPACES = re.compile(r"\s+")


def statement_label(sql: str, width: int = 90) -> str:
    """A statement's first words, on one line: enough to find it in the source."""
    flat = _SPACES.sub(" ", sql).strip()
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@dataclass
class StatementTimer:
    """Seconds and calls per SQL statement text, for every statement an engine runs."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def top(self, n: int = 5) -> list[tuple[str, float, int]]:
        ranked = sorted(self.seconds.items(), key=lambda kv: kv[1], reverse=True)[:n]
        return [(statement_label(sql), secs, self.calls[sql]) for sql, secs in ranked]

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


@contextmanager
def time_statements(engine: Engine) -> Iterator[StatementTimer]:
    timer = StatementTimer()

    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        started = conn.info["bench_started"].pop()
        timer.seconds[statement] += time.perf_counter() - started
        timer.calls[statement] += 1

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield timer
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
