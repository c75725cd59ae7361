"""Webhook delivery through its handlers, to a real HTTP receiver on loopback (behind a real
TCP proxy where the receiver must go away): signed, in order, each event until it is taken,
a 410 ends it, Retry-After is honoured, tenants see only their own events, rotated secrets
overlap, and requests never reach an address the operator has not allowed."""

from __future__ import annotations

import time
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from payouts.client import WebhookVerificationError, verify_webhook
from payouts.errors import InvalidInput
from payouts.notify import handlers as webhooks
from payouts.notify.delivery import ENDPOINT_DISABLED
from payouts.runtime import Runtime
from tests.tcp_proxy import CuttingProxy
from tests.waiting import wait_until
from tests.webhook_receiver import Receiver, receiving
from tests.webhookkit import emit, fast, marketplace, scalar

PAYOUT_TYPES = ("payout.created", "payout.batched", "payout.finalized")


@pytest.fixture
def rt(committed_ledger_runtime: Runtime) -> Runtime:
    return fast(committed_ledger_runtime)


def _endpoint(rt: Runtime, m: int, url: str, types: list[str] | None = None) -> tuple[int, str]:
    created = webhooks.create_endpoint(rt, m, url, types or [])
    return created["id"], created["secret"]


def test_deliveries_arrive_signed_in_order_and_verify(rt: Runtime) -> None:
    shop = marketplace(rt, "shop")
    with receiving() as receiver:
        endpoint, secret = _endpoint(rt, shop, receiver.url)
        emit(rt, shop, *PAYOUT_TYPES)
        assert webhooks.dispatch(rt) == [endpoint]
        run = webhooks.deliver(rt, endpoint)
        assert run.count("delivered") == 3
        got = receiver.events(secret)
    assert [e.seq for e in got] == [1, 2, 3]
    assert [e.type for e in got] == list(PAYOUT_TYPES)
    assert got[0].data == {"n": 0, "type": "payout.created"}
    assert all(r.headers["content-type"] == "application/json" for r in receiver.received())
    assert webhooks.get_endpoint(rt, endpoint, shop)["delivered_seq"] == 3
    attempts, _ = webhooks.list_attempts(rt, endpoint, shop)
    assert [(a["event_id"], a["status"], a["attempt"]) for a in attempts] == [
        (e.id, 200, 1) for e in reversed(got)
    ]
    assert webhooks.dispatch(rt) == []  # nothing left


def test_a_run_that_spends_its_budget_says_there_is_more(rt: Runtime) -> None:
    shop = marketplace(rt, "shop")
    small = fast(rt, webhook_delivery_budget=2)
    with receiving() as receiver:
        endpoint, secret = _endpoint(small, shop, receiver.url)
        emit(small, shop, *PAYOUT_TYPES)
        assert webhooks.dispatch(small) == [endpoint]
        first = webhooks.deliver(small, endpoint)
        assert (first.count("delivered"), first.more) == (2, True)
        second = webhooks.deliver(small, endpoint)  # the task goes on at once, no dispatch
        assert (second.count("delivered"), second.more) == (1, False)
        assert [e.seq for e in receiver.events(secret)] == [1, 2, 3]


def test_a_tampered_or_foreign_delivery_does_not_verify(rt: Runtime) -> None:
    shop = marketplace(rt, "shop")
    with receiving() as receiver:
        endpoint, secret = _endpoint(rt, shop, receiver.url)
        _, other_secret = _endpoint(rt, shop, receiver.url + "/other")
        emit(rt, shop, "payout.finalized")
        webhooks.dispatch(rt)
        webhooks.deliver(rt, endpoint)
    request = receiver.received()[0]
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify_webhook(request.body, request.headers, other_secret)
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify_webhook(request.body.replace(b"finalized", b"cancelled"), request.headers, secret)
    late = datetime.now(UTC) + timedelta(minutes=6)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(request.body, request.headers, secret, now=late)
    assert verify_webhook(request.body, request.headers, secret).type == "payout.finalized"


