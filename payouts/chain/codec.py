"""The PayoutBatcher's calldata, encoded with eth_abi, and its logs, decoded from raw hex.

The reconciler reads a log for every payout, so decoding works on plain strings and ints:
addresses stay lowercase hex (what the node sends) and words are parsed with ``int(word, 16)``.
Web3's event helpers, eth_abi's ``decode`` and EIP-55 checksumming (a keccak per address)
each cost an order of magnitude more than that, so a checksum is made only for display.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
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
    return "0x" + topic[-40:].lower()


def _words(log: dict[str, Any]) -> list[str]:
    """The data's 32-byte words as hex strings."""
    data = log["data"].removeprefix("0x")
    return [data[i : i + 64] for i in range(0, len(data), 64)]


def decode_batch_executed(log: dict[str, Any]) -> BatchExecuted:
    paid_count, paid_total, failed_count = (int(w, 16) for w in _words(log)[:3])
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
    index, recipient, amount = _words(log)[:3]
    return TransferFailed(
        ref=_ref(log),
        batch_id=int(log["topics"][1], 16),
        index=int(index, 16),
        recipient=_topic_address(recipient),
        amount=int(amount, 16),
    )


def decode_transfer(log: dict[str, Any]) -> TokenTransfer:
    topics = log["topics"]
    return TokenTransfer(
        ref=_ref(log),
        token=log["address"].lower(),
        sender=_topic_address(topics[1]),
        recipient=_topic_address(topics[2]),
        amount=int(log["data"], 16),
    )


TransferRow = tuple[str, int, str, int]  # tx hash, log index, recipient (lowercase), amount


def transfer_rows(logs: Iterable[dict[str, Any]]) -> list[TransferRow]:
    """Token ``Transfer`` logs as plain rows, for the reconciler to stage in the database in
    bulk: a tuple per log, not two objects (at 100,000 logs the objects alone cost more than
    reading the logs)."""
    return [
        (
            x["transactionHash"],
            int(x["logIndex"], 16),
            _topic_address(x["topics"][2]),
            int(x["data"], 16),
        )
        for x in logs
    ]
