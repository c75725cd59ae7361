"""The escrow's top-up policy, pure: nothing while the escrow holds what is claimable; else
what is claimable plus the headroom less what it holds, never more than the wallet has."""

from __future__ import annotations

import pytest

from payouts.claims.topups import topup_amount


@pytest.mark.parametrize(
    ("claimable", "held", "headroom_bps", "available", "expected"),
    [
        (0, 0, 2_000, 10**9, 0),  # nothing claimable
        (1_000, 1_000, 2_000, 10**9, 0),  # exactly covered: no top-up for the headroom alone
        (1_000, 5_000, 2_000, 10**9, 0),  # surplus stays
        (1_000, 999, 2_000, 10**9, 201),  # short by one: up to claimable + 20%
        (1_000, 0, 0, 10**9, 1_000),  # no headroom: exactly what is claimable
        (1_000, 0, 2_000, 700, 700),  # the wallet has less: all it has, the rest stays short
        (1_000, 0, 2_000, 0, 0),  # an empty wallet sends nothing
        (3, 0, 5_000, 10**9, 4),  # rounded down to base units
    ],
)
def test_topup_amount(
    claimable: int, held: int, headroom_bps: int, available: int, expected: int
) -> None:
    assert topup_amount(claimable, held, headroom_bps, available) == expected
