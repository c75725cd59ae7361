"""A local anvil chain (the binary pinned in package.json), started and stopped by its owner."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from config.settings import REPO_ROOT, get_settings
from devstack.spawning import LOOPBACK, DevStackError, free_port, spawn, tail, terminate, wait_until

ANVIL_NPM_BINARY = (
    REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
)


def anvil_binary() -> Path:
    """The anvil pinned in package.json (npm), else one on PATH; a clear error when neither.

    npm installs the binary for this platform as an optional dependency (linux-amd64 here,
    another ``anvil-<os>-<arch>`` on a Mac); its ``.bin`` shim is a node script, which would
    leave anvil running if terminated, so the binary itself is run.
    """
    candidates = [ANVIL_NPM_BINARY, *sorted(ANVIL_NPM_BINARY.parents[2].glob("anvil-*/bin/anvil"))]
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise DevStackError(
        f"anvil not found: expected {ANVIL_NPM_BINARY} (run `npm ci` in the repository root "
        "to install the pinned one) or `anvil` on PATH"
    )


def rpc_chain_id(url_host: str, port: int, timeout: float = 1.0) -> int | None:
    """eth_chainId over plain HTTP, or None if nothing answers yet (used to wait for startup)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    conn = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        conn.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
        reply = json.loads(conn.getresponse().read())
        return int(reply["result"], 16)
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
        return None
    finally:
        conn.close()


class Anvil:
    """A local anvil chain on 127.0.0.1, started by this object and stopped only by it.

    Use as a context manager (``with Anvil() as chain: chain.url``) or call :meth:`start` and
    :meth:`stop`. :meth:`restart` kills the node and starts a fresh one on the same port, which is
    how tests make an RPC endpoint vanish and come back under a client that keeps its URL; the
    chain's state is not kept. Output goes to ``state_dir/anvil/anvil-PORT.log``, not the terminal.
    """

    def __init__(
        self,
        *,
        block_time: float | None = None,
        extra_args: Sequence[str] = (),
        chain_id: int = 31337,
        port: int | None = None,
        state_dir: Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.block_time = block_time
        self.extra_args = list(extra_args)
        self.chain_id = chain_id
        self.startup_timeout = startup_timeout
        self._requested_port = port
        self._port: int | None = None
        self._state_dir = state_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise DevStackError("anvil has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Anvil:
        """Start anvil and return once it answers eth_chainId with the expected chain id."""
        if self.running:
            return self
        if self._port is not None:  # a restart: the same port or nothing
            self._launch(self._port)
            return self
        if self._requested_port is not None:
            self._launch(self._requested_port)
            return self
        for attempt in range(3):  # a free port can be taken between choosing and binding it
            try:
                self._launch(free_port())
            except DevStackError:
                if attempt == 2 or "in use" not in tail(self.log_path or Path(), 5):
                    raise
            else:
                return self
        return self

    def _launch(self, port: int) -> None:
        binary = anvil_binary()
        state_dir = self._state_dir or get_settings().state_dir
        log_dir = state_dir / "anvil"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"anvil-{port}.log"
        argv = [
            str(binary),
            "--host", LOOPBACK,
            "--port", str(port),
            "--chain-id", str(self.chain_id),
        ]  # fmt: skip
        if self.block_time is not None:
            argv += ["--block-time", f"{self.block_time:g}"]
        argv += self.extra_args
        self._log = self.log_path.open("ab")
        self._process = spawn(argv, self._log)
        try:
            wait_until(
                lambda: rpc_chain_id(LOOPBACK, port) == self.chain_id,
                process=self._process,
                timeout=self.startup_timeout,
                what=f"anvil on port {port}",
                log_path=self.log_path,
            )
        except DevStackError:
            self._shutdown()
            raise
        self._port = port

    def _shutdown(self) -> None:
        if self._process is not None:
            terminate(self._process)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Stop the node this object started (idempotent). The port is kept for :meth:`restart`."""
        self._shutdown()

    def restart(self) -> None:
        """Stop, then start a fresh node on the same port (the chain's state is not kept)."""
        port = self.port
        self._shutdown()
        self._launch(port)

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
