"""How many payouts go into the next transaction: a pure policy, no I/O.

``plan`` weighs the situation (fees against the caps, the wallet's gas money, how recent
batches fared, the block gas limit) and says how many payouts to try, which are too small to
be worth today's gas, or why to wait. The policy starts from a per-recipient gas model, and the
chain's own gas estimate for the candidate batch has the last word: a candidate whose estimate
(plus headroom) would pass the per-transaction gas cap is shrunk in proportion and estimated
again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from config.settings import Settings

WEI_PER_NATIVE = 10**18


class SettleMode(StrEnum):
    """How a creator asked to be paid (``creators.settle_mode``)."""

    AUTO = "auto"  # push when it pays for its gas, claim when it does not
    PUSH = "push"
    CLAIM = "claim"


class SettleBy(StrEnum):
    """How settlement paid a payout (``payouts.settled_by``)."""

    PUSH = "push"  # in a batch from the hot wallet
    CLAIM = "claim"  # claimable from the escrow with a voucher


def push_threshold(
    marginal_gas: int, fee_per_gas: int, units_per_native: int | None, multiple: int
) -> int:
    """The smallest amount worth pushing: ``multiple`` times what ``marginal_gas`` costs at
    ``fee_per_gas``, in the asset's base units (``units_per_native`` per 10**18 wei), rounded
    up, so ``amount >= push_threshold(...)`` is exactly ``amount * 10**18 >= multiple * gas
    * fee * units``. Without a price gas cannot be weighed: every amount is worth pushing."""
    if units_per_native is None:
        return 0
    cost = multiple * marginal_gas * fee_per_gas * units_per_native
    return -(-cost // WEI_PER_NATIVE)


def settle_by(
    mode: SettleMode,
    amount: int,
    *,
    marginal_gas: int,
    fee_per_gas: int,
    units_per_native: int | None,
    multiple: int,
) -> SettleBy:
    """Push or claim one payout: as the creator asked, or, in auto, push when its amount is
    worth at least ``multiple`` times the gas its place in a batch costs at today's fee."""
    if mode is SettleMode.PUSH:
        return SettleBy.PUSH
    if mode is SettleMode.CLAIM:
        return SettleBy.CLAIM
    worth = push_threshold(marginal_gas, fee_per_gas, units_per_native, multiple)
    return SettleBy.PUSH if amount >= worth else SettleBy.CLAIM


@dataclass(frozen=True)
class ClaimPolicy:
    """Settlement's choice between push and claim for one asset (``settle_by``), with the
    marginal gas of a payout in a batch: a recipient that holds none of the token yet costs a
    fresh storage slot, one that does an update of it."""

    multiple: int
    units_per_native: int | None
    gas_fresh_holder: int
    gas_existing_holder: int

    def thresholds(self, fee_per_gas: int) -> tuple[int, int]:
        """(existing holder, fresh holder): below the first an auto payout is claimed whoever
        holds what, from the second it is pushed; only between them does holding matter."""
        return (
            push_threshold(
                self.gas_existing_holder, fee_per_gas, self.units_per_native, self.multiple
            ),
            push_threshold(
                self.gas_fresh_holder, fee_per_gas, self.units_per_native, self.multiple
            ),
        )

    def settle_by(
        self, mode: SettleMode, amount: int, fee_per_gas: int, *, fresh: bool
    ) -> SettleBy:
        gas = self.gas_fresh_holder if fresh else self.gas_existing_holder
        return settle_by(
            mode,
            amount,
            marginal_gas=gas,
            fee_per_gas=fee_per_gas,
            units_per_native=self.units_per_native,
            multiple=self.multiple,
        )


@dataclass(frozen=True)
class Conditions:
    """What the chain and the ledger say right now."""

    available: int  # payouts waiting
    base_fee: int  # of the latest block, wei per gas
    block_gas_limit: int
    gas_balance: int  # wei the hot wallet has for gas, less what unsent batches may burn
    recent_outcomes: Sequence[bool] = ()  # oldest first; False: failed or needed retries
    overdue: bool = False  # some payout has waited longer than it should


@dataclass(frozen=True)
class Decision:
    size: int  # payouts to try in the next transaction; 0: none now
    min_amount: int  # smaller payouts wait for a cheaper window (unless overdue)
    reason: str


