"""Starting real Celery worker, beat and API processes for the demo and the end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from config.settings import REPO_ROOT, Settings
from workers.queues import queues


def purge_queues(settings: Settings, broker_url: str) -> None:
    """Empty every queue (tasks left by an earlier run would act on another database)."""
    from kombu.connection import Connection  # only the demo and the tests purge

    with Connection(broker_url) as conn:  # type: ignore[no-untyped-call]
        channel = conn.channel()
        for queue in queues(settings):
            try:
                channel.queue_purge(queue)
            except Exception:  # noqa: BLE001, S112 - a queue that does not exist yet is empty
                continue


def celery_argv(
    kind: str, state_dir: Path, concurrency: int = 2, queues: Sequence[str] = ()
) -> list[str]:
    base = [sys.executable, "-m", "celery", "-A", "workers.app"]
    if kind == "worker":
        # Without queues, no -Q: the worker consumes every queue workers.app declares (retry
        # tiers included).
        only = ["--queues", ",".join(queues)] if queues else []
        return [
            *base, "worker", "--concurrency", str(concurrency),
            "--pool", "prefork", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat", *only,
        ]  # fmt: skip
    if kind == "beat":
        schedule = str(state_dir / "celerybeat-schedule")
        return [*base, "beat", "--loglevel", "INFO", "--schedule", schedule]
    raise ValueError(kind)


def start_celery(
    kind: str,
    env: Mapping[str, str],
    state_dir: Path,
    concurrency: int = 2,
    queues: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    return _start(kind, celery_argv(kind, state_dir, concurrency, queues), env, state_dir)


def start_api(env: Mapping[str, str], state_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """``payouts api`` on 127.0.0.1:``port``, as an operator would run it."""
    argv = [sys.executable, "-m", "payouts.cli", "api", "--host", "127.0.0.1", "--port", str(port)]
    return _start("api", argv, env, state_dir)


def _start(
    name: str, argv: list[str], env: Mapping[str, str], state_dir: Path
) -> subprocess.Popen[bytes]:
    state_dir.mkdir(parents=True, exist_ok=True)
    log = (state_dir / f"{name}.log").open("ab")
    return subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so stop() can end the whole process group
    )


def stop(process: subprocess.Popen[bytes], *, kill: bool = False, timeout: float = 20.0) -> None:
    if process.poll() is not None:
        return
    sig = signal.SIGKILL if kill else signal.SIGTERM
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)
