"""Which error gets which exit code: configuration 3, a service down 4, the domain's refusals
1 or 2, and a bug none (its traceback is kept)."""

from __future__ import annotations

import pytest

from payouts.errors import (
    BrokerUnavailable,
    CircuitOpen,
    DatabaseRefused,
    IdempotencyConflict,
    InvalidInput,
    NotFound,
)
from payouts.terminal.errors import BAD_INPUT, CONFIGURATION, FAILED, UNAVAILABLE, explain


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInput("no database", code="not_configured"), CONFIGURATION),
        (BrokerUnavailable("redis did not answer"), UNAVAILABLE),
        (CircuitOpen("breaker open"), UNAVAILABLE),
        (NotFound("payout 9"), FAILED),
        (IdempotencyConflict(["k"]), BAD_INPUT),
        (DatabaseRefused("database refused: a guard"), BAD_INPUT),
    ],
)
def test_each_kind_of_error_has_its_exit_code(error: Exception, code: int) -> None:
    failure = explain(error)
    assert failure is not None
    assert failure.code == code
    assert "\n" not in failure.line()


@pytest.mark.parametrize("bug", [RuntimeError("boom"), KeyError("x"), ValueError("y")])
def test_a_bug_is_not_explained_away(bug: Exception) -> None:
    assert explain(bug) is None
