"""The operators' CLI for claims over a real database: a creator's settle mode, and the export
of every current voucher that keeps claims alive without the API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from pydantic import SecretStr
from sqlalchemy import text
from typer.testing import CliRunner

import devstack
from config.settings import get_settings
from payouts.catalog import ensure_marketplace, set_payout_addresses
from payouts.chain.vouchers import SignedVoucher, Voucher
from payouts.claims import handlers as claims
from payouts.cli import app
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.runtime import Runtime
from tests.chainkit import roll_up_now
from tests.claimkit import claim_pending
from tests.conftest import ledger_settings, settings_env

ESCROW = "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
SHARED = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


@pytest.fixture
def claims_cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The CLI as an operator runs it: settings from the environment, with an escrow and a
    voucher signer."""
    settings = ledger_settings(db_url, tmp_path).model_copy(
        update={"claims_address": ESCROW, "signer_key": SecretStr(devstack.DEV_KEYS[1])}
    )
    env = settings_env(settings)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield CliRunner(env=env)
    get_settings.cache_clear()


@pytest.fixture
def rt(claims_cli: CliRunner) -> Runtime:
    return Runtime(get_settings())


def _run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, list(args))


def _creators(rt: Runtime, marketplace: str, addresses: dict[str, str]) -> int:
    with rt.uow() as session:
        rt.sync_assets(session)
        market = ensure_marketplace(session, marketplace)
        set_payout_addresses(session, market, addresses)
        session.commit()
    return market


def _settle_by_claim(rt: Runtime, earnings: dict[str, list[Earning]]) -> None:
    for marketplace, recorded in earnings.items():
        ingest.record(rt, marketplace, recorded)
    roll_up_now(rt)
    claim_pending(rt)


def test_set_mode_changes_how_a_creator_settles(claims_cli: CliRunner, rt: Runtime) -> None:
    _creators(rt, "market", {"alice": SHARED})

    done = _run(
        claims_cli, "creators", "set-mode", "alice", "claim", "--marketplace", "market", "--json"
    )

    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == {"creator_id": "alice", "settle_mode": "claim"}
    with rt.uow() as session:
        mode = session.execute(text("SELECT settle_mode FROM creators")).scalar_one()
    assert mode == "claim"


def test_set_mode_refuses_a_mode_nobody_named_and_a_creator_nobody_knows(
    claims_cli: CliRunner, rt: Runtime
) -> None:
    _creators(rt, "market", {"alice": SHARED})

    bad_mode = _run(claims_cli, "creators", "set-mode", "alice", "often", "--marketplace", "market")
    nobody = _run(claims_cli, "creators", "set-mode", "nobody", "push", "--marketplace", "market")

    assert bad_mode.exit_code == 2
    assert "settle_mode must be one of" in bad_mode.output
    assert nobody.exit_code == 1


def test_export_writes_every_address_voucher_naming_the_creators_it_pays(
    claims_cli: CliRunner, rt: Runtime, tmp_path: Path
) -> None:
    one = _creators(rt, "one", {"alice": SHARED, "bob": BOB})
    two = _creators(rt, "two", {"alias": SHARED})
    for market, creator in ((one, "alice"), (one, "bob"), (two, "alias")):
        claims.set_settle_mode(rt, market, creator, "claim", actor="test")
    _settle_by_claim(
        rt,
        {
            "one": [Earning("a-1", "alice", 30_000, "USDC"), Earning("b-1", "bob", 50_000, "USDC")],
            "two": [Earning("x-1", "alias", 40_000, "USDC")],
        },
    )
    file = tmp_path / "vouchers.json"

    done = _run(claims_cli, "claims", "export", str(file))

    assert done.exit_code == 0, done.output
    exported = json.loads(file.read_text())
    assert (exported["contract"], exported["signer"]) == (ESCROW, rt.claim_signer.address)
    by_address = {v["recipient"]: v for v in exported["vouchers"]}
    assert set(by_address) == {SHARED, BOB}
    assert by_address[SHARED]["creators"] == sorted([f"{one}:alice", f"{two}:alias"])
    assert by_address[BOB]["creators"] == [f"{one}:bob"]
    for address, cumulative in ((SHARED, 70_000), (BOB, 50_000)):
        v = by_address[address]["voucher"]
        signed = SignedVoucher(
            Voucher(v["chain_id"], v["contract"], v["token"], v["recipient"], int(v["cumulative"])),
            bytes.fromhex(v["signature"][2:]),
        )
        assert signed.voucher.cumulative == cumulative
        assert signed.signer() == rt.claim_signer.address
