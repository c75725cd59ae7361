"""PayoutClaims and its vouchers against a real anvil (no mocks).

Each test gets a fresh test token (through the one deployment path) and escrows of its own, so
no test sees another's claims. Claims are sent by a relayer that is neither the recipient nor
the platform, since anyone may submit a voucher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from pydantic import SecretStr
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError
from web3.types import TxParams, TxReceipt

import devstack
from payouts.chain.artifacts import load_artifact
from payouts.chain.client import ChainClient
from payouts.chain.signer import LocalKeySigner
from payouts.chain.vouchers import SignedVoucher, Voucher, set_signer_calldata, sign_voucher
from payouts.ops.deploy import deploy_claims
from tests.integration.test_contracts import deploy_runtime

pytestmark = pytest.mark.chain

OWNER_KEY = devstack.DEV_KEYS[0]
OWNER, HOT_WALLET, RELAYER = (to_checksum_address(a) for a in devstack.DEV_ADDRESSES)
ONE_USDC = 10**6
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# Enough for any refused claim to run to its revert when mined without an estimate.
REFUSED_GAS = 200_000


@dataclass(frozen=True)
class Escrow:
    w3: Web3
    claims: Contract
    token: Contract
    signer: LocalKeySigner

    @property
    def chain_id(self) -> int:
        return self.w3.eth.chain_id

    def voucher(self, recipient: str, cumulative: int, **changes: Any) -> Voucher:
        values: dict[str, Any] = {
            "chain_id": self.chain_id,
            "contract": self.claims.address,
            "token": self.token.address,
            "recipient": recipient,
            "cumulative": cumulative,
            **changes,
        }
        return Voucher(**values)

    def signed(self, recipient: str, cumulative: int, **changes: Any) -> SignedVoucher:
        return sign_voucher(self.signer, self.voucher(recipient, cumulative, **changes))

    def balance(self, holder: str) -> int:
        return int(self.token.functions.balanceOf(holder).call())

    def claimed(self, recipient: str) -> int:
        return int(self.claims.functions.claimed(recipient, self.token.address).call())


def new_signer() -> LocalKeySigner:
    return LocalKeySigner(SecretStr("0x" + bytes(Account.create().key).hex()))


def fresh_address() -> ChecksumAddress:
    return to_checksum_address(Account.create().address)


def mined(w3: Web3, tx: TxParams) -> TxReceipt:
    return w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(tx), timeout=30)


def transfer(escrow: Escrow, to: str, amount: int) -> None:
    """The hot wallet tops the escrow up by a plain transfer, as the platform will."""
    tx = escrow.token.functions.transfer(to, amount).build_transaction({"from": HOT_WALLET})
    assert mined(escrow.w3, tx)["status"] == 1


def new_escrow(w3: Web3, signer: LocalKeySigner) -> Contract:
    address = deploy_claims(
        ChainClient(w3.provider.endpoint_uri),  # type: ignore[attr-defined]
        deployer=LocalKeySigner(SecretStr(OWNER_KEY)),
        owner=OWNER,
        claim_signer=signer.address,
    )
    return w3.eth.contract(
        address=to_checksum_address(address), abi=load_artifact("PayoutClaims").abi
    )


@pytest.fixture
def escrow(anvil: devstack.Anvil, deployment: devstack.DevDeployment) -> Escrow:
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    token = w3.eth.contract(
        address=to_checksum_address(deployment.token_address), abi=load_artifact("TestToken").abi
    )
    signer = new_signer()
    escrow = Escrow(w3, new_escrow(w3, signer), token, signer)
    transfer(escrow, escrow.claims.address, 1_000 * ONE_USDC)
    return escrow


def claim_tx(
    escrow: Escrow, signed: SignedVoucher, *, to: str | None = None, gas: int | None = None
) -> TxParams:
    tx: TxParams = {
        "from": RELAYER,
        "to": to_checksum_address(to or escrow.claims.address),
        "data": signed.claim_calldata(),
    }
    if gas is not None:
        tx["gas"] = gas
    return tx


def claim(escrow: Escrow, signed: SignedVoucher) -> TxReceipt:
    """Sent by a relayer with the node's estimate, as a creator's wallet would."""
    receipt = mined(escrow.w3, claim_tx(escrow, signed))
    assert receipt["status"] == 1
    return receipt


def refusal(escrow: Escrow, signed: SignedVoucher) -> str:
    """The revert data of the claim: the call is refused, and mined anyway it pays nothing."""
    with pytest.raises(ContractCustomError) as refused:
        escrow.w3.eth.call(claim_tx(escrow, signed))
    before = escrow.balance(escrow.claims.address)
    receipt = mined(escrow.w3, claim_tx(escrow, signed, gas=REFUSED_GAS))
    assert receipt["status"] == 0
    assert escrow.balance(escrow.claims.address) == before
    return str(refused.value.data)


def error(signature: str, types: Sequence[str], values: Sequence[Any]) -> str:
    return "0x" + (keccak(text=signature)[:4] + encode(list(types), list(values))).hex()


def nothing_to_claim(escrow: Escrow, recipient: str, cumulative: int, claimed: int) -> str:
    return error(
        "NothingToClaim(address,address,uint256,uint256)",
        ["address", "address", "uint256", "uint256"],
        [recipient, escrow.token.address, cumulative, claimed],
    )


def wrong_signer(recovered: str, signer: str) -> str:
    return error("WrongSigner(address,address)", ["address", "address"], [recovered, signer])


def logs(contract: Contract, event: str, receipt: TxReceipt) -> list[dict[str, Any]]:
    """The arguments of each ``event`` that ``contract`` itself logged in ``receipt``."""
    handler = contract.events[event]()
    return [
        dict(handler.process_log(log)["args"])
        for log in receipt["logs"]
        if log["address"] == contract.address
    ]


def claimed_events(escrow: Escrow, receipt: TxReceipt) -> list[dict[str, Any]]:
    return logs(escrow.claims, "Claimed", receipt)


# --------------------------------------------------------------------------------------------


def test_the_contract_hashes_vouchers_as_eth_account_does(escrow: Escrow) -> None:
    typed = escrow.voucher(fresh_address(), ONE_USDC).typed_data()
    # An EIP-712 signable message is 0x19, version 0x01, the domain separator, the struct hash.
    assert (
        escrow.claims.functions.domainSeparator().call()
        == encode_typed_data(full_message=typed).header
    )
    voucher_type = "Voucher(address token,address recipient,uint256 cumulative)"
    assert escrow.claims.functions.VOUCHER_TYPEHASH().call() == keccak(text=voucher_type)
    assert escrow.claims.functions.owner().call() == OWNER
    assert escrow.claims.functions.signer().call() == escrow.signer.address


def test_a_voucher_pays_once_whoever_sends_it(escrow: Escrow) -> None:
    recipient = fresh_address()
    signed = escrow.signed(recipient, 5 * ONE_USDC)
    assert signed.signer() == escrow.signer.address

    receipt = claim(escrow, signed)

    assert escrow.balance(recipient) == 5 * ONE_USDC
    assert escrow.balance(escrow.claims.address) == 995 * ONE_USDC
    assert escrow.claimed(recipient) == 5 * ONE_USDC
    assert claimed_events(escrow, receipt) == [
        {
            "recipient": recipient,
            "token": escrow.token.address,
            "cumulative": 5 * ONE_USDC,
            "paid": 5 * ONE_USDC,
        }
    ]
    assert logs(escrow.token, "Transfer", receipt) == [
        {
            "from": escrow.claims.address,
            "to": recipient,
            "value": 5 * ONE_USDC,
        }
    ]

    # The same voucher again (a relayer's retry, a replay): refused, nothing moves.
    expected = nothing_to_claim(escrow, recipient, 5 * ONE_USDC, 5 * ONE_USDC)
    assert refusal(escrow, signed) == expected
    assert escrow.balance(recipient) == 5 * ONE_USDC
    assert escrow.claimed(recipient) == 5 * ONE_USDC


def test_an_older_voucher_pays_nothing_and_a_newer_one_pays_the_difference(
    escrow: Escrow,
) -> None:
    recipient = fresh_address()
    older, newer, newest = (escrow.signed(recipient, c * ONE_USDC) for c in (3, 7, 10))

    claim(escrow, newer)
    assert escrow.balance(recipient) == 7 * ONE_USDC

    assert refusal(escrow, older) == nothing_to_claim(escrow, recipient, 3 * ONE_USDC, 7 * ONE_USDC)
    receipt = claim(escrow, newest)

    [event] = claimed_events(escrow, receipt)
    assert (event["cumulative"], event["paid"]) == (10 * ONE_USDC, 3 * ONE_USDC)
    assert escrow.balance(recipient) == 10 * ONE_USDC
    assert escrow.claimed(recipient) == 10 * ONE_USDC
    assert escrow.balance(escrow.claims.address) == 990 * ONE_USDC


def test_forged_wrong_chain_and_wrong_contract_vouchers_are_refused(escrow: Escrow) -> None:
    recipient = fresh_address()
    forger = new_signer()
    forged = sign_voucher(forger, escrow.voucher(recipient, 5 * ONE_USDC))
    other_chain = escrow.signed(recipient, 5 * ONE_USDC, chain_id=escrow.chain_id + 1)
    # A second escrow with the same signer: its vouchers are good there, and only there.
    twin = new_escrow(escrow.w3, escrow.signer)
    transfer(escrow, twin.address, 5 * ONE_USDC)
    for_twin = escrow.signed(recipient, 5 * ONE_USDC, contract=twin.address)

    signer = escrow.signer.address
    assert refusal(escrow, forged) == wrong_signer(forger.address, signer)
    for signed in (other_chain, for_twin):
        assert signed.signer() == signer  # the signer's own signature, over another domain,
        here = SignedVoucher(escrow.voucher(recipient, 5 * ONE_USDC), signed.signature).signer()
        assert here != signer  # which over this escrow's domain recovers someone else
        assert refusal(escrow, signed) == wrong_signer(here, signer)
    # A good voucher with its recipient swapped by whoever submits it.
    good = escrow.signed(recipient, 5 * ONE_USDC)
    thief = fresh_address()
    stolen = SignedVoucher(escrow.voucher(thief, 5 * ONE_USDC), good.signature)
    assert refusal(escrow, stolen) == wrong_signer(stolen.signer(), signer)
    assert escrow.balance(thief) == 0
    assert escrow.claimed(recipient) == 0
    assert escrow.balance(escrow.claims.address) == 1_000 * ONE_USDC

    twin_receipt = mined(escrow.w3, claim_tx(escrow, for_twin, to=twin.address))
    assert twin_receipt["status"] == 1
    assert escrow.balance(recipient) == 5 * ONE_USDC


def test_malformed_signatures_are_refused(escrow: Escrow) -> None:
    recipient = fresh_address()
    good = escrow.signed(recipient, 2 * ONE_USDC)
    r, s, v = good.signature[:32], int.from_bytes(good.signature[32:64], "big"), good.signature[64]
    assert v in (27, 28)
    assert s <= SECP256K1_N // 2  # eth_account signs low-s, as the contract requires
    # The malleable twin (n - s, other v) recovers the same signer: refused for its high s.
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    assert SignedVoucher(good.voucher, twin).signer() == escrow.signer.address
    malformed = [
        twin,
        good.signature[:64] + bytes([v - 27]),  # v as 0/1
        good.signature[:64],  # 64 bytes
        good.signature + b"\x00",  # 66 bytes
        r + bytes(32) + bytes([v]),  # s = 0: ecrecover gives address(0)
    ]
    invalid = error("InvalidSignature()", [], [])
    for signature in malformed:
        assert refusal(escrow, SignedVoucher(good.voucher, signature)) == invalid
    assert escrow.claimed(recipient) == 0
    claim(escrow, good)
    assert escrow.balance(recipient) == 2 * ONE_USDC


def test_signer_rotation_stops_old_vouchers_and_fresh_ones_pay_only_the_difference(
    escrow: Escrow,
) -> None:
    recipient = fresh_address()
    old = escrow.signer
    claim(escrow, escrow.signed(recipient, 4 * ONE_USDC))
    unclaimed_old_voucher = escrow.signed(recipient, 9 * ONE_USDC)
    new = new_signer()

    def rotate(sender: ChecksumAddress) -> TxParams:
        return {
            "from": sender,
            "to": escrow.claims.address,
            "data": set_signer_calldata(new.address),
        }

    with pytest.raises(ContractCustomError) as refused:
        escrow.w3.eth.call(rotate(RELAYER))
    assert refused.value.data == error("NotOwner(address)", ["address"], [RELAYER])
    receipt = mined(escrow.w3, rotate(OWNER))
    assert receipt["status"] == 1
    assert logs(escrow.claims, "SignerChanged", receipt) == [
        {"previous": old.address, "next": new.address}
    ]
    assert escrow.claims.functions.signer().call() == new.address

    assert refusal(escrow, unclaimed_old_voucher) == wrong_signer(old.address, new.address)
    rotated = Escrow(escrow.w3, escrow.claims, escrow.token, new)
    assert refusal(rotated, rotated.signed(recipient, 4 * ONE_USDC)) == nothing_to_claim(
        escrow, recipient, 4 * ONE_USDC, 4 * ONE_USDC
    )
    receipt = claim(rotated, rotated.signed(recipient, 9 * ONE_USDC))
    [event] = claimed_events(escrow, receipt)
    assert (event["cumulative"], event["paid"]) == (9 * ONE_USDC, 5 * ONE_USDC)
    assert escrow.balance(recipient) == 9 * ONE_USDC


def test_an_escrow_short_of_funds_pays_nothing_until_topped_up(escrow: Escrow) -> None:
    short = Escrow(escrow.w3, new_escrow(escrow.w3, escrow.signer), escrow.token, escrow.signer)
    transfer(short, short.claims.address, 3 * ONE_USDC)
    recipient = fresh_address()
    signed = short.signed(recipient, 5 * ONE_USDC)

    assert refusal(short, signed) == error(
        "InsufficientEscrow(address,uint256,uint256)",
        ["address", "uint256", "uint256"],
        [short.token.address, 3 * ONE_USDC, 5 * ONE_USDC],
    )
    assert short.balance(recipient) == 0
    assert short.claimed(recipient) == 0  # the record is undone with the transfer

    transfer(short, short.claims.address, 2 * ONE_USDC)
    claim(short, signed)
    assert short.balance(recipient) == 5 * ONE_USDC
    assert short.balance(short.claims.address) == 0


def test_a_token_that_refuses_the_recipient_pays_nothing_and_records_nothing(
    escrow: Escrow,
) -> None:
    recipient = fresh_address()
    block = escrow.token.functions.setBlocked(recipient, True).build_transaction({"from": OWNER})
    assert mined(escrow.w3, block)["status"] == 1
    signed = escrow.signed(recipient, ONE_USDC)
    assert refusal(escrow, signed) == error(
        "TransferFailed(address,address,uint256)",
        ["address", "address", "uint256"],
        [escrow.token.address, recipient, ONE_USDC],
    )
    assert escrow.claimed(recipient) == 0


# Gas floor of a returning claimer, beyond calldata (EIP-2929/2200 prices):
INTRINSIC = 21_000
RETURNING_FLOOR = (
    INTRINSIC
    + 3_000 + 100  # ecrecover, and its (always warm) precompile address
    + 2_100 + 2_900  # claimed[recipient][token]: cold read, nonzero -> nonzero write
    + 2_100  # signer: cold read
    + 2_600  # the token's account, cold
    + 2 * 5_000  # the escrow's and the recipient's balances: cold, nonzero -> nonzero
    + 1_756  # the token's Transfer log: LOG3, 32 bytes of data
    + 2_012  # Claimed: LOG3, 64 bytes of data
)  # fmt: skip
# What a first claim adds: its claimed slot goes zero -> nonzero (+17,100) and, for a recipient
# holding none of the token yet, its balance too (+17,100).
ZERO_TO_NONZERO_EXTRA = 17_100
# Above the floor: the token's own transfer() logic (~1,070 of TestToken's) and the escrow's
# (~2,150: Solidity's dispatch and ABI decoding, four hashes, the calls' memory). Measured 3,233.
OVER_FLOOR = 3_500
# The published per-claim anchors (airdrop-gas-benchmarks: Merkle 51,217, signature 53,376) are
# forge gas reports: the call's execution only, without the 21,000 intrinsic gas or calldata, for
# a first claim. A returning claimer here pays less than that in all (measured 53,209 with 2,408
# of calldata, 29,801 of execution), and a fresh recipient's first claim, which also writes two
# slots from zero, stays within the two writes' 34,200 of it.
PUBLISHED_SIGNATURE_CLAIM = 53_376
RETURNING_EXECUTION_CEILING = 31_000


def calldata_gas(data: str) -> int:
    raw = bytes.fromhex(data.removeprefix("0x"))
    return sum(16 if byte else 4 for byte in raw)


def test_gas_per_claim(escrow: Escrow) -> None:
    holder, newcomer = fresh_address(), fresh_address()
    transfer(escrow, holder, 1)  # holds the token already (a pushed payout, say)
    runs = [  # (what, recipient, cumulative, slots written from zero)
        ("first claim, new holder", newcomer, 1_234_567, 2),
        ("first claim, existing holder", holder, 1_234_567, 1),
        ("returning claimer", newcomer, 2_469_134, 0),
        ("returning claimer", holder, 2_469_134, 0),
    ]
    print(
        f"\n{'claim':<29} {'gasUsed':>8} {'calldata':>8} {'execution':>9} {'floor':>7}"
        f" {'over floor':>10}"
    )
    for what, recipient, cumulative, from_zero in runs:
        signed = escrow.signed(recipient, cumulative)
        gas = claim(escrow, signed)["gasUsed"]
        calldata = calldata_gas(signed.claim_calldata())
        execution = gas - INTRINSIC - calldata
        floor = RETURNING_FLOOR + calldata + from_zero * ZERO_TO_NONZERO_EXTRA
        print(f"{what:<29} {gas:>8,} {calldata:>8,} {execution:>9,} {floor:>7,} {gas - floor:>10,}")
        assert floor <= gas <= floor + OVER_FLOOR, (what, gas, floor)
        if from_zero == 0:
            assert gas <= PUBLISHED_SIGNATURE_CLAIM, (what, gas)
            assert execution <= RETURNING_EXECUTION_CEILING, (what, execution)
        else:
            assert execution <= PUBLISHED_SIGNATURE_CLAIM + from_zero * ZERO_TO_NONZERO_EXTRA


def test_token_return_conventions(escrow: Escrow) -> None:
    """``true`` or (from a contract) nothing is a transfer; ``false`` or no code is none."""
    recipient = fresh_address()
    silent = deploy_runtime(escrow.w3, OWNER, bytes([0x00]))  # STOP: USDT-style, no return data
    falsy = deploy_runtime(escrow.w3, OWNER, bytes([0x60, 0x20, 0x60, 0x00, 0xF3]))  # 32 zeros
    nothing = fresh_address()  # no code at all

    def claimed_of(token: str) -> int:
        return int(escrow.claims.functions.claimed(recipient, token).call())

    receipt = claim(escrow, escrow.signed(recipient, ONE_USDC, token=silent))
    assert claimed_events(escrow, receipt) == [
        {"recipient": recipient, "token": silent, "cumulative": ONE_USDC, "paid": ONE_USDC}
    ]
    assert claimed_of(silent) == ONE_USDC

    # A token answering false reports a zero balance too, so the refusal names the escrow short.
    assert refusal(escrow, escrow.signed(recipient, ONE_USDC, token=falsy)) == error(
        "InsufficientEscrow(address,uint256,uint256)",
        ["address", "uint256", "uint256"],
        [falsy, 0, ONE_USDC],
    )
    assert refusal(escrow, escrow.signed(recipient, ONE_USDC, token=nothing)) == error(
        "NotAContract(address)", ["address"], [nothing]
    )
    assert (claimed_of(falsy), claimed_of(nothing)) == (0, 0)
