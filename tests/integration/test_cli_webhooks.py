"""The operator's webhook commands: list endpoints, read attempts, redeliver (dry run first),
disable and enable; and a marketplace's events in order."""

from __future__ import annotations

from collections.abc import Callable

from click.testing import Result

from payouts.notify import handlers as webhooks
from payouts.runtime import Runtime
from tests.clikit import table_rows
from tests.webhook_receiver import receiving
from tests.webhookkit import emit, fast, marketplace, scalar

Operator = Callable[..., Result]


def test_webhook_commands(committed_ledger_runtime: Runtime, operator: Operator) -> None:
    rt = fast(committed_ledger_runtime)
    shop = marketplace(rt, "shop")
    with receiving() as receiver:
        endpoint = webhooks.create_endpoint(rt, shop, receiver.url, [])["id"]
        emit(rt, shop, "payout.created", "payout.finalized")
        webhooks.dispatch(rt)
        webhooks.deliver(rt, endpoint)

    listed = operator(rt, "webhooks", "list")
    assert listed.exit_code == 0, listed.output
    [row] = table_rows(listed.output)
    assert row[:3] == [str(endpoint), "enabled", "shop"]
    assert row[5] == "2/2"  # delivered up to seq 2 of 2

    attempts = operator(rt, "webhooks", "attempts", str(endpoint))
    assert attempts.exit_code == 0, attempts.output
    tried = [row[1:6] for row in table_rows(attempts.output)]
    assert tried[0][0] == "evt_2"
    assert [(seq, attempt, outcome) for _, seq, attempt, _, outcome in tried] == [
        ("2", "1", "200"),
        ("1", "1", "200"),
    ]

    dry = operator(rt, "webhooks", "redeliver", str(endpoint), "--after-seq", "0", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would redeliver 2 events: evt_1 (seq 1, payout.created)" in dry.output
    assert scalar(rt, "SELECT count(*) FROM webhook_redeliveries") == 0
    one = operator(rt, "webhooks", "redeliver", str(endpoint), "--event", "evt_2")
    assert one.exit_code == 0, one.output
    assert scalar(rt, "SELECT count(*) FROM webhook_redeliveries") == 1

    for args, code, text in [
        (("redeliver", str(endpoint)), 2, "name either"),
        (("redeliver", str(endpoint), "--event", "evt_9"), 1, "not found"),
        (("attempts", "999"), 1, "not found"),
        (("disable", "999"), 1, "not found"),
    ]:
        refused = operator(rt, "webhooks", *args)
        assert refused.exit_code == code, refused.output
        assert text in refused.output

    off = operator(rt, "webhooks", "disable", str(endpoint))
    assert off.exit_code == 0, off.output
    assert "disabled" in off.output
    assert webhooks.dispatch(rt) == []
    on = operator(rt, "webhooks", "enable", str(endpoint))
    assert "enabled" in on.output
    assert webhooks.dispatch(rt) == [endpoint]  # the redelivery asked for above


def test_events_list(committed_ledger_runtime: Runtime, operator: Operator) -> None:
    rt = committed_ledger_runtime
    shop = marketplace(rt, "shop")
    marketplace(rt, "other")
    emit(rt, shop, "payout.created", "payout.batched", "payout.finalized")
    listed = operator(rt, "events", "list", "--marketplace", "shop", "--after", "1")
    assert listed.exit_code == 0, listed.output
    rows = table_rows(listed.output)
    assert [row[:2] for row in rows] == [["2", "evt_2"], ["3", "evt_3"]]
    assert rows[1][3] == "payout.finalized"
    assert "no events after 0" in operator(rt, "events", "list", "--marketplace", "other").output
    unknown = operator(rt, "events", "list", "--marketplace", "nobody")
    assert unknown.exit_code == 1
    assert "not found" in unknown.output
