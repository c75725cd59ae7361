"""Deploying the PayoutBatcher and the PayoutClaims escrow and setting up the hot wallet
(``payouts chain deploy``).

What is on chain decides what is sent, so a second run sends nothing:
- the batcher the settings name is kept when its code is the compiled PayoutBatcher's (it has
  no constructor and no immutables, so the code matches byte for byte); without one, it is
  deployed; code of another contract, or none on a chain that is not a dev chain, is refused;
- the escrow likewise, except that its code carries its immutables (owner, chain id, domain
  separator): it is kept when its code is the compiled PayoutClaims' apart from those words.
  A new one is owned by the hot wallet (it rotates the signer through its nonce lane) and pays
  the claim signer's vouchers. Nothing is sent to
  it here: tokens reach it by the ledger's top-ups (``payouts.claims.topups``), so the ledger's
  escrow account and the escrow's balance on chain stay equal;
- on a dev chain (anvil's chain id) a configured token without code (the chain was reset) is
  deployed again as the test token, the test USDC where no token is configured, and minted to
  the hot wallet, which gets gas money from the node (``anvil_setBalance``) if it has little;
- the hot wallet approves the batcher for each token where its allowance is not already high.
A node whose chain id is not the settings' is refused before anything is sent. Transactions
of a round go out together on consecutive nonces and are awaited together; a call to a
contract deployed in the same run waits for the next round, as its gas can only be
estimated once its code is on chain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from config.settings import AssetConfig
from payouts.chain.artifacts import load_artifact
from payouts.chain.client import ChainClient
from payouts.chain.codec import allowance_calldata, approve_calldata, balance_of_calldata
from payouts.chain.fees import Fees, fees_for
from payouts.chain.signer import Signer
from payouts.chain.vouchers import claims_constructor_args
from payouts.errors import InvalidInput, PermanentChainError, TransientChainError
from payouts.runtime import Runtime

# anvil's (and hardhat's) chain id: a chain anyone may mint on and reset at will.
DEV_CHAIN_IDS = frozenset({31337})
MAX_UINT256 = 2**256 - 1
# An allowance above this is left alone: tokens that spend even an unlimited approval down
# stay far above it for the life of a hot wallet.
ENOUGH_ALLOWANCE = 2**255
DEV_GAS_MONEY = 100 * 10**18
MIN_GAS_MONEY = 10**18
DEV_MINT = 10**15
DEV_TOKEN = AssetConfig(symbol="USDC", decimals=6, min_payout=10_000, rounding_unit=100)
# Headroom over the node's estimate, as the submitter leaves (gas_limit_headroom_percent).
GAS_HEADROOM_PERCENT = 20
RECEIPT_TIMEOUT_SECONDS = 120.0
MINT = keccak(text="mint(address,uint256)")[:4]


@dataclass(frozen=True)
class Deployment:
    """Where things are, and what this run changed on chain (nothing, run a second time)."""

    chain_id: int
    dev: bool
    batcher_address: str
    claims_address: str
    hot_wallet: str
    assets: tuple[AssetConfig, ...]
    done: tuple[str, ...]

    def settings(self) -> dict[str, str]:
        """The settings to run with, by environment variable."""
        assets = [a.model_dump(mode="json", exclude_unset=True) for a in self.assets]
        return {
            "PAYOUTS_BATCHER_ADDRESS": self.batcher_address,
            "PAYOUTS_CLAIMS_ADDRESS": self.claims_address,
            "PAYOUTS_ASSETS": json.dumps(assets),
        }


def chain_deploy(rt: Runtime, *, mint: int = DEV_MINT) -> Deployment:
    """The hot wallet (PAYOUTS_SIGNER_KEY) deploys what the chain lacks and approves the
    batcher; the settings' batcher and assets are what it looks for first."""
    settings = rt.settings
    return deploy(
        rt.chain,
        chain_id=settings.chain_id,
        deployer=rt.signer,
        hot_wallet=rt.signer,
        batcher=settings.batcher_address,
        claims=settings.claims_address,
        # The key that signs vouchers (the hot wallet's unless PAYOUTS_CLAIMS_SIGNER_KEY):
        # an escrow paying another signer's would refuse every voucher the ledger issues.
        claim_signer=rt.claim_signer.address,
        assets=settings.assets,
        mint=mint,
        max_fee_per_gas=settings.max_fee_per_gas,
    )


