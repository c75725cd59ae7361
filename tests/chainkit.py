"""Small helpers the chain tests share: seeding earnings, mining, reading balances."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak
from sqlalchemy import text

import devstack
from payouts.catalog import ensure_marketplace, set_payout_addresses
from payouts.chain import codec
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.rollup import handlers as rollups
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.submission import handlers as submission
from payouts.submission.handlers import SubmitResult
from payouts.tracking import reports
from tests.waiting import wait_until

MARKETPLACE = "test-marketplace"


def seed(rt: Runtime, creators: int, per_creator: int = 2, seed: int = 1) -> dict[str, str]:
    """Record earnings for ``creators`` fresh addresses; returns creator id -> address."""
    rng = random.Random(seed)
    recipients = {f"c{seed}-{i}": Account.create().address for i in range(creators)}
    with rt.uow() as session:
        rt.sync_assets(session)
        set_payout_addresses(session, ensure_marketplace(session, MARKETPLACE), recipients)
        session.commit()
    ingest.record(
        rt,
        MARKETPLACE,
        [
            Earning(f"{c}-{n}", c, rng.randint(10_000, 90_000), "USDC")
            for c in recipients
            for n in range(per_creator)
        ],
    )
    return recipients


def roll_up_now(rt: Runtime) -> int:
    """Roll up a window that closes after every credit recorded so far."""
    start = (
        datetime.now(UTC)
        + timedelta(seconds=1)
        - timedelta(seconds=rt.settings.rollup_window_seconds)
    )
    return rollups.rollup(rt, window_start=start, actor="test").payouts


def settle_and_submit(rt: Runtime) -> list[SubmitResult]:
    """Seal what is pending and send every sealed batch at once, as an operator's run does."""
    plan = settlement.settle(rt, actor="test")["USDC"]
    return [submission.submit(rt, b.batch_id, actor="test") for b in plan.sealed]


def node_gone(rt: Runtime) -> Runtime:
    """The same system (same database) whose node no longer answers, and no circuit breaker
    in the way, so every call is a real try."""
    return Runtime(
        rt.settings.model_copy(
            update={
                "rpc_url": f"http://127.0.0.1:{devstack.free_port()}",
                "breaker_failure_threshold": 1_000,
            }
        )
    )


def mine(rt: Runtime, blocks: int) -> None:
    rt.chain.rpc("anvil_mine", [hex(blocks)])


def token_balance(rt: Runtime, token: str, holder: str) -> int:
    return int(rt.chain.call(token, codec.balance_of_calldata(holder)), 16)


def ledger_paid_by_address(rt: Runtime) -> dict[str, int]:
    with rt.uow() as session:
        rows = session.execute(
            text(
                "SELECT recipient, sum(amount) AS paid FROM payouts WHERE state = 'finalized'"
                " GROUP BY recipient"
            )
        ).all()
    return {r.recipient: int(r.paid) for r in rows}


def scalar(rt: Runtime, sql: str) -> int:
    return int(value(rt, sql))


def value(rt: Runtime, sql: str) -> Any:
    with rt.uow() as session:
        return session.execute(text(sql)).scalar_one()


def assert_chain_pays_what_the_ledger_says(rt: Runtime, recipients: dict[str, str]) -> None:
    """Every recipient holds exactly what the ledger says it was paid: not less, not twice."""
    token = rt.settings.assets[0].address
    assert token is not None
    paid = ledger_paid_by_address(rt)
    assert set(paid) == set(recipients.values())
    for address, amount in paid.items():
        assert token_balance(rt, token, address) == amount


@contextlib.contextmanager
def automine_off(rt: Runtime) -> Iterator[None]:
    """Blocks come only when the test mines them (the session's anvil is restored after)."""
    rt.chain.rpc("evm_setAutomine", [False])
    try:
        yield
    finally:
        rt.chain.rpc("evm_setAutomine", [True])


def mine_at_base_fee(rt: Runtime, base_fee: int, blocks: int = 1) -> None:
    """Mine blocks whose base fee is ``base_fee`` (a fee spike, or calm after one)."""
    for _ in range(blocks):
        rt.chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(base_fee)])
        rt.chain.rpc("evm_mine", [])


def pool_hashes(rt: Runtime) -> set[str]:
    """Hashes of the transactions waiting in anvil's pool."""
    content = rt.chain.rpc("txpool_content", [])
    return {
        tx["hash"] for by_sender in content.get("pending", {}).values() for tx in by_sender.values()
    }


def block_recipient(rt: Runtime, recipient: str, blocked: bool = True) -> None:
    """The test token's blocklist: transfers to ``recipient`` revert (a sanctioned address)."""
    token = rt.settings.assets[0].address
    data = keccak(text="setBlocked(address,bool)")[:4] + encode(
        ["address", "bool"], [recipient, blocked]
    )
    tx = {"from": devstack.DEV_ADDRESSES[0], "to": token, "data": "0x" + data.hex()}
    tx_hash = rt.chain.rpc("eth_sendTransaction", [tx])
    receipt = wait_until(  # with automine off, a miner thread brings the block
        lambda: rt.chain.receipt(tx_hash),
        timeout=30,
        interval=0.1,
        what=f"the receipt of setBlocked({recipient}, {blocked})",
    )
    assert receipt["status"] == "0x1"


def assert_books_balance(rt: Runtime) -> None:
    """Every invariant of reports.check holds (ledger sums, paid once, audit rows)."""
    with rt.uow() as session:
        check = reports.check(session)
    assert check.ok, [r for r in check.results if not r.ok]


@pytest.fixture(scope="module", name="anvil")
def own_anvil(state_dir: Path) -> Iterator[devstack.Anvil]:
    """A chain of the importing module's own, in place of the session's: the claims-on-chain
    and reorg tests rewind, reorganise and re-fund that chain, and no other module's blocks
    or pool should share it with them. (Their failures in the full suite came from anvil
    mining an automined send in the background; the ``sends_return_mined`` fixture waits.)"""
    with devstack.Anvil(state_dir=state_dir) as node:
        yield node
