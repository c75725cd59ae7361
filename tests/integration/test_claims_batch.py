"""PayoutClaims.claimMany, the platform's sweep, against a real anvil: each voucher pays as a
single claim would, a stale one is skipped (a creator who claimed meanwhile), a bad one fails
the whole batch and pays nothing; and its gas per claim beside a single claim's."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils.address import to_checksum_address
from web3.exceptions import ContractCustomError, Web3RPCError
from web3.types import TxParams

from payouts.chain.signer import LocalKeySigner
from payouts.chain.vouchers import SignedVoucher
from payouts.claims.onchain import CLAIMED
from payouts.claims.relay import claim_many_calldata
from payouts.settlement.claiming import voucher_json
from tests.integration.test_claims_contract import (
    ONE_USDC,
    RELAYER,
    Escrow,
    claim,
    fresh_address,
    mined,
    new_signer,
)
from tests.integration.test_claims_contract import escrow as escrow

BATCH_REFUSED_GAS = 2_000_000


def _batch(escrow: Escrow, signed: list[SignedVoucher], gas: int | None = None) -> TxParams:
    vouchers = [voucher_json(s) for s in signed]
    tx: TxParams = {
        "from": RELAYER,
        "to": escrow.claims.address,
        "data": claim_many_calldata(escrow.token.address, vouchers),  # type: ignore[typeddict-item]
    }
    if gas is not None:
        tx["gas"] = gas
    return tx


def _claimed_logs(escrow: Escrow, receipt: Any) -> list[tuple[str, int]]:
    """(recipient, paid) of each Claimed log of the receipt, in order."""
    return [
        (to_checksum_address(log["topics"][1][-20:]), int.from_bytes(log["data"][32:64]))
        for log in receipt["logs"]
        if log["address"] == escrow.claims.address and "0x" + log["topics"][0].hex() == CLAIMED
    ]


def test_a_batch_pays_each_voucher_once_and_skips_a_stale_one(escrow: Escrow) -> None:
    paid_alone, fresh, other = fresh_address(), fresh_address(), fresh_address()
    claim(escrow, escrow.signed(paid_alone, 5 * ONE_USDC))
    before = escrow.balance(escrow.claims.address)

    receipt = mined(
        escrow.w3,
        _batch(
            escrow,
            [
                escrow.signed(paid_alone, 5 * ONE_USDC),  # claimed meanwhile: skipped
                escrow.signed(fresh, 2 * ONE_USDC),
                escrow.signed(other, 3 * ONE_USDC),
            ],
        ),
    )

    assert receipt["status"] == 1
    assert _claimed_logs(escrow, receipt) == [
        (fresh, 2 * ONE_USDC),
        (other, 3 * ONE_USDC),
    ]
    assert (escrow.balance(fresh), escrow.balance(other)) == (2 * ONE_USDC, 3 * ONE_USDC)
    assert escrow.balance(paid_alone) == 5 * ONE_USDC
    assert escrow.balance(escrow.claims.address) == before - 5 * ONE_USDC
    # The same batch again pays nothing at all.
    again = mined(escrow.w3, _batch(escrow, [escrow.signed(fresh, 2 * ONE_USDC)]))
    assert _claimed_logs(escrow, again) == []
    assert escrow.balance(fresh) == 2 * ONE_USDC


@pytest.mark.parametrize("bad", ["forged", "short escrow"])
def test_one_bad_voucher_fails_the_batch_and_pays_nothing(escrow: Escrow, bad: str) -> None:
    good, target = fresh_address(), fresh_address()
    forger: LocalKeySigner = new_signer()
    held = escrow.balance(escrow.claims.address)
    last = (
        Escrow(escrow.w3, escrow.claims, escrow.token, forger).signed(target, ONE_USDC)
        if bad == "forged"
        else escrow.signed(target, held)  # more than is left after the first
    )
    signed = [escrow.signed(good, ONE_USDC), last]

    with pytest.raises((ContractCustomError, Web3RPCError)):
        escrow.w3.eth.call(_batch(escrow, signed))
    receipt = mined(escrow.w3, _batch(escrow, signed, gas=BATCH_REFUSED_GAS))

    assert receipt["status"] == 0
    assert escrow.balance(escrow.claims.address) == held
    assert escrow.claimed(good) == 0


def test_lists_of_different_lengths_are_refused(escrow: Escrow) -> None:
    signed = escrow.signed(fresh_address(), ONE_USDC)
    call = escrow.claims.functions.claimMany(
        escrow.token.address, [signed.voucher.recipient], [1, 2], [signed.signature]
    )
    with pytest.raises(ContractCustomError):
        call.call({"from": RELAYER})


def test_gas_per_claim_in_a_batch(escrow: Escrow) -> None:
    """A sweep of 20 returning claimers and of 20 first claims, per voucher, beside the single
    claim's figures of test_claims_contract (87,409 fresh, 53,209 returning)."""
    size = 20
    recipients = [fresh_address() for _ in range(size)]
    first = mined(escrow.w3, _batch(escrow, [escrow.signed(r, ONE_USDC) for r in recipients]))
    returning = mined(
        escrow.w3, _batch(escrow, [escrow.signed(r, 2 * ONE_USDC) for r in recipients])
    )
    assert len(_claimed_logs(escrow, first)) == len(_claimed_logs(escrow, returning)) == size
    per_first = first["gasUsed"] / size
    per_returning = returning["gasUsed"] / size
    print(
        f"\nclaimMany of {size}: first claims {first['gasUsed']:,} gas ({per_first:,.0f} each),"
        f" returning {returning['gasUsed']:,} gas ({per_returning:,.0f} each)"
    )
    # The 21,000 of the transaction is shared, so each voucher costs well under a single claim.
    assert per_returning < 53_209 - 15_000
    assert per_first < 87_409 - 15_000
