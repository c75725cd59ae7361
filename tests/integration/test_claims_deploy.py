"""The PayoutClaims escrow in ``payouts chain deploy`` on a real anvil: deployed beside the
batcher, kept on a second run although its code carries immutables, refused at an address
holding something else."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from pydantic import SecretStr

import devstack
from config.settings import AssetConfig
from payouts.chain.client import ChainClient
from payouts.chain.signer import LocalKeySigner
from payouts.errors import InvalidInput
from payouts.ops import deploy

DEPLOYER = LocalKeySigner(SecretStr(devstack.DEV_KEYS[0]))
HOT_WALLET = LocalKeySigner(SecretStr(devstack.DEV_KEYS[1]))


def _read_address(chain: ChainClient, contract: str, signature: str) -> str:
    word = chain.call(contract, "0x" + keccak(text=signature)[:4].hex())
    return to_checksum_address("0x" + word[-40:])


def _deploy(
    chain: ChainClient,
    *,
    batcher: str | None = None,
    claims: str | None = None,
    claim_signer: str | None = None,
    assets: list[AssetConfig] | None = None,
) -> deploy.Deployment:
    return deploy.deploy(
        chain,
        chain_id=31337,
        deployer=DEPLOYER,
        hot_wallet=HOT_WALLET,
        batcher=batcher,
        claims=claims,
        claim_signer=claim_signer,
        assets=assets or [],
        mint=10**12,
    )


def test_the_escrow_is_deployed_owned_by_the_hot_wallet_and_kept_on_a_second_run(
    anvil: devstack.Anvil,
) -> None:
    chain = ChainClient(anvil.url)
    claim_signer = Account.create().address

    first = _deploy(chain, claim_signer=claim_signer)

    assert any(step.startswith("deploy PayoutClaims") for step in first.done)
    assert first.settings()["PAYOUTS_CLAIMS_ADDRESS"] == first.claims_address
    assert _read_address(chain, first.claims_address, "owner()") == HOT_WALLET.address
    assert _read_address(chain, first.claims_address, "signer()") == claim_signer
    nonce = chain.nonce(DEPLOYER.address)

    again = _deploy(
        chain,
        batcher=first.batcher_address,
        claims=first.claims_address,
        assets=list(first.assets),
    )

    assert again.done == ()
    assert again.claims_address == first.claims_address
    assert chain.nonce(DEPLOYER.address) == nonce


def test_without_a_claim_signer_the_hot_wallet_signs_vouchers(
    anvil: devstack.Anvil, deployment: devstack.DevDeployment
) -> None:
    chain = ChainClient(anvil.url)
    assert _read_address(chain, deployment.claims_address, "signer()") == HOT_WALLET.address


def test_an_escrow_of_another_owner_is_kept_as_well(
    anvil: devstack.Anvil, deployment: devstack.DevDeployment
) -> None:
    """Its immutables differ from any escrow this deployer would make; its code is the same."""
    chain = ChainClient(anvil.url)
    other = deploy.deploy_claims(
        chain,
        deployer=LocalKeySigner(SecretStr(devstack.DEV_KEYS[2])),
        owner=Account.create().address,
        claim_signer=Account.create().address,
    )

    kept = _deploy(
        chain, batcher=deployment.batcher_address, claims=other, assets=[_token(deployment)]
    )

    assert kept.claims_address == to_checksum_address(other)
    assert kept.done == ()


def test_a_reset_dev_chain_gets_a_new_escrow(anvil: devstack.Anvil) -> None:
    gone = Account.create().address

    done = _deploy(ChainClient(anvil.url), claims=gone)

    assert done.claims_address != gone
    assert any(step.startswith("deploy PayoutClaims") for step in done.done)


def test_a_claims_address_holding_another_contract_is_refused(
    anvil: devstack.Anvil, deployment: devstack.DevDeployment
) -> None:
    chain = ChainClient(anvil.url)
    nonce = chain.nonce(DEPLOYER.address)

    with pytest.raises(InvalidInput, match="another contract than the PayoutClaims"):
        _deploy(chain, claims=deployment.batcher_address)

    assert chain.nonce(DEPLOYER.address) == nonce


def _token(deployment: devstack.DevDeployment) -> AssetConfig:
    return AssetConfig(symbol="USDC", decimals=6, address=deployment.token_address)
