"""Deploying the dev contracts (test token and PayoutBatcher) and funding the hot wallet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devstack.spawning import DevStackError

if TYPE_CHECKING:
    from hexbytes import HexBytes
    from web3 import Web3

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
