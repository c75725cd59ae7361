"""The hot wallet's transactions that are not batches: escrow top-ups and vouchers it submits.

A hot wallet has one nonce lane (``payouts.submission.lane``). These transactions take it like
a batch does: under the lane's row lock the transaction is built, signed and stored with its
nonce (``wallet_transactions``), and the lane advances; that commits before anything is sent.
A worker that dies at any line leaves a stored transaction that the next ``send_unmined``
sends again, byte for byte, so a nonce the lane handed out is never left as a gap that would
hold every later batch back, and nothing is paid twice (one transaction per nonce).
The reconciler books them once mined (``payouts.claims.onchain``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.chain.client import ChainClient, RpcError
from payouts.chain.fees import fees_for
from payouts.chain.signer import SignedTx, Signer
from payouts.submission import lane
from payouts.submission.decisions import Refusal, refusal_of


@dataclass(frozen=True)
class WalletTx:
    id: int
    tx_hash: str
    nonce: int


@dataclass(frozen=True)
class Fees:
    """What the hot wallet may pay: the fee cap, the tip, and the gas headroom (percent)."""

    max_fee_cap: int
    priority_fee: int
    headroom_percent: int
    at_cap: bool = False  # sign at the cap rather than at twice today's base fee


def store(
    session: Session,
    chain: ChainClient,
    signer: Signer,
    *,
    chain_id: int,
    purpose: str,
    to: str,
    data: str,
    asset_id: int,
    amount: int,
    fees: Fees,
) -> WalletTx:
    """Sign and store ``to.call(data)`` from the hot wallet on the lane's next nonce. The gas
    is estimated first (a call that would revert is refused here, before a nonce is taken).
    The caller commits, then sends."""
    gas = chain.estimate_gas(signer.address, to, data)
    nonce = lane.take_nonce(session, chain, chain_id, signer.address)
    signed = sign_call(
        chain, signer, chain_id=chain_id, nonce=nonce, to=to, data=data, gas=gas, fees=fees
    )
    row_id = session.execute(
        text(
            """
            INSERT INTO wallet_transactions (purpose, chain_id, sender, nonce, to_address,
                                             asset_id, amount, tx_hash, raw)
            VALUES (:purpose, :c, :sender, :nonce, :to, :asset, :amount, :tx, :raw)
            RETURNING id
            """
        ),
        {
            "purpose": purpose,
            "c": chain_id,
            "sender": signer.address,
            "nonce": nonce,
            "to": to,
            "asset": asset_id,
            "amount": amount,
            "tx": signed.tx_hash,
            "raw": signed.raw,
        },
    ).scalar_one()
    return WalletTx(int(row_id), signed.tx_hash, nonce)


def sign_call(
    chain: ChainClient,
    signer: Signer,
    *,
    chain_id: int,
    nonce: int,
    to: str,
    data: str,
    gas: int,
    fees: Fees,
) -> SignedTx:
    """An EIP-1559 call of ``to`` with ``data``, its gas the estimate plus the headroom. On
    the lane (``fees.at_cap``) its max fee is the cap itself: nothing replaces these
    transactions, and one stuck under a rising base fee would hold every later nonce of the
    lane, the batches' too; EIP-1559 charges the base fee and the tip, never the max."""
    head = chain.block("latest")
    assert head is not None
    price = fees_for(head.base_fee_per_gas, fees.priority_fee, fees.max_fee_cap)
    if fees.at_cap:
        price = replace(price, max_fee_per_gas=fees.max_fee_cap)
    return signer.sign(
        {
            "type": 2,
            "chainId": chain_id,
            "nonce": nonce,
            "to": to,
            "value": 0,
            "data": data,
            "gas": gas * (100 + fees.headroom_percent) // 100,
            "maxFeePerGas": price.max_fee_per_gas,
            "maxPriorityFeePerGas": price.max_priority_fee_per_gas,
        }
    )


def unmined(session: Session, chain_id: int, sender: str) -> list[tuple[int, bytes]]:
    """The stored transactions of ``sender`` no block holds yet (id, raw bytes), by nonce."""
    rows = session.execute(
        text(
            "SELECT id, raw FROM wallet_transactions WHERE block_number IS NULL"
            " AND chain_id = :c AND sender = :s ORDER BY nonce"
        ),
        {"c": chain_id, "s": sender},
    )
    return [(int(r.id), bytes(r.raw)) for r in rows]


def send(chain: ChainClient, raw: bytes) -> None:
    """Hand stored bytes to the node. It may already have them, or a block may (the
    reconciler books it): both are fine; a refusal nobody understands raises."""
    try:
        chain.send_raw(raw)
    except RpcError as exc:
        refusal = refusal_of(exc.rpc_message, has_siblings=False)
        if refusal not in (Refusal.ALREADY_KNOWN, Refusal.NONCE_USED):
            raise


def mark_sent(session: Session, ids: list[int]) -> None:
    session.execute(
        text(
            "UPDATE wallet_transactions SET sent_at = now()"
            " WHERE id = ANY(CAST(:ids AS bigint[])) AND sent_at IS NULL"
        ),
        {"ids": ids},
    )