def deploy(
    chain: ChainClient,
    *,
    chain_id: int,
    deployer: Signer,
    hot_wallet: Signer,
    batcher: str | None,
    assets: Sequence[AssetConfig],
    mint: int,
    claims: str | None = None,
    claim_signer: str | None = None,
    max_fee_per_gas: int = MAX_UINT256,
) -> Deployment:
    """Make the chain hold a batcher, an escrow and the tokens, with the hot wallet's
    approvals. A new escrow pays ``claim_signer``'s vouchers (unset: the hot wallet's)."""
    node_chain_id = chain.chain_id()
    if node_chain_id != chain_id:
        raise InvalidInput(
            f"the node at {chain.rpc_url} is chain {node_chain_id}, the settings say {chain_id}"
            " (PAYOUTS_CHAIN_ID): nothing deployed",
            field="chain_id",
            code="chain_id_mismatch",
        )
    dev = chain_id in DEV_CHAIN_IDS
    sender = _Sender(chain, chain_id, max_fee_per_gas)
    if dev:
        _gas_money(chain, sender, {deployer.address, hot_wallet.address})
    keep_batcher = _batcher_deployed(chain, batcher, dev=dev, chain_id=chain_id)
    keep_claims = _claims_deployed(chain, claims, dev=dev, chain_id=chain_id)
    tokens = _tokens(chain, assets, dev=dev, chain_id=chain_id)
    new_tokens = [a for a, missing in tokens if missing]

    escrow_args = None
    if not keep_claims:
        # Owned by the hot wallet: a rotation of the signer then takes its one nonce lane.
        escrow_args = claims_constructor_args(
            hot_wallet.address, claim_signer or hot_wallet.address
        )
    created = _deploy_missing(
        sender, deployer, deploy_batcher=not keep_batcher, tokens=new_tokens, claims=escrow_args
    )
    batcher_address = (
        to_checksum_address(batcher or "") if keep_batcher else created["PayoutBatcher"]
    )
    claims_address = to_checksum_address(claims or "") if keep_claims else created["PayoutClaims"]
    addresses = {a.symbol: created.get(a.symbol) or a.address or "" for a, _ in tokens}
    minted = {a.symbol: mint for a in new_tokens}
    _mint_and_approve(sender, deployer, hot_wallet, addresses, minted, batcher_address)
    _check_set_up(chain, addresses, minted, hot_wallet.address, batcher_address)
    return Deployment(
        chain_id=chain_id,
        dev=dev,
        batcher_address=batcher_address,
        claims_address=claims_address,
        hot_wallet=to_checksum_address(hot_wallet.address),
        assets=_with_addresses(assets, new_tokens, addresses),
        done=tuple(sender.done),
    )


def deploy_claims(
    chain: ChainClient,
    *,
    deployer: Signer,
    owner: str,
    claim_signer: str,
    max_fee_per_gas: int = MAX_UINT256,
) -> str:
    """A new PayoutClaims escrow, owned by ``owner`` and paying ``claim_signer``'s vouchers;
    its address, whatever the settings name (:func:`deploy` keeps theirs): for tests of escrows
    of their own. Nothing is minted or approved: tokens reach the escrow by plain transfer."""
    sender = _Sender(chain, chain.chain_id(), max_fee_per_gas)
    sender.deploy(deployer, "PayoutClaims", claims_constructor_args(owner, claim_signer))
    return sender.await_round()["PayoutClaims"]


def _deploy_missing(
    sender: _Sender,
    deployer: Signer,
    *,
    deploy_batcher: bool,
    tokens: list[AssetConfig],
    claims: bytes | None = None,
) -> dict[str, str]:
    """Round one: the contracts; their addresses by name ("PayoutBatcher") or token symbol.

    Tokens go first: on a fresh dev chain the first one then lands at the deployer's first
    address (0x5FbDB231...), where the README's settings and the benchmark's seeded ledger
    expect the test USDC."""
    for asset in tokens:
        name = f"{asset.symbol} (test)"
        args = encode(["string", "string", "uint8"], [name, asset.symbol, asset.decimals])
        sender.deploy(deployer, "TestToken", args, asset.symbol)
    if deploy_batcher:
        sender.deploy(deployer, "PayoutBatcher", b"")
    if claims is not None:
        sender.deploy(deployer, "PayoutClaims", claims)
    return sender.await_round()


def _mint_and_approve(
    sender: _Sender,
    deployer: Signer,
    hot_wallet: Signer,
    tokens: dict[str, str],
    minted: dict[str, int],
    batcher: str,
) -> None:
    """Round two, once the contracts' code is on chain: the new tokens minted to the hot
    wallet, and the batcher approved wherever the allowance is not already high."""
    for symbol, amount in minted.items():
        data = MINT + encode(["address", "uint256"], [hot_wallet.address, amount])
        sender.call(deployer, tokens[symbol], data, f"mint {amount} {symbol}")
    for symbol, token in tokens.items():
        if _allowance(sender.chain, token, hot_wallet.address, batcher) < ENOUGH_ALLOWANCE:
            data = bytes.fromhex(approve_calldata(batcher, MAX_UINT256).removeprefix("0x"))
            sender.call(hot_wallet, token, data, f"approve the batcher for {symbol}")
    sender.await_round()


