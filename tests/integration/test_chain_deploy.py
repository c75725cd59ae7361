"""`payouts chain deploy` on a real anvil: what it sets up, that a second run sends nothing, and
what it refuses."""

from __future__ import annotations

import json
import secrets
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from eth_account import Account
from pydantic import SecretStr

import devstack
from config.settings import AssetConfig, Settings, settings_from_environ
from payouts.chain import codec
from payouts.chain.artifacts import load_artifact
from payouts.chain.client import ChainClient
from payouts.chain.signer import LocalKeySigner
from payouts.errors import InvalidInput
from payouts.ops import deploy
from payouts.runtime import Runtime

Operator = Callable[..., Result]


def _runtime(rpc_url: str, key: str, **values: object) -> Runtime:
    return Runtime(Settings.model_validate({"rpc_url": rpc_url, "signer_key": key, **values}))


def _read(chain: ChainClient, token: str, data: str) -> int:
    return int(chain.call(token, data), 16)


def test_deploy_sets_up_a_new_hot_wallet_and_a_second_run_sends_nothing(
    anvil: devstack.Anvil, operator: Operator, tmp_path: Path
) -> None:
    key = "0x" + secrets.token_hex(32)
    hot_wallet = Account.from_key(key).address
    env_file = tmp_path / "chain.env"

    first = operator(
        _runtime(anvil.url, key), "chain", "deploy", "--json", "--env-file", str(env_file)
    )

    assert first.exit_code == 0, first.output
    done = json.loads(first.stdout)
    assert [step.split()[0] for step in done["sent"]] == [
        "gave",
        "deploy",
        "deploy",
        "deploy",
        "mint",
        "approve",
    ]
    assert done["hot_wallet"] == hot_wallet
    written = dict(shlex.split(line)[0].split("=", 1) for line in env_file.read_text().splitlines())
    assert written == done["settings"]
    settings = settings_from_environ(done["settings"])
    [token] = settings.assets
    assert (token.symbol, token.decimals) == ("USDC", 6)
    chain = ChainClient(anvil.url)
    assert str(settings.batcher_address).startswith("0x")
    code = chain.rpc("eth_getCode", [settings.batcher_address, "latest"])
    assert code == load_artifact("PayoutBatcher").deployed_bytecode
    assert _read(chain, str(token.address), codec.balance_of_calldata(hot_wallet)) == (
        deploy.DEV_MINT
    )
    allowance = codec.allowance_calldata(hot_wallet, str(settings.batcher_address))
    assert _read(chain, str(token.address), allowance) == deploy.MAX_UINT256
    nonce = chain.nonce(hot_wallet)

    rerun = _runtime(
        anvil.url,
        key,
        batcher_address=settings.batcher_address,
        claims_address=settings.claims_address,
        assets=[token.model_dump(exclude_unset=True)],
    )
    again = operator(rerun, "chain", "deploy", "--json")

    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["sent"] == []
    # The same deployment (the harness passes every asset field, so compare them read back).
    assert settings_from_environ(json.loads(again.stdout)["settings"]) == settings
    assert chain.nonce(hot_wallet) == nonce


def test_deploy_refuses_a_node_of_another_chain(anvil: devstack.Anvil, operator: Operator) -> None:
    hot_wallet = devstack.DEV_ADDRESSES[2]
    chain = ChainClient(anvil.url)
    nonce = chain.nonce(hot_wallet)

    result = operator(_runtime(anvil.url, devstack.DEV_KEYS[2], chain_id=1), "chain", "deploy")

    assert result.exit_code == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "is chain 31337, the settings say 1" in line
    assert chain.nonce(hot_wallet) == nonce


def test_a_reset_dev_chain_gets_the_configured_contracts_again(anvil: devstack.Anvil) -> None:
    """Addresses without code on a dev chain: deployed anew, the asset's settings kept."""
    key = SecretStr(devstack.DEV_KEYS[2])
    gone = Account.create().address
    euro = AssetConfig(symbol="EURC", decimals=2, address=Account.create().address, min_payout=5)

    done = deploy.deploy(
        ChainClient(anvil.url),
        chain_id=31337,
        deployer=LocalKeySigner(key),
        hot_wallet=LocalKeySigner(key),
        batcher=gone,
        assets=[euro],
        mint=10_000,
    )

    assert done.batcher_address != gone
    [asset] = done.assets
    assert asset.address != euro.address
    assert (asset.symbol, asset.decimals, asset.min_payout) == ("EURC", 2, 5)
    assert json.loads(done.settings()["PAYOUTS_ASSETS"]) == [
        {"symbol": "EURC", "decimals": 2, "address": asset.address, "min_payout": 5}
    ]


def test_a_batcher_address_holding_another_contract_is_refused(
    anvil: devstack.Anvil, deployment: devstack.DevDeployment
) -> None:
    key = SecretStr(devstack.DEV_KEYS[2])
    with pytest.raises(InvalidInput, match="another contract than the PayoutBatcher"):
        deploy.deploy(
            ChainClient(anvil.url),
            chain_id=31337,
            deployer=LocalKeySigner(key),
            hot_wallet=LocalKeySigner(key),
            batcher=deployment.token_address,
            assets=[],
            mint=1,
        )