def test_only_the_types_wanted_are_sent_and_the_rest_are_skipped(rt: Runtime) -> None:
    shop = marketplace(rt, "shop")
    with receiving() as receiver:
        endpoint, secret = _endpoint(rt, shop, receiver.url, ["payout.finalized"])
        emit(rt, shop, "payout.created", "payout.finalized", "hold.placed", "payout.batched")
        webhooks.dispatch(rt)
        webhooks.deliver(rt, endpoint)
        assert [e.seq for e in receiver.events(secret)] == [2]
    # The cursor moved over the unwanted ones too: nothing is due.
    assert webhooks.get_endpoint(rt, endpoint, shop)["delivered_seq"] == 4
    assert webhooks.dispatch(rt) == []


def test_an_endpoint_starts_at_the_newest_event(rt: Runtime) -> None:
    shop = marketplace(rt, "shop")
    emit(rt, shop, "payout.created", "payout.created")
    with receiving() as receiver:
        endpoint, secret = _endpoint(rt, shop, receiver.url)
        emit(rt, shop, "payout.batched")
        webhooks.dispatch(rt)
        webhooks.deliver(rt, endpoint)
        assert [e.seq for e in receiver.events(secret)] == [3]


def test_a_receiver_slower_than_the_timeout_is_cut_off_and_tried_again(rt: Runtime) -> None:
    """The receiver took the request and did not answer in time: the attempt is a timeout,
    the cursor stays, and the next attempt sends the same event with the same id (the
    receiver got it twice and keeps it once)."""
    shop = marketplace(rt, "shop")
    slow = fast(rt, webhook_timeout_seconds=0.5)
    receiver = Receiver(hold=True)
    with receiving(receiver):
        endpoint, secret = _endpoint(slow, shop, receiver.url)
        emit(slow, shop, "payout.finalized")
        webhooks.dispatch(slow)
        started = time.monotonic()
        run = webhooks.deliver(slow, endpoint)
        assert time.monotonic() - started < 5  # cut off, not waiting for the receiver
        assert [s.result for s in run.steps] == ["retry"]
        [attempt], _ = webhooks.list_attempts(slow, endpoint, shop)
        assert attempt["status"] is None
        assert "timeout" in attempt["error"]
        assert webhooks.get_endpoint(slow, endpoint, shop)["delivered_seq"] == 0

        receiver.hold = False
        receiver.release.set()
        wait_until(lambda: webhooks.dispatch(slow), timeout=10, what="the retry to be due")
        assert webhooks.deliver(slow, endpoint).count("delivered") == 1
        assert receiver.ids() == ["evt_1", "evt_1"]
        assert [e.seq for e in receiver.unique(secret)] == [1]
        assert webhooks.get_endpoint(slow, endpoint, shop)["delivered_seq"] == 1


def test_410_disables_the_endpoint_and_tells_the_operator(rt: Runtime) -> None:
    shop = marketplace(rt, "shop")
    with receiving(Receiver(answer=lambda _: (410, {}))) as receiver:
        endpoint, _ = _endpoint(rt, shop, receiver.url)
        emit(rt, shop, "payout.created", "payout.batched")
        webhooks.dispatch(rt)
        run = webhooks.deliver(rt, endpoint)
        assert [s.result for s in run.steps] == ["gone"]
        assert webhooks.dispatch(rt) == []
        assert webhooks.deliver(rt, endpoint).count("gone") == 0
        assert len(receiver.received()) == 1
    view = webhooks.get_endpoint(rt, endpoint, shop)
    assert view["status"] == "disabled"
    assert "410" in view["disabled_reason"]
    assert view["delivered_seq"] == 0
    kinds = scalar(rt, "SELECT array_agg(kind) FROM exceptions WHERE state = 'open'")
    assert kinds == [ENDPOINT_DISABLED]


