"""The dev stack starts real servers: embedded PostgreSQL, embedded Redis, anvil, dev contracts."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import kombu
import psycopg
import pytest
import redis
from eth_account import Account
from sqlalchemy import create_engine, make_url, text
from web3 import Web3

import devstack
from config.settings import Settings
from devstack import (
    DEV_ADDRESSES,
    DEV_KEYS,
    Anvil,
    DevStackError,
    deploy_dev_contracts,
    postgres_url,
    redis_url,
    rpc_chain_id,
    stop_embedded_postgres,
    stop_embedded_redis,
)
from devstack.contracts import MAX_UINT256
from payouts.chain.artifacts import load_artifact
from tests.waiting import wait_until


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    """Settings with no servers configured (explicit None beats any PAYOUTS_* in the env)."""
    return Settings(state_dir=tmp_path / "state", database_url=None, redis_url=None)


@pytest.fixture
def anvil(tmp_path: Path) -> Iterator[Anvil]:
    with Anvil(state_dir=tmp_path / "state") as chain:
        yield chain


def test_dev_keys_are_anvils_first_three_accounts() -> None:
    expected = [
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    ]
    assert [Account.from_key(key).address for key in DEV_KEYS] == expected
    assert list(DEV_ADDRESSES) == expected


def test_configured_urls_are_used_as_is(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path / "state",
        database_url="postgresql+psycopg://u@db.invalid/x",
        redis_url="redis://cache.invalid:6379/3",
    )
    assert postgres_url(settings) == "postgresql+psycopg://u@db.invalid/x"
    assert redis_url(settings) == "redis://cache.invalid:6379/3"
    assert not (tmp_path / "state").exists()  # nothing was started


def test_embedded_postgres_answers_through_sqlalchemy(embedded_settings: Settings) -> None:
    started = time.monotonic()
    url = postgres_url(embedded_settings)
    try:
        assert url.startswith("postgresql+psycopg://")
        assert "host=" in url
        engine = create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar_one() == 1
            assert conn.execute(text("select current_database()")).scalar_one() == "payouts"
        engine.dispose()
        assert time.monotonic() - started < 60
        assert postgres_url(embedded_settings) == url  # reused, not started twice
    finally:
        stop_embedded_postgres(embedded_settings)
    # Stopped: the socket no longer answers.
    query = make_url(url).query
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            host=str(query["host"]),
            port=int(str(query["port"])),
            user="postgres",
            connect_timeout=2,
        )


def test_embedded_redis_is_a_working_celery_broker(embedded_settings: Settings) -> None:
    url = redis_url(embedded_settings)
    try:
        assert url.startswith("redis://127.0.0.1:")
        with kombu.Connection(url) as conn:
            conn.ensure_connection(max_retries=3)
            queue = conn.SimpleQueue("devstack-test")
            queue.put({"hello": "broker"})
            assert queue.get(timeout=5).payload == {"hello": "broker"}
            queue.close()
        client = redis.Redis.from_url(url)
        assert client.ping() is True
        client.close()
        # Another process on the same state_dir reuses the server instead of starting one.
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from config.settings import Settings; "
                "from devstack import redis_url; "
                "print(redis_url(Settings(state_dir=Path(sys.argv[1]), redis_url=None)))",
                str(embedded_settings.state_dir),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert other.stdout.strip() == url
    finally:
        stop_embedded_redis(embedded_settings)
    assert not devstack.redis_server._redis_answers(int(url.rsplit(":", 1)[1].split("/")[0]))


@pytest.mark.chain
def test_anvil_starts_stops_and_restarts_on_the_same_port(tmp_path: Path) -> None:
    chain = Anvil(state_dir=tmp_path / "state", chain_id=1337, extra_args=["--accounts", "3"])
    started = time.monotonic()
    with chain:
        assert time.monotonic() - started < 30
        port = chain.port
        assert chain.url == f"http://127.0.0.1:{port}"
        assert rpc_chain_id("127.0.0.1", port) == 1337
        w3 = Web3(Web3.HTTPProvider(chain.url))
        assert len(w3.eth.accounts) == 3
        chain.restart()
        assert chain.port == port
        assert chain.running
        assert rpc_chain_id("127.0.0.1", port) == 1337
    assert not chain.running
    assert rpc_chain_id("127.0.0.1", port) is None
    assert chain.log_path is not None
    assert chain.log_path.is_file()
    assert chain.log_path.parent == tmp_path / "state" / "anvil"


@pytest.mark.chain
def test_anvil_block_time_mines_without_transactions(tmp_path: Path) -> None:
    with Anvil(state_dir=tmp_path / "state", block_time=0.2) as chain:
        w3 = Web3(Web3.HTTPProvider(chain.url))
        wait_until(
            lambda: w3.eth.block_number >= 2,
            timeout=10,
            interval=0.1,
            what="anvil to mine blocks on its own",
        )


def test_missing_anvil_binary_says_to_run_npm_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devstack.anvil, "ANVIL_NPM_BINARY", tmp_path / "nope" / "anvil")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DevStackError, match="npm ci"):
        Anvil(state_dir=tmp_path / "state").start()


@pytest.mark.chain
def test_deploy_dev_contracts_funds_and_approves_the_hot_wallet(anvil: Anvil) -> None:
    mint = 1_000_000 * 10**6
    deployment = deploy_dev_contracts(anvil.url, DEV_KEYS[0], DEV_KEYS[1], mint)

    w3 = Web3(Web3.HTTPProvider(anvil.url))
    for address in (
        deployment.token_address,
        deployment.batcher_address,
        deployment.hot_wallet_address,
    ):
        assert Web3.is_checksum_address(address)
    assert deployment.hot_wallet_address == DEV_ADDRESSES[1]
    assert w3.eth.get_code(deployment.batcher_address)
    token = w3.eth.contract(address=deployment.token_address, abi=load_artifact("TestToken").abi)
    assert token.functions.symbol().call() == "USDC"
    assert token.functions.decimals().call() == 6
    assert token.functions.balanceOf(deployment.hot_wallet_address).call() == mint
    allowance = token.functions.allowance(
        deployment.hot_wallet_address, deployment.batcher_address
    ).call()
    assert allowance == MAX_UINT256 == 2**256 - 1


@pytest.mark.chain
def test_deploy_gives_a_fresh_hot_wallet_gas_money(tmp_path: Path) -> None:
    fresh_key = "0x" + "42" * 32
    with Anvil(state_dir=tmp_path / "state", block_time=0.5) as chain:
        deployment = deploy_dev_contracts(chain.url, DEV_KEYS[0], fresh_key, 5)
        w3 = Web3(Web3.HTTPProvider(chain.url))
        assert w3.eth.get_balance(deployment.hot_wallet_address) > 10**18 // 2
        assert deployment.hot_wallet_address == Account.from_key(fresh_key).address
