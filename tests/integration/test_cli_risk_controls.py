"""The operator's path through the risk controls, from the CLI, as the README tells it: place
and release a hold, import a deny list, see the rule trip in the review queue, approve it
(dry run first), and watch the payout go out. On a database of its own: the CLI connects by
itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from payouts.runtime import Runtime
from tests.chainkit import mine, roll_up_now, scalar, seed, value


def _ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def _state(rt: Runtime, creator: str) -> str:
    return str(
        value(
            rt,
            "SELECT p.state FROM payouts p JOIN creators c ON c.id = p.creator_id"
            f" WHERE c.external_id = '{creator}'",
        )
    )


def _settle_and_reconcile(rt: Runtime, operator: Callable[..., Result]) -> None:
    _ok(operator(rt, "settle"))
    mine(rt, 3)
    _ok(operator(rt, "reconcile"))


def test_an_operator_holds_screens_reviews_and_pays_from_the_cli(
    make_runtime: Callable[..., Runtime], operator: Callable[..., Result], tmp_path: Path
) -> None:
    rt = make_runtime()
    recipients = seed(rt, creators=3)
    roll_up_now(rt)
    payout = scalar(
        rt,
        "SELECT p.id FROM payouts p JOIN creators c ON c.id = p.creator_id"
        " WHERE c.external_id = 'c1-0'",
    )

    placed = _ok(operator(rt, "holds", "place", "--payout", str(payout), "-m", "chargeback"))
    assert "placed" in placed
    assert "chargeback" in _ok(operator(rt, "holds", "list"))
    denied = tmp_path / "sanctions.csv"
    denied.write_text(f"# list of 2026-11-30\n{recipients['c1-1']},sanctions\n")
    assert "1 addresses listed" in _ok(operator(rt, "denylist", "import", str(denied)))
    assert recipients["c1-1"] in _ok(operator(rt, "denylist", "list"))

    _settle_and_reconcile(rt, operator)
    assert (_state(rt, "c1-0"), _state(rt, "c1-1"), _state(rt, "c1-2")) == (
        "held",
        "held",
        "finalized",
    )

    review = _ok(operator(rt, "review", "list"))
    assert "deny_list" in review
    assert "chargeback" not in review  # people's holds are not the review queue's
    review_id = scalar(rt, "SELECT id FROM holds WHERE rule = 'deny_list'")
    hold_id = scalar(rt, "SELECT id FROM holds WHERE rule = 'operator'")
    preview = _ok(operator(rt, "review", "approve", str(review_id), "--dry-run"))
    assert "would be approved" in preview
    assert scalar(rt, "SELECT count(*) FROM holds WHERE state = 'active'") == 2

    _ok(operator(rt, "review", "approve", str(review_id), "-m", "false positive"))
    _ok(operator(rt, "holds", "release", str(hold_id), "-m", "dispute closed"))
    _settle_and_reconcile(rt, operator)

    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 3
    assert "no active holds" in _ok(operator(rt, "holds", "list"))
    _ok(operator(rt, "check"))


def test_cli_refusals_are_one_line_with_an_exit_code(
    make_runtime: Callable[..., Runtime], operator: Callable[..., Result], tmp_path: Path
) -> None:
    rt = make_runtime()
    nothing = operator(rt, "holds", "release", "999")
    assert nothing.exit_code == 1
    assert nothing.output.strip().startswith("error: not found")
    both = operator(rt, "holds", "place", "-m", "x")
    assert both.exit_code == 2
    bad = tmp_path / "bad.txt"
    bad.write_text("0x123\n")
    refused = operator(rt, "denylist", "import", str(bad))
    assert refused.exit_code == 2
    assert "line 1" in refused.output
