"""The dev chain's keys, and fresh dev contracts (test token and PayoutBatcher) per call."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from devstack.spawning import DevStackError
from payouts.chain.client import ChainClient
from payouts.chain.signer import LocalKeySigner
from payouts.errors import PayoutsError
from payouts.ops.deploy import MAX_UINT256 as MAX_UINT256  # re-exported for the tests
from payouts.ops.deploy import deploy

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


@dataclass(frozen=True)
class DevDeployment:
    """Where :func:`deploy_dev_contracts` put things (EIP-55 checksummed addresses)."""

    token_address: str
    batcher_address: str
    claims_address: str
    hot_wallet_address: str


def deploy_dev_contracts(
    rpc_url: str, deployer_key: str, hot_wallet_key: str, mint: int
) -> DevDeployment:
    """Deploy a new 6-decimal test USDC, PayoutBatcher and PayoutClaims escrow (the hot wallet
    signs its vouchers), fund the hot wallet, approve.

    The deployment of ``payouts chain deploy`` (``payouts.ops.deploy``), told of nothing
    deployed before, so each call (each test) gets contracts of its own. After it returns, the
    hot wallet holds ``mint`` base units of the token, has approved the batcher for
    ``type(uint256).max`` (which TestToken never decrements) and has ether for gas. For dev
    chains only: TestToken lets anyone mint. Any failure raises :class:`DevStackError`.
    """
    chain = ChainClient(rpc_url, timeout=30)
    try:
        deployment = deploy(
            chain,
            chain_id=chain.chain_id(),
            deployer=LocalKeySigner(SecretStr(deployer_key)),
            hot_wallet=LocalKeySigner(SecretStr(hot_wallet_key)),
            batcher=None,
            assets=[],
            mint=mint,
        )
    except PayoutsError as exc:
        raise DevStackError(f"dev contracts: {exc}") from exc
    if not deployment.dev:
        raise DevStackError(f"chain {deployment.chain_id} at {rpc_url} is not a dev chain")
    [token] = deployment.assets
    return DevDeployment(
        token_address=str(token.address),
        batcher_address=deployment.batcher_address,
        claims_address=deployment.claims_address,
        hot_wallet_address=deployment.hot_wallet,
    )