def test_429_with_retry_after_is_honoured(rt: Runtime) -> None:
    shop = marketplace(rt, "shop")
    answers = iter([(429, {"Retry-After": "120"})])
    with receiving(Receiver(answer=lambda _: next(answers, (200, {})))) as receiver:
        endpoint, secret = _endpoint(rt, shop, receiver.url)
        emit(rt, shop, "payout.created")
        webhooks.dispatch(rt)
        assert [s.status for s in webhooks.deliver(rt, endpoint).steps] == [429]
        view = webhooks.get_endpoint(rt, endpoint, shop)
        wait = datetime.fromisoformat(view["retry_at"]) - datetime.now(UTC)
        assert timedelta(seconds=100) < wait <= timedelta(seconds=120)  # not the 0.2 s tier
        assert webhooks.dispatch(rt) == []
        assert webhooks.deliver(rt, endpoint).steps[0].result == "idle"
        assert len(receiver.received()) == 1
        # An operator's redelivery does not wait out the retry.
        redo = webhooks.redeliver(rt, endpoint, None, after_seq=0, actor="operator")
        assert redo["events"] == 1
        assert webhooks.dispatch(rt) == [endpoint]
        assert webhooks.deliver(rt, endpoint).count("delivered") == 1
        assert [e.seq for e in receiver.unique(secret)] == [1]
        assert receiver.ids()[0] == receiver.ids()[1]  # the same id on the retry


def test_a_receiver_that_was_down_gets_every_event_once_in_order(rt: Runtime) -> None:
    shop = marketplace(rt, "shop")
    with receiving() as receiver, closing(CuttingProxy(receiver.port)) as proxy:
        endpoint, secret = _endpoint(rt, shop, f"{proxy.url}/hooks")
        proxy.go_down()
        emit(rt, shop, *PAYOUT_TYPES)
        for _ in range(3):
            wait_until(lambda: webhooks.dispatch(rt), timeout=10, what="the retry to be due")
            assert webhooks.deliver(rt, endpoint).count("retry") == 1
        assert webhooks.get_endpoint(rt, endpoint, shop)["failures"] == 3
        proxy.come_back()
        wait_until(lambda: webhooks.dispatch(rt), timeout=10, what="the retry to be due")
        assert webhooks.deliver(rt, endpoint).count("delivered") == 3
    assert [e.seq for e in receiver.events(secret)] == [1, 2, 3]
    attempts, _ = webhooks.list_attempts(rt, endpoint, shop)
    failed = [a for a in attempts if a["status"] is None]
    assert [a["attempt"] for a in reversed(failed)] == [1, 2, 3]
    assert all(a["error"] for a in failed)
    assert webhooks.get_endpoint(rt, endpoint, shop)["failing_since"] is None


def test_an_endpoint_failing_past_the_limit_is_disabled(committed_ledger_runtime: Runtime) -> None:
    rt = fast(committed_ledger_runtime, webhook_disable_after_seconds=0.5)
    shop = marketplace(rt, "shop")
    with receiving(Receiver(answer=lambda _: (503, {}))):
        endpoint, _ = _endpoint(rt, shop, "http://127.0.0.1:9/nothing-listens")
        emit(rt, shop, "payout.created")

        def tried_until_disabled() -> bool:
            webhooks.dispatch(rt)
            webhooks.deliver(rt, endpoint)
            return webhooks.get_endpoint(rt, endpoint, shop)["status"] == "disabled"

        wait_until(tried_until_disabled, timeout=10, what="the endpoint to be disabled")
    view = webhooks.get_endpoint(rt, endpoint, shop)
    assert view["disabled_reason"].startswith("failing since")
    detail = scalar(rt, "SELECT detail FROM exceptions WHERE kind = :k", k=ENDPOINT_DISABLED)
    assert detail["endpoint_id"] == endpoint
    assert detail["head_event"] == "evt_1"
    # Enabled again at a URL that answers, it starts over with the event it could not deliver.
    with receiving() as receiver:
        moved = webhooks.update_endpoint(rt, endpoint, shop, url=receiver.url)
        assert (moved["status"], moved["failures"]) == ("disabled", 0)
        assert webhooks.update_endpoint(rt, endpoint, shop, enabled=True)["retry_at"] is None
        assert webhooks.dispatch(rt) == [endpoint]
        assert webhooks.deliver(rt, endpoint).count("delivered") == 1
        assert receiver.ids() == ["evt_1"]