@dataclass(frozen=True)
class BatchPolicy:
    gas_cap: int  # per-transaction gas cap (EIP-7825: 2**24)
    max_size: int  # hard ceiling on payouts per transaction
    headroom_percent: int = 20  # gas limit = estimate + headroom, and must stay under the cap
    base_gas: int = 60_000  # intrinsic cost plus the batcher's fixed work
    gas_per_payout: int = 30_000  # model of a fresh recipient; corrected by estimates
    max_fee_per_gas: int = 200 * 10**9  # never pay more per gas, overdue or not
    priority_fee: int = 10**9
    defer_fee_per_gas: int | None = None  # above it, wait unless overdue
    units_per_native: int | None = None  # asset base units per 10**18 wei
    max_gas_share_bps: int = 500

    def plan(self, now: Conditions) -> Decision:
        fee = now.base_fee + self.priority_fee
        worst_fee = min(self.max_fee_per_gas, 2 * now.base_fee + self.priority_fee)
        min_amount = self.min_amount(fee)
        if now.available <= 0:
            return Decision(0, min_amount, "no pending payouts")
        if now.base_fee >= self.max_fee_per_gas:
            return Decision(0, min_amount, f"base fee {now.base_fee} is at the cap")
        if self.defer_fee_per_gas is not None and fee > self.defer_fee_per_gas and not now.overdue:
            return Decision(0, min_amount, f"fee {fee} above {self.defer_fee_per_gas}: deferred")
        by_funds = self._payouts_fundable(now.gas_balance, worst_fee)
        if by_funds <= 0:
            return Decision(0, min_amount, "hot wallet has too little gas money")
        block_bound = replace(self, gas_cap=min(self.gas_cap, now.block_gas_limit))
        size = min(
            block_bound.first_guess(now.available), by_funds, self.ceiling(now.recent_outcomes)
        )
        return Decision(size, min_amount, "go" if size else "a payout does not fit a block")

    def ceiling(self, outcomes: Sequence[bool]) -> int:
        """Halve the batch after each failure, double it after each success (up to max_size)."""
        ceiling = self.max_size
        for ok in outcomes:
            ceiling = min(self.max_size, ceiling * 2) if ok else max(1, ceiling // 2)
        return ceiling

    def min_amount(self, fee_per_gas: int) -> int:
        """The smallest payout whose gas share stays within ``max_gas_share_bps`` of it."""
        if self.units_per_native is None:
            return 0
        share_wei = self.gas_per_payout * fee_per_gas
        share_units = -(-share_wei * self.units_per_native // WEI_PER_NATIVE)  # rounded up
        return -(-share_units * 10_000 // self.max_gas_share_bps)

    def _payouts_fundable(self, gas_balance: int, fee_per_gas: int) -> int:
        """The most payouts whose gas limit, at ``fee_per_gas``, the wallet can pay for."""
        if fee_per_gas <= 0:
            return self.max_size
        gas = gas_balance // fee_per_gas
        per_payout = max(1, self.gas_limit(self.gas_per_payout))
        return max(0, (gas - self.gas_limit(self.base_gas)) // per_payout)

    def gas_limit(self, estimate: int) -> int:
        return estimate * (100 + self.headroom_percent) // 100

    def fits(self, estimate: int) -> bool:
        return self.gas_limit(estimate) <= self.gas_cap

    def budget(self) -> int:
        """The largest estimate whose gas limit still fits under the cap."""
        return self.gas_cap * 100 // (100 + self.headroom_percent)

    def first_guess(self, available: int) -> int:
        by_gas = max(1, (self.budget() - self.base_gas) // self.gas_per_payout)
        return max(0, min(available, self.max_size, by_gas))

    def shrink(self, size: int, estimate: int) -> int:
        """A smaller size for a candidate whose estimate did not fit; always makes progress."""
        if size <= 1:
            return 0
        per_payout = max(1, -(-(estimate - self.base_gas) // size))  # rounded up
        proposed = (self.budget() - self.base_gas) // per_payout
        return max(0, min(size - 1, proposed))

    def learn(self, size: int, estimate: int) -> BatchPolicy:
        """Fold a real estimate into the per-payout model, so the next guess starts closer."""
        if size <= 0:
            return self
        per_payout = max(1, (estimate - min(self.base_gas, estimate)) // size)
        return replace(self, gas_per_payout=per_payout)


def claim_policy_for(settings: Settings, symbol: str) -> ClaimPolicy:
    return ClaimPolicy(
        multiple=settings.claim_push_multiple,
        units_per_native=settings.asset(symbol).units_per_native,
        gas_fresh_holder=settings.claim_gas_fresh_holder,
        gas_existing_holder=settings.claim_gas_existing_holder,
    )


def policy_for(settings: Settings, symbol: str | None = None) -> BatchPolicy:
    """The configured policy, weighing gas against payouts of ``symbol`` where it has a price."""
    asset = settings.asset(symbol) if symbol else None
    return BatchPolicy(
        gas_cap=settings.max_gas_per_tx,
        max_size=settings.max_batch_size,
        headroom_percent=settings.gas_limit_headroom_percent,
        max_fee_per_gas=settings.max_fee_per_gas,
        priority_fee=settings.priority_fee_per_gas,
        defer_fee_per_gas=settings.defer_fee_per_gas,
        units_per_native=asset.units_per_native if asset else None,
        max_gas_share_bps=settings.max_gas_share_bps,
    )
