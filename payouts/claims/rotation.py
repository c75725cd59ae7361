"""Rotating the escrow's claim signer: ``setSigner`` from the escrow's owner, the hot wallet.

Every voucher of the previous signer stops paying at once; the ledger re-derives each
address's voucher for the same cumulative with the new key (``PAYOUTS_CLAIMS_SIGNER_KEY``),
and it pays only what was not claimed yet. The owner is the hot wallet (``payouts chain
deploy`` deploys the escrow from it), so the rotation is one of its wallet transactions, on
its nonce lane like a top-up.
"""

from __future__ import annotations

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from payouts.catalog import NATIVE_SYMBOL, checked_address
from payouts.chain.vouchers import set_signer_calldata
from payouts.claims import wallet
from payouts.claims.escrow import escrow_address, send_unmined, wallet_fees
from payouts.claims.onchain import calls_at
from payouts.errors import InvalidInput
from payouts.runtime import Runtime

OWNER = "0x" + keccak(text="owner()")[:4].hex()
SIGNER = "0x" + keccak(text="signer()")[:4].hex()


def current_signer(rt: Runtime) -> str:
    """Whose vouchers the escrow pays now."""
    escrow = escrow_address(rt)
    [signer] = calls_at(rt.chain, "latest", [(escrow, SIGNER)])
    return to_checksum_address(signer.to_bytes(20, "big"))


def rotate_signer(rt: Runtime, signer: str | None = None) -> str | None:
    """Make the escrow pay ``signer``'s vouchers (the configured claim signer's where None);
    the transaction's hash, or None when it already does."""
    escrow = escrow_address(rt)
    target = checked_address(signer, field="signer") if signer else rt.claim_signer.address
    [owner] = calls_at(rt.chain, "latest", [(escrow, OWNER)])
    if to_checksum_address(owner.to_bytes(20, "big")) != rt.signer.address:
        raise InvalidInput(
            f"the escrow {escrow} is not owned by the hot wallet {rt.signer.address}:"
            " its owner must rotate the signer",
            field="claims_address",
            code="not_the_owner",
        )
    if current_signer(rt) == to_checksum_address(target):
        return None
    # Gas is all it moves: booked against the chain's native currency.
    native = rt.asset_ids()[NATIVE_SYMBOL]
    with rt.uow() as session:
        stored = wallet.store(
            session,
            rt.chain,
            rt.signer,
            chain_id=rt.settings.chain_id,
            purpose="signer",
            to=escrow,
            data=set_signer_calldata(target),
            asset_id=native,
            amount=0,
            fees=wallet_fees(rt),
        )
        session.commit()
    send_unmined(rt)
    return stored.tx_hash