def test_a_tenant_never_receives_another_tenants_events(rt: Runtime) -> None:
    alice, bob = marketplace(rt, "alice"), marketplace(rt, "bob")
    with receiving() as alice_rx, receiving() as bob_rx:
        alice_ep, alice_secret = _endpoint(rt, alice, alice_rx.url)
        bob_ep, bob_secret = _endpoint(rt, bob, bob_rx.url)
        emit(rt, alice, "payout.created", "payout.batched")
        emit(rt, bob, "payout.finalized")
        emit(rt, alice, "payout.finalized")
        for endpoint in webhooks.dispatch(rt):
            webhooks.deliver(rt, endpoint)
        alice_events = alice_rx.events(alice_secret)
        bob_events = bob_rx.events(bob_secret)
    assert [(e.seq, e.type) for e in alice_events] == [
        (1, "payout.created"),
        (2, "payout.batched"),
        (3, "payout.finalized"),
    ]
    assert [(e.seq, e.type) for e in bob_events] == [(1, "payout.finalized")]
    assert not {e.id for e in alice_events} & {e.id for e in bob_events}
    # Another tenant's endpoint, event or attempts are not found.
    with pytest.raises(Exception, match="no webhook endpoint"):
        webhooks.get_endpoint(rt, bob_ep, alice)
    with pytest.raises(Exception, match="no event"):
        webhooks.redeliver(rt, alice_ep, alice, event_id=bob_events[0].id, actor="alice")
    with pytest.raises(Exception, match="no webhook endpoint"):
        webhooks.list_attempts(rt, alice_ep, bob)


def test_a_rotated_secret_overlaps_then_only_the_new_one_signs(
    committed_ledger_runtime: Runtime,
) -> None:
    rt = fast(committed_ledger_runtime, webhook_secret_overlap_seconds=1.5)
    shop = marketplace(rt, "shop")
    with receiving() as receiver:
        endpoint, old = _endpoint(rt, shop, receiver.url)
        new = webhooks.rotate_secret(rt, endpoint, shop)["secret"]
        assert new != old
        assert new.startswith("whsec_")
        emit(rt, shop, "payout.created")
        webhooks.dispatch(rt)
        webhooks.deliver(rt, endpoint)
        during = receiver.received()[-1]
        assert len(during.headers["webhook-signature"].split()) == 2
        assert during.verify(old).seq == during.verify(new).seq == 1
        wait_until(
            lambda: scalar(rt, "SELECT count(*) = 0 FROM webhook_secrets WHERE expires_at > now()"),
            timeout=5,
            what="the overlap to end",
        )
        emit(rt, shop, "payout.batched")
        webhooks.dispatch(rt)
        webhooks.deliver(rt, endpoint)
        after = receiver.received()[-1]
    assert len(after.headers["webhook-signature"].split()) == 1
    assert after.verify(new).seq == 2
    with pytest.raises(WebhookVerificationError):
        after.verify(old)


