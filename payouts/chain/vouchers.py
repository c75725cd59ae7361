"""Claim vouchers for the PayoutClaims escrow: EIP-712 typed data, its signature, its calldata.

A voucher says "``recipient`` has been owed ``cumulative`` base units of ``token`` in all", for
one escrow contract on one chain (both are in the EIP-712 domain, so a voucher is worthless
anywhere else). The escrow pays the difference between a voucher's cumulative and what the
recipient already claimed, so any voucher may be handed out, re-derived or replayed freely: the
newest pays what is left, every other pays nothing. What is owed is the ledger's business; this
module only encodes and signs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_typing import HexStr
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from payouts.chain.signer import TypedDataSigner

DOMAIN_NAME = "PayoutClaims"
DOMAIN_VERSION = "1"
VOUCHER_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Voucher": [
        {"name": "token", "type": "address"},
        {"name": "recipient", "type": "address"},
        {"name": "cumulative", "type": "uint256"},
    ],
}
CLAIM = keccak(text="claim(address,address,uint256,bytes)")[:4]
SET_SIGNER = keccak(text="setSigner(address)")[:4]
MAX_UINT256 = 2**256 - 1


@dataclass(frozen=True)
class Voucher:
    """Everything ``recipient`` is owed in ``token`` so far, payable by one escrow on one chain."""

    chain_id: int
    contract: str
    token: str
    recipient: str
    cumulative: int

    def __post_init__(self) -> None:
        if not 0 < self.cumulative <= MAX_UINT256:
            raise ValueError(f"a voucher's cumulative must be in 1..2**256-1: {self.cumulative}")

    def typed_data(self) -> dict[str, Any]:
        """The EIP-712 message (``full_message``) that the signer signs."""
        return {
            "types": VOUCHER_TYPES,
            "primaryType": "Voucher",
            "domain": {
                "name": DOMAIN_NAME,
                "version": DOMAIN_VERSION,
                "chainId": self.chain_id,
                "verifyingContract": to_checksum_address(self.contract),
            },
            "message": {
                "token": to_checksum_address(self.token),
                "recipient": to_checksum_address(self.recipient),
                "cumulative": self.cumulative,
            },
        }


@dataclass(frozen=True)
class SignedVoucher:
    voucher: Voucher
    signature: bytes

    def signer(self) -> str:
        """Who signed it (checksummed): what the escrow compares with its current signer."""
        signable = encode_typed_data(full_message=self.voucher.typed_data())
        return str(Account.recover_message(signable, signature=self.signature))

    def claim_calldata(self) -> HexStr:
        """``claim(token, recipient, cumulative, signature)``: anyone may send it."""
        v = self.voucher
        args = encode(
            ["address", "address", "uint256", "bytes"],
            [v.token, v.recipient, v.cumulative, self.signature],
        )
        return HexStr("0x" + (CLAIM + args).hex())


def sign_voucher(signer: TypedDataSigner, voucher: Voucher) -> SignedVoucher:
    return SignedVoucher(voucher, signer.sign_typed_data(voucher.typed_data()))


def claims_constructor_args(owner: str, signer: str) -> bytes:
    """``PayoutClaims(owner, signer)``: the owner may only rotate the signer."""
    return encode(["address", "address"], [owner, signer])


def set_signer_calldata(signer: str) -> HexStr:
    """``setSigner(signer)`` (the owner's): every voucher of the previous signer stops paying."""
    return HexStr("0x" + (SET_SIGNER + encode(["address"], [signer])).hex())
