"""Decoding the batcher's and the token's logs from raw hex, as the node sends them.

Specified here against eth_abi's own encoding: every field comes back as the integer or the
lowercase address that was encoded (no checksum: addresses are compared as lowercase hex and
checksummed only for display), and ``transfer_rows`` gives the same transfers as
``decode_transfer``, as plain tuples.
"""

from __future__ import annotations

from typing import Any

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from payouts.chain import codec

_addresses = st.binary(min_size=20, max_size=20).map(lambda b: to_checksum_address(b))
_uint256 = st.integers(min_value=0, max_value=2**256 - 1)
_hashes = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())


def _log(topics: list[str], data: bytes, **ref: Any) -> dict[str, Any]:
    return {
        "address": ref.get("address", "0x5fbdb2315678afecb367f032d93f642f64180aa3"),
        "topics": topics,
        "data": "0x" + data.hex(),
        "transactionHash": ref.get("tx_hash", "0x" + "ab" * 32),
        "logIndex": hex(ref.get("log_index", 7)),
        "blockNumber": hex(ref.get("block_number", 1234)),
        "blockHash": "0x" + "cd" * 32,
    }


def _word(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


@given(sender=_addresses, recipient=_addresses, amount=_uint256, tx=_hashes, index=_uint256)
def test_a_transfer_decodes_to_lowercase_addresses_and_its_integer_amount(
    sender: str, recipient: str, amount: int, tx: str, index: int
) -> None:
    log = _log(
        [codec.TRANSFER, codec.address_topic(sender), codec.address_topic(recipient)],
        encode(["uint256"], [amount]),
        tx_hash=tx,
        log_index=index,
    )
    transfer = codec.decode_transfer(log)
    assert (transfer.sender, transfer.recipient, transfer.amount) == (
        sender.lower(),
        recipient.lower(),
        amount,
    )
    assert (transfer.ref.tx_hash, transfer.ref.log_index, transfer.ref.block_number) == (
        tx,
        index,
        1234,
    )
    assert codec.transfer_rows([log]) == [(tx, index, recipient.lower(), amount)]


@given(payer=_addresses, token=_addresses, batch_id=_uint256, counts=st.tuples(*[_uint256] * 3))
def test_a_batch_executed_decodes_every_field(
    payer: str, token: str, batch_id: int, counts: tuple[int, int, int]
) -> None:
    log = _log(
        [
            codec.BATCH_EXECUTED,
            codec.address_topic(payer),
            _word(batch_id),
            codec.address_topic(token),
        ],
        encode(["uint256"] * 3, list(counts)),
    )
    executed = codec.decode_batch_executed(log)
    assert (executed.payer, executed.batch_id, executed.token) == (
        payer.lower(),
        batch_id,
        token.lower(),
    )
    assert (executed.paid_count, executed.paid_total, executed.failed_count) == counts


@given(batch_id=_uint256, index=_uint256, recipient=_addresses, amount=_uint256)
def test_a_transfer_failed_decodes_the_position_the_recipient_and_the_amount(
    batch_id: int, index: int, recipient: str, amount: int
) -> None:
    log = _log(
        [codec.TRANSFER_FAILED, _word(batch_id)],
        encode(["uint256", "address", "uint256"], [index, recipient, amount]),
    )
    failed = codec.decode_transfer_failed(log)
    assert (failed.batch_id, failed.index, failed.recipient, failed.amount) == (
        batch_id,
        index,
        recipient.lower(),
        amount,
    )


def test_transfer_rows_keep_the_order_the_node_gave() -> None:
    logs = [
        _log(
            [codec.TRANSFER, _word(0), codec.address_topic(f"0x{n:040x}")],
            encode(["uint256"], [n * 100]),
            log_index=n,
        )
        for n in (3, 1, 2)
    ]
    assert [(i, r, a) for _, i, r, a in codec.transfer_rows(logs)] == [
        (3, f"0x{3:040x}", 300),
        (1, f"0x{1:040x}", 100),
        (2, f"0x{2:040x}", 200),
    ]