def test_private_addresses_are_refused_at_registration_and_at_delivery(
    committed_ledger_runtime: Runtime,
) -> None:
    allowed = fast(committed_ledger_runtime)
    strict = fast(committed_ledger_runtime, webhook_allow_private_addresses=False)
    shop = marketplace(allowed, "shop")
    for url in ("http://127.0.0.1:8080/x", "http://localhost/x", "http://10.0.0.8/x"):
        with pytest.raises(InvalidInput) as refused:
            webhooks.create_endpoint(strict, shop, url, [])
        assert refused.value.code == "address_not_allowed"
    with receiving() as receiver:
        # Registered while allowed (or a name that resolves inside later): refused when sent.
        endpoint, _ = _endpoint(allowed, shop, receiver.url)
        emit(strict, shop, "payout.created")
        webhooks.dispatch(strict)
        assert [s.result for s in webhooks.deliver(strict, endpoint).steps] == ["retry"]
        assert receiver.received() == []
    attempts, _ = webhooks.list_attempts(strict, endpoint, shop)
    assert attempts[0]["error"].startswith("address not allowed")


def test_redeliver_one_event_or_all_after_a_seq_and_dry_run_keeps_nothing(rt: Runtime) -> None:
    shop = marketplace(rt, "shop")
    with receiving() as receiver:
        endpoint, secret = _endpoint(rt, shop, receiver.url)
        emit(rt, shop, *PAYOUT_TYPES)
        webhooks.dispatch(rt)
        webhooks.deliver(rt, endpoint)
        dry = webhooks.redeliver(rt, endpoint, shop, after_seq=1, dry_run=True, actor="shop")
        assert dry["events"] == 2
        assert [e["seq"] for e in dry["first"]] == [2, 3]
        assert scalar(rt, "SELECT count(*) FROM webhook_redeliveries") == 0
        assert webhooks.dispatch(rt) == []
        one = webhooks.redeliver(rt, endpoint, shop, event_id="evt_1", actor="shop")
        assert one["first"] == [{"id": "evt_1", "seq": 1, "type": "payout.created"}]
        webhooks.redeliver(rt, endpoint, shop, after_seq=1, actor="shop")
        assert webhooks.dispatch(rt) == [endpoint]
        webhooks.deliver(rt, endpoint)
        seqs = [e.seq for e in receiver.events(secret)]
    assert seqs == [1, 2, 3, 1, 2, 3]  # the one event first, then everything after 1
    assert webhooks.get_endpoint(rt, endpoint, shop)["delivered_seq"] == 3


def test_http_is_refused_unless_allowed(committed_ledger_runtime: Runtime) -> None:
    rt = fast(committed_ledger_runtime, webhook_allow_http=False)
    shop = marketplace(rt, "shop")
    with pytest.raises(InvalidInput) as refused:
        webhooks.create_endpoint(rt, shop, "http://hooks.example.com/x", [])
    assert refused.value.code == "insecure_url"
    created = webhooks.create_endpoint(rt, shop, "https://hooks.example.com/x", [])
    assert created["url"] == "https://hooks.example.com/x"
    with rt.uow() as session:
        assert session.execute(text("SELECT count(*) FROM webhook_secrets")).scalar() == 1


def test_an_attempt_keeps_the_start_of_any_answer(rt: Runtime) -> None:
    """A receiver's answer is kept as text PostgreSQL can hold (no NUL), its first 500
    characters: whatever a receiver sends back cannot stop its own deliveries."""
    shop = marketplace(rt, "shop")
    answers = iter([(500, {})])
    noisy = Receiver(answer=lambda _: next(answers, (200, {})), payload=b"oops\x00" * 400)
    with receiving(noisy) as receiver:
        endpoint, _ = _endpoint(rt, shop, receiver.url)
        emit(rt, shop, "payout.created")
        webhooks.dispatch(rt)
        assert [s.status for s in webhooks.deliver(rt, endpoint).steps] == [500]
        wait_until(lambda: webhooks.dispatch(rt), timeout=10, what="the retry to be due")
        assert [s.status for s in webhooks.deliver(rt, endpoint).steps] == [200, None]  # idle
    attempts, _ = webhooks.list_attempts(rt, endpoint, shop)
    assert [a["status"] for a in attempts] == [200, 500]
    assert attempts[1]["response"] == "oops" * 125
    assert attempts[1]["latency_ms"] >= 0