def _with_addresses(
    assets: Sequence[AssetConfig], new_tokens: list[AssetConfig], addresses: dict[str, str]
) -> tuple[AssetConfig, ...]:
    """The settings' assets at their addresses now, and the test USDC where there was none."""
    configured = {a.symbol for a in assets}
    added = [a for a in new_tokens if a.symbol not in configured]
    return tuple(
        a.model_copy(update={"address": addresses[a.symbol]}) if a.address or a in added else a
        for a in [*assets, *added]
    )


def _code(chain: ChainClient, address: str) -> str:
    return str(chain.rpc("eth_getCode", [address, "latest"])).lower()


def _batcher_deployed(chain: ChainClient, address: str | None, *, dev: bool, chain_id: int) -> bool:
    """True where the settings' batcher is on chain; False where one must be deployed."""
    compiled = load_artifact("PayoutBatcher").deployed_bytecode.lower()
    return _kept(chain, address, "PayoutBatcher", compiled.__eq__, dev=dev, chain_id=chain_id)


def _claims_deployed(chain: ChainClient, address: str | None, *, dev: bool, chain_id: int) -> bool:
    """True where the settings' escrow is on chain; False where one must be deployed."""
    return _kept(chain, address, "PayoutClaims", _is_claims_code, dev=dev, chain_id=chain_id)


# The setting naming each contract, and what a new one is called in its hint.
_SETTINGS = {
    "PayoutBatcher": ("batcher_address", "batcher"),
    "PayoutClaims": ("claims_address", "escrow"),
}


def _kept(
    chain: ChainClient,
    address: str | None,
    contract: str,
    matches: Callable[[str], bool],
    *,
    dev: bool,
    chain_id: int,
) -> bool:
    """True where ``address`` holds ``contract``; False where one must be deployed (none
    configured, or a dev chain that was reset); refused where it holds anything else."""
    if not address:
        return False
    code = _code(chain, address)
    if matches(code):
        return True
    if code in ("0x", "") and dev:
        return False
    setting, called = _SETTINGS[contract]
    what = "has no code" if code in ("0x", "") else f"holds another contract than the {contract}"
    raise InvalidInput(
        f"PAYOUTS_{setting.upper()} {address} {what} on chain {chain_id}"
        f" (unset it to deploy a new {called})",
        field=setting,
        code=f"{setting.removesuffix('_address')}_not_found",
    )


def _is_claims_code(code: str) -> bool:
    """The compiled PayoutClaims' runtime code, its immutables aside: the compiler leaves each
    immutable as a PUSH32 of zeros that the constructor fills in, so those 32-byte words are
    the only ones allowed to differ."""
    compiled = bytes.fromhex(load_artifact("PayoutClaims").deployed_bytecode.removeprefix("0x"))
    deployed = bytes.fromhex(code.removeprefix("0x"))
    if len(deployed) != len(compiled):
        return False
    masked = bytearray(deployed)
    for start in _immutable_slots(compiled):
        masked[start : start + 32] = bytes(32)
    return bytes(masked) == compiled


def _immutable_slots(code: bytes) -> list[int]:
    """Where the PUSH32s of zeros put their data, walking opcodes so push data is skipped (a
    zero PUSH32 is no literal the optimizer emits: cancun has PUSH0)."""
    slots, i = [], 0
    while i < len(code):
        op = code[i]
        width = op - 0x5F if 0x60 <= op <= 0x7F else 0
        if width == 32 and code[i + 1 : i + 33] == bytes(32):
            slots.append(i + 1)
        i += 1 + width
    return slots


def _tokens(
    chain: ChainClient, assets: Sequence[AssetConfig], *, dev: bool, chain_id: int
) -> list[tuple[AssetConfig, bool]]:
    """Each token with whether it must be deployed: on a dev chain, one without code, or the
    test USDC where none is configured. Elsewhere a token without code is a wrong address."""
    tokens = [(a, _code(chain, a.address) in ("0x", "")) for a in assets if a.address]
    if dev:
        return tokens or [(DEV_TOKEN, True)]
    for asset, missing in tokens:
        if missing:
            raise InvalidInput(
                f"token {asset.symbol} at {asset.address} has no code on chain {chain_id}",
                field="assets",
                code="token_not_found",
            )
    return tokens


