"""Starting and stopping the local servers' processes: free ports, spawning, waiting, logs.

Everything started here is stopped by the process that started it (explicitly, or at exit via
the parent-death signal), and never anything else.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

LOOPBACK = "127.0.0.1"


class DevStackError(RuntimeError):
    """A local dev service could not be started or used; the message says what to do."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the OS picks it, so parallel runs don't clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent_hook() -> Callable[[], None] | None:
    """On Linux, a hook for the child (run before exec) that SIGTERMs it when its parent dies.

    A demo or test run killed with SIGKILL cannot run its cleanup; without this its redis-server
    and anvil would be left running on random ports forever. (The kernel watches the *thread*
    that forked, so start servers from the main thread or one that lives as long as they do.)
    ``prctl`` is looked up here, in the parent, so the child only makes one system call.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1
    term = int(signal.SIGTERM)

    def hook() -> None:
        prctl(pr_set_pdeathsig, term)

    return hook


def spawn(argv: Sequence[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start a server process with its output in ``log``, out of the terminal's process group.

    Its own session keeps a Ctrl-C in the demo's terminal from killing the servers before the demo
    has stopped the workers that use them; the demo stops them itself, in order.
    """
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent_hook(),
    )


def terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM (a clean shutdown: redis saves, anvil closes), then SIGKILL if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def tail(path: Path, lines: int = 20) -> str:
    """The end of a server log, to put in an error message instead of 'see the log'."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    ready: Callable[[], bool],
    *,
    process: subprocess.Popen[bytes],
    timeout: float,
    what: str,
    log_path: Path,
) -> None:
    """Poll ``ready`` until it holds; fail fast, with the log, if the process died meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise DevStackError(
                f"{what} exited with code {process.returncode} while starting; "
                f"log {log_path}:\n{tail(log_path)}"
            )
        if ready():
            return
        if time.monotonic() > deadline:
            raise DevStackError(
                f"{what} did not answer within {timeout:.0f}s; log {log_path}:\n{tail(log_path)}"
            )
        time.sleep(0.05)
