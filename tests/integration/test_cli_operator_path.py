"""The operator's path as the README walks it, on a chain that mines only when asked (anvil
without a block time, like a dev chain left idle): ``rollup --now`` closes a window at once,
``reconcile`` says how many blocks each batch still waits for, and the tables read back."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from click.testing import Result

from payouts.runtime import Runtime
from tests.chainkit import mine, seed

Operator = Callable[..., Result]


def _ok(result: Result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def test_rollup_now_then_settle_then_reconcile_waits_for_blocks_and_ends_final(
    make_runtime: Callable[..., Runtime], operator: Operator
) -> None:
    rt = make_runtime(confirmation_depth=2, finality_depth=3)
    seed(rt, creators=3)

    rolled = json.loads(_ok(operator(rt, "rollup", "--now", "--json")))
    assert (rolled["created"], rolled["payouts"]) == (True, 3)
    sent = json.loads(_ok(operator(rt, "settle", "--json")))
    [submission] = sent["submissions"]
    assert submission["outcome"] == "broadcast"

    # Anvil mined the transaction's block and nothing since: depth 1 of 2, of 3 for finality.
    waiting = _ok(operator(rt, "reconcile"))
    assert "1 batches included, 0 confirmed, 0 finalized" in waiting
    assert re.search(
        rf"batch {submission['batch_id']} included in block \d+: waiting for 1 more blocks"
        r" to confirm, 2 to be final",
        waiting,
    ), waiting
    mine(rt, 2)
    final = json.loads(_ok(operator(rt, "reconcile", "--json")))
    assert (final["advance"]["confirmed"], final["advance"]["finalized"]) == (1, 1)
    assert final["waiting"] == []

    traced = _ok(operator(rt, "trace", "--payout", "1"))
    assert re.search(r"payout 1 to 0x[0-9a-fA-F]{40}: \d+, finalized", traced)
    for move in ("pending  ", "batched", "submitted", "confirmed", "finalized"):
        assert move in traced
    assert re.search(r"ok\s+│", _ok(operator(rt, "check")))
