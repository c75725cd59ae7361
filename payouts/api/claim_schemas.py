"""Request and response bodies of a creator's claim: their vouchers and how they settle."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SettleModeName = Literal["auto", "push", "claim"]


class SettleModeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    settle_mode: SettleModeName = Field(
        description=(
            "push: every payout in a batch; claim: every payout claimable from the escrow with"
            " a voucher; auto: pushed when worth the gas at today's fee, claimable otherwise."
            " What is claimable already stays claimable."
        )
    )


class SettleModeOut(BaseModel):
    creator_id: str
    settle_mode: SettleModeName


class VoucherOut(BaseModel):
    chain_id: int
    contract: str = Field(description="The PayoutClaims escrow that pays it")
    token: str
    recipient: str
    cumulative: str = Field(
        description="Everything this address was made able to claim in"
        " this token, in base units; the escrow pays it less what the"
        " address already claimed"
    )
    signature: str = Field(description="EIP-712 signature of the claim signer, 0x-hex")
    calldata: str = Field(
        description="claim(token, recipient, cumulative, signature): anyone"
        " may send it to the escrow and pay the gas"
    )


class ClaimOut(BaseModel):
    asset: str
    recipient: str
    claimable: str = Field(description="Not claimed yet, in base units")
    claimed: str = Field(description="Claimed on chain already, in base units")
    voucher: VoucherOut


class CreatorClaimOut(BaseModel):
    creator_id: str
    settle_mode: SettleModeName
    claims: list[ClaimOut] = Field(
        description="One current voucher per address and asset the creator's payouts were"
        " ever claimable at (an old address keeps its remainder); empty without an escrow"
    )


SETTLE_MODE = TypeAdapter(SettleModeIn)
