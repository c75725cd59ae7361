"""A submission that keeps failing climbs the retry tiers, then waits for an operator, who can
replay it from the CLI once the cause is fixed.

On a database of its own with real commits: the tiers are timed by the database's ``now()``,
which must move on, and the CLI reads the database from a connection of its own."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result

from payouts.errors import TransientChainError
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.submission import handlers as submission
from tests.chainkit import (
    assert_books_balance,
    assert_chain_pays_what_the_ledger_says,
    mine,
    node_gone,
    roll_up_now,
    scalar,
    seed,
)


def fail_once(rt: Runtime, batch_id: int, tier: int) -> submission.Retry | None:
    with pytest.raises(TransientChainError) as failure:
        submission.submit(rt, batch_id, actor="test")
    return submission.submission_failed(rt, batch_id, tier=tier, error=failure.value)


def test_a_failing_submission_climbs_the_tiers_then_is_parked_and_replayed(
    make_runtime: Callable[..., Runtime], operator: Callable[..., Result]
) -> None:
    rt = make_runtime(submit_retry_delays_seconds=[15, 60], resubmit_grace_seconds=0)
    down = node_gone(rt)
    recipients = seed(rt, creators=3)
    roll_up_now(rt)
    (batch,) = settlement.settle(rt, actor="test")["USDC"].sealed

    first = fail_once(down, batch.batch_id, tier=0)
    assert first is not None
    assert (first.tier, first.queue) == (1, "submit-retry-15s")
    assert 12 <= first.delay <= 18  # 15 s +- 20%
    assert submission.submission_failed(down, batch.batch_id, tier=0, error=Exception()) is None
    second = fail_once(down, batch.batch_id, tier=1)
    assert second is not None
    assert (second.tier, second.queue) == (2, "submit-retry-1m")
    assert fail_once(down, batch.batch_id, tier=2) is None  # the last tier: parked

    assert scalar(rt, f"SELECT submit_tier FROM batches WHERE id = {batch.batch_id}") == 3
    assert scalar(rt, "SELECT count(*) FROM batches WHERE parked_at IS NOT NULL") == 1
    assert submission.watchlist(rt).due == []  # parked: not picked up again by itself
    listed = operator(rt, "exceptions", "list", "--json")
    (exception,) = json.loads(listed.output)
    assert exception["kind"] == "submission_exhausted"
    assert exception["detail"]["tries"] == 3
    assert "node unreachable" in exception["detail"]["last_error"]

    still_down = operator(down, "exceptions", "replay", str(exception["id"]))
    assert still_down.exit_code == 1
    assert "replay failed, batch parked again" in still_down.stderr
    assert scalar(rt, "SELECT count(*) FROM batches WHERE parked_at IS NOT NULL") == 1

    replayed = operator(rt, "exceptions", "replay", str(exception["id"]))

    assert replayed.exit_code == 0, replayed.output
    assert "broadcast" in replayed.output
    again = operator(rt, "exceptions", "replay", str(exception["id"]))
    assert again.exit_code == 2
    assert "only an open submission_exhausted" in again.stderr
    mine(rt, 3)
    reconciler.reconcile(rt)
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 3
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    assert_books_balance(rt)


def test_a_sealed_batch_whose_task_was_lost_is_picked_up_after_the_grace(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime(resubmit_grace_seconds=3600)
    seed(rt, creators=2)
    roll_up_now(rt)
    (batch,) = settlement.settle(rt, actor="test")["USDC"].sealed
    assert submission.watchlist(rt).due == []  # its submit task may still be on its way
    assert submission.watchlist(rt, grace_seconds=0).due == [(batch.batch_id, 0)]
