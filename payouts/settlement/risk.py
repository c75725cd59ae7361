"""Velocity limits and outflow ceilings: which payouts a rule holds, and why. Pure, no I/O.

Per creator and per marketplace, the amount and the count paid out in the last hour and the
last day are bounded; per asset, the total paid out in the last hour and day. Usage counts
what live batches (sealed, sent, mined, final; not failed) already carry, plus what this
settlement run has chosen so far, so a limit holds across runs and within one. A payout that
would exceed a limit is held (never dropped) with the rule and the figures that tripped it,
for an operator to approve or reject; a payout an operator approved is not held again by a
rule, but still counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from config.settings import Settings, VelocityLimits

if TYPE_CHECKING:
    from payouts.settlement.selection import Candidate

Scope = Literal["creator", "marketplace", "asset"]
Window = Literal["hour", "day"]
Measure = Literal["amount", "count"]
WINDOWS: tuple[Window, ...] = ("hour", "day")
MEASURES: tuple[Measure, ...] = ("amount", "count")


@dataclass(frozen=True)
class Limit:
    scope: Scope
    window: Window
    measure: Measure
    ceiling: int

    @property
    def rule(self) -> str:
        """The rule's name, as the review queue shows it: ``velocity:creator:hour:amount``."""
        kind = "outflow" if self.scope == "asset" else "velocity"
        return f"{kind}:{self.scope}:{self.window}:{self.measure}"


Key = tuple[Scope, Window, Measure, int]  # scope, window, measure, the scope's id (0: asset)


@dataclass
class Usage:
    """What is already paid out, per scope and window: amounts and counts."""

    used: Counter[Key] = field(default_factory=Counter)

    def add(self, c: Candidate, windows: Sequence[Window] = ("hour", "day")) -> None:
        for window in windows:
            for scope, owner in _owners(c):
                self.used[(scope, window, "amount", owner)] += c.amount
                self.used[(scope, window, "count", owner)] += 1

    def count(self, scope: Scope, owner: int, row: Any) -> None:
        """Add a row of paid-out figures (``hour_amount``, ``hour_count``, ``day_amount``,
        ``day_count``) to ``scope``'s ``owner``."""
        for window in ("hour", "day"):
            for measure in ("amount", "count"):
                self.used[(scope, window, measure, owner)] += int(
                    getattr(row, f"{window}_{measure}")
                )

    @classmethod
    def of(cls, rows: Mapping[Key, int]) -> Usage:
        return cls(Counter(rows))

    def copy(self) -> Usage:
        return Usage(Counter(self.used))


def _owners(c: Candidate) -> list[tuple[Scope, int]]:
    return [("creator", c.creator_id), ("marketplace", c.marketplace_id), ("asset", 0)]


@dataclass(frozen=True)
class Tripped:
    """A payout a limit holds: the rule and the figures an operator reviews."""

    candidate: Candidate
    limit: Limit
    used: int  # already paid out in the window (amount or count)
    would_be: int  # with this payout

    @property
    def figures(self) -> dict[str, str]:
        return {
            "rule": self.limit.rule,
            "ceiling": str(self.limit.ceiling),
            "used": str(self.used),
            "with_this_payout": str(self.would_be),
            "amount": str(self.candidate.amount),
        }


def tripped(c: Candidate, limits: Sequence[Limit], usage: Usage) -> Tripped | None:
    """The first limit ``c`` would take past its ceiling, if any."""
    for limit in limits:
        owner = next(o for s, o in _owners(c) if s == limit.scope)
        used = usage.used[(limit.scope, limit.window, limit.measure, owner)]
        would_be = used + (c.amount if limit.measure == "amount" else 1)
        if would_be > limit.ceiling:
            return Tripped(c, limit, used, would_be)
    return None


def limits_for(settings: Settings, symbol: str) -> list[Limit]:
    """The configured limits of an asset's payouts, in the order they are checked."""
    asset = settings.asset(symbol)
    velocity: tuple[tuple[Scope, VelocityLimits], ...] = (
        ("creator", asset.creator_limits),
        ("marketplace", asset.marketplace_limits),
    )
    limits = [
        Limit(scope, window, measure, ceiling)
        for scope, configured in velocity
        for window in WINDOWS
        for measure in MEASURES
        if (ceiling := getattr(configured, f"per_{window}_{measure}")) is not None
    ]
    outflow: tuple[tuple[Window, int | None], ...] = (
        ("hour", asset.outflow_per_hour),
        ("day", asset.outflow_per_day),
    )
    limits += [Limit("asset", w, "amount", cap) for w, cap in outflow if cap is not None]
    return limits
