"""Running a measured step in a fresh process, to know that process's own peak memory.

A benchmark process has seeded, imported and cached much more than the step under test, so
its peak RSS says nothing about the step. The step runs instead in a process forked from a
fork server that has imported the payouts package and nothing else: its peak RSS is that of
a worker that imported the package and did this one job, which is what an operator sizes a
Celery worker for. (Forking from the server saves each step the seconds of those imports.)
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["payouts.rollup.handlers", "payouts.ingest.handlers"])


def in_child(function: Callable[..., T], *args: Any) -> T:
    """Call ``function(*args)`` in a new process and return its result (both must pickle)."""
    with _CONTEXT.Pool(1) as pool:
        return pool.apply(function, args)
