"""The PayoutBatcher's calldata and logs, encoded and decoded with eth_abi on raw hex.

Web3's contract event helpers are an order of magnitude slower than decoding raw logs, and
the reconciler reads logs for every payout, so this module works on plain strings and ints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from payouts.money import MAX_PACKED_AMOUNT


def _topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


PAY_ERC20 = _selector("payERC20(uint256,address,bytes32[])")
ERC20_TRANSFER = _selector("transfer(address,uint256)")
ERC20_BALANCE_OF = _selector("balanceOf(address)")
ERC20_APPROVE = _selector("approve(address,uint256)")
ERC20_ALLOWANCE = _selector("allowance(address,address)")
BATCH_EXECUTED = _topic("BatchExecuted(address,uint256,address,uint256,uint256,uint256)")
TRANSFER_FAILED = _topic("TransferFailed(uint256,uint256,address,uint256)")
TRANSFER = _topic("Transfer(address,address,uint256)")


def address_topic(address: str) -> str:
    return "0x" + "0" * 24 + address.lower().removeprefix("0x")


def pack_payout(recipient: str, amount: int) -> bytes:
    if not 0 < amount <= MAX_PACKED_AMOUNT:
        raise ValueError("amount does not fit the packed payout word")
    return ((amount << 160) | int(recipient, 16)).to_bytes(32, "big")


def pay_erc20_calldata(batch_id: int, token: str, payouts: Sequence[tuple[str, int]]) -> str:
    words = [pack_payout(recipient, amount) for recipient, amount in payouts]
    body = encode(["uint256", "address", "bytes32[]"], [batch_id, token, words])
    return "0x" + (PAY_ERC20 + body).hex()


def balance_of_calldata(holder: str) -> str:
    return "0x" + (ERC20_BALANCE_OF + encode(["address"], [holder])).hex()


def approve_calldata(spender: str, amount: int) -> str:
    return "0x" + (ERC20_APPROVE + encode(["address", "uint256"], [spender, amount])).hex()


def allowance_calldata(owner: str, spender: str) -> str:
    return "0x" + (ERC20_ALLOWANCE + encode(["address", "address"], [owner, spender])).hex()


@dataclass(frozen=True)
class LogRef:
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str


@dataclass(frozen=True)
class BatchExecuted:
    ref: LogRef
    payer: str
    batch_id: int
    token: str
    paid_count: int
    paid_total: int
    failed_count: int


@dataclass(frozen=True)
class TransferFailed:
    ref: LogRef
    batch_id: int
    index: int
    recipient: str
    amount: int


@dataclass(frozen=True)
class TokenTransfer:
    ref: LogRef
    token: str
    sender: str
    recipient: str
    amount: int


def _ref(log: dict[str, Any]) -> LogRef:
    return LogRef(
        tx_hash=log["transactionHash"],
        log_index=int(log["logIndex"], 16),
        block_number=int(log["blockNumber"], 16),
        block_hash=log["blockHash"],
    )


def _topic_address(topic: str) -> str:
    return to_checksum_address("0x" + topic[-40:])


def _data(log: dict[str, Any]) -> bytes:
    return bytes.fromhex(log["data"].removeprefix("0x"))


def decode_batch_executed(log: dict[str, Any]) -> BatchExecuted:
    paid_count, paid_total, failed_count = decode(["uint256"] * 3, _data(log))
    topics = log["topics"]
    return BatchExecuted(
        ref=_ref(log),
        payer=_topic_address(topics[1]),
        batch_id=int(topics[2], 16),
        token=_topic_address(topics[3]),
        paid_count=paid_count,
        paid_total=paid_total,
        failed_count=failed_count,
    )


def decode_transfer_failed(log: dict[str, Any]) -> TransferFailed:
    index, recipient, amount = decode(["uint256", "address", "uint256"], _data(log))
    return TransferFailed(
        ref=_ref(log),
        batch_id=int(log["topics"][1], 16),
        index=index,
        recipient=to_checksum_address(recipient),
        amount=amount,
    )


def decode_transfer(log: dict[str, Any]) -> TokenTransfer:
    topics = log["topics"]
    return TokenTransfer(
        ref=_ref(log),
        token=to_checksum_address(log["address"]),
        sender=_topic_address(topics[1]),
        recipient=_topic_address(topics[2]),
        amount=int(log["data"], 16),
    )
