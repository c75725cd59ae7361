"""The Python client's webhook side against ``payouts api`` in its own process: endpoints,
rotation, attempts, redelivery, the event feed; and ``verify_webhook`` on what a real
delivery carries."""

from __future__ import annotations

import pytest

from payouts.client import NotFoundError, PayoutsClient, WebhookEvent
from payouts.runtime import Runtime
from tests.api.test_client import client, served, shop  # noqa: F401 - fixtures
from tests.apikit import Tenant
from tests.webhookkit import emit


def test_endpoints_rotation_and_redelivery(
    client: PayoutsClient,  # noqa: F811
    shop: Tenant,  # noqa: F811
    served: Runtime,  # noqa: F811
) -> None:
    created = client.create_webhook_endpoint(
        "https://hooks.example.com/p", ["payout.finalized", "payout.failed"]
    )
    assert created["secret"].startswith("whsec_")
    endpoint = created["id"]
    assert [e["id"] for e in client.webhook_endpoints(page_size=1)] == [endpoint]
    assert client.webhook_endpoint(endpoint)["event_types"] == ["payout.failed", "payout.finalized"]
    changed = client.update_webhook_endpoint(endpoint, event_types=[], enabled=False)
    assert (changed["event_types"], changed["status"]) == ([], "disabled")
    rotated = client.rotate_webhook_secret(endpoint)
    assert rotated["secret"] != created["secret"]

    emit(served, shop.id, "payout.created", "payout.batched", "payout.finalized")
    feed = list(client.events(after=1, page_size=1))
    assert all(isinstance(e, WebhookEvent) for e in feed)
    assert [(e.seq, e.type) for e in feed] == [(2, "payout.batched"), (3, "payout.finalized")]
    plan = client.redeliver(endpoint, after_seq=0, dry_run=True)
    assert plan["events"] == 3
    assert client.redeliver(endpoint, event_id=feed[0].id)["first"][0]["seq"] == 2
    assert list(client.webhook_attempts(endpoint)) == []
    with pytest.raises(NotFoundError):
        client.webhook_endpoint(endpoint + 1)
    with pytest.raises(TypeError):
        client.redeliver(endpoint)