def _gas_money(chain: ChainClient, sender: _Sender, addresses: set[str]) -> None:
    for address in sorted(addresses):
        if chain.balance(address) < MIN_GAS_MONEY:
            chain.rpc("anvil_setBalance", [address, hex(DEV_GAS_MONEY)])
            sender.done.append(f"gave {address} {DEV_GAS_MONEY // 10**18} ether for gas")


def _allowance(chain: ChainClient, token: str, owner: str, spender: str) -> int:
    return int(chain.call(token, allowance_calldata(owner, spender)), 16)


def _check_set_up(
    chain: ChainClient,
    tokens: dict[str, str],
    minted: dict[str, int],
    hot_wallet: str,
    batcher: str,
) -> None:
    """Read back what the receipts said: an approval or a mint a token ignored is an error."""
    for symbol, token in tokens.items():
        if _allowance(chain, token, hot_wallet, batcher) < ENOUGH_ALLOWANCE:
            raise PermanentChainError(f"approve the batcher for {symbol}: allowance not set")
        balance = int(chain.call(token, balance_of_calldata(hot_wallet)), 16)
        if balance < minted.get(symbol, 0):
            raise PermanentChainError(f"mint {symbol}: the hot wallet holds {balance}")


@dataclass
class _Sent:
    step: str
    tx_hash: str
    key: str | None


@dataclass
class _Sender:
    """Signs and sends one round of transactions on consecutive nonces, then awaits them."""

    chain: ChainClient
    chain_id: int
    max_fee_per_gas: int
    done: list[str] = field(default_factory=list)
    _round: list[_Sent] = field(default_factory=list)
    _nonces: dict[str, int] = field(default_factory=dict)
    _fees: Fees | None = None

    def deploy(self, signer: Signer, contract: str, args: bytes, key: str | None = None) -> None:
        data = bytes.fromhex(load_artifact(contract).bytecode.removeprefix("0x")) + args
        self._send(signer, None, data, f"deploy {contract}", key or contract)

    def call(self, signer: Signer, to: str, data: bytes, step: str) -> None:
        self._send(signer, to, data, step, None)

    def _send(
        self, signer: Signer, to: str | None, data: bytes, step: str, key: str | None
    ) -> None:
        request: dict[str, Any] = {"from": signer.address, "data": "0x" + data.hex()}
        if to is not None:
            request["to"] = to
        estimate = int(self.chain.rpc("eth_estimateGas", [request]), 16)
        fees = self._round_fees()
        if signer.address not in self._nonces:
            self._nonces[signer.address] = self.chain.nonce(signer.address)
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": self._nonces[signer.address],
            "gas": estimate * (100 + GAS_HEADROOM_PERCENT) // 100,
            "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
            "value": 0,
            "data": data,
        }
        if to is not None:
            tx["to"] = to
        signed = signer.sign(tx)
        self.chain.send_raw(signed.raw)
        self._nonces[signer.address] += 1
        self._round.append(_Sent(step, signed.tx_hash, key))

    def _round_fees(self) -> Fees:
        if self._fees is None:
            block = self.chain.block("latest")
            base_fee = block.base_fee_per_gas if block else 0
            self._fees = fees_for(base_fee, self.chain.max_priority_fee(), self.max_fee_per_gas)
        return self._fees

    def await_round(self) -> dict[str, str]:
        """Wait for every receipt of the round; the addresses created, by key."""
        created: dict[str, str] = {}
        for sent in self._round:
            receipt = self._receipt(sent)
            if int(receipt["status"], 16) != 1:
                raise PermanentChainError(f"{sent.step}: transaction {sent.tx_hash} reverted")
            if sent.key is not None:
                address = to_checksum_address(receipt["contractAddress"])
                created[sent.key] = address
                self.done.append(f"{sent.step} at {address} ({sent.tx_hash})")
            else:
                self.done.append(f"{sent.step} ({sent.tx_hash})")
        self._round, self._nonces, self._fees = [], {}, None
        return created

    def _receipt(self, sent: _Sent) -> dict[str, Any]:
        waiting = Retrying(
            retry=retry_if_result(lambda receipt: receipt is None),
            stop=stop_after_delay(RECEIPT_TIMEOUT_SECONDS),
            wait=wait_fixed(0.1),
        )
        try:
            receipt = waiting(self.chain.receipt, sent.tx_hash)
        except RetryError:
            raise TransientChainError(
                f"{sent.step}: transaction {sent.tx_hash} not mined within"
                f" {RECEIPT_TIMEOUT_SECONDS:.0f}s"
            ) from None
        assert receipt is not None
        return receipt
