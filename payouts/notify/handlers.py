"""Webhooks' handlers: what the API, the CLI and the delivery tasks call.

``marketplace_id`` None is an operator, who sees every endpoint; a marketplace sees only its
own, and another's endpoint is not found. ``dispatch`` (beat, every second or so) numbers the
events that are ready and names the endpoints with something due; ``deliver`` (the
``webhooks`` queue, one task per endpoint) sends their events in order, one attempt per unit
of work, up to a budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from payouts import events
from payouts.notify import delivery, endpoints
from payouts.notify.delivery import Sender, Step
from payouts.notify.endpoints import UrlRules
from payouts.runtime import Runtime


def url_rules(rt: Runtime) -> UrlRules:
    settings = rt.settings
    return UrlRules(settings.webhook_allow_http, settings.webhook_allow_private_addresses)


def create_endpoint(
    rt: Runtime, marketplace_id: int, url: str, event_types: list[str]
) -> dict[str, Any]:
    """A new endpoint; its secret is in the answer and never shown again."""
    url = url_rules(rt).check(url)
    with rt.uow() as session:
        endpoint_id, secret = endpoints.create(session, marketplace_id, url, event_types)
        session.commit()
        return {**endpoints.get(session, endpoint_id, marketplace_id), "secret": secret}


def list_endpoints(
    rt: Runtime, marketplace_id: int | None, *, before_id: int | None = None, limit: int = 50
) -> tuple[list[dict[str, Any]], int | None]:
    with rt.uow() as session:
        return endpoints.page(session, marketplace_id, before_id, limit)


def get_endpoint(rt: Runtime, endpoint_id: int, marketplace_id: int | None) -> dict[str, Any]:
    with rt.uow() as session:
        return endpoints.get(session, endpoint_id, marketplace_id)


def update_endpoint(
    rt: Runtime,
    endpoint_id: int,
    marketplace_id: int | None,
    *,
    url: str | None = None,
    event_types: list[str] | None = None,
    enabled: bool | None = None,
) -> dict[str, Any]:
    """Change the URL, the types wanted, or enable or disable; enabling or a new URL tries the
    head event at once. Waits for a delivery under way (at most its timeout)."""
    if url is not None:
        url = url_rules(rt).check(url)
    with rt.uow() as session:
        endpoints.lock(session, endpoint_id, marketplace_id)
        endpoints.update(session, endpoint_id, url=url, event_types=event_types, enabled=enabled)
        session.execute(
            text("UPDATE webhook_endpoints SET dispatched_at = NULL WHERE id = :e"),
            {"e": endpoint_id},
        )
        session.commit()
        return endpoints.get(session, endpoint_id, marketplace_id)


def rotate_secret(rt: Runtime, endpoint_id: int, marketplace_id: int | None) -> dict[str, Any]:
    """A new secret (in the answer, shown once); the old ones still sign for the overlap."""
    overlap = rt.settings.webhook_secret_overlap_seconds
    with rt.uow() as session:
        endpoints.get(session, endpoint_id, marketplace_id)
        secret = endpoints.rotate(session, endpoint_id, overlap)
        session.commit()
        return {
            **endpoints.get(session, endpoint_id, marketplace_id),
            "secret": secret,
            "previous_secrets_expire_in_seconds": overlap,
        }


def list_attempts(
    rt: Runtime,
    endpoint_id: int,
    marketplace_id: int | None,
    *,
    before_id: int | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int | None]:
    with rt.uow() as session:
        endpoints.get(session, endpoint_id, marketplace_id)
        return endpoints.attempts_page(session, endpoint_id, before_id, limit)


def redeliver(
    rt: Runtime,
    endpoint_id: int,
    marketplace_id: int | None,
    *,
    event_id: str | None = None,
    after_seq: int | None = None,
    dry_run: bool = False,
    actor: str,
) -> dict[str, Any]:
    """Send one event (``evt_..``) again, or every wanted event after ``after_seq``; with
    ``dry_run`` only say what would be sent. Events keep their ids, so a receiver that has
    them already sees duplicates it can drop."""
    if (event_id is None) == (after_seq is None):
        raise ValueError("name an event or a sequence number")
    with rt.uow() as session:
        endpoint = endpoints.get(session, endpoint_id, marketplace_id)
        owner = int(
            session.execute(
                text("SELECT marketplace_id FROM webhook_endpoints WHERE id = :e"),
                {"e": endpoint_id},
            ).scalar_one()
        )
        internal_id = None if event_id is None else endpoints.event_id_of(event_id)
        plan = endpoints.redelivery_plan(
            session, endpoint, owner, event_id=internal_id, after_seq=after_seq
        )
        if not dry_run:
            endpoints.lock(session, endpoint_id, marketplace_id)
            endpoints.request_redelivery(
                session, endpoint_id, event_id=internal_id, after_seq=after_seq, requested_by=actor
            )
            session.commit()
    return {"dry_run": dry_run, "endpoint_id": endpoint_id, **plan}


# --- delivery -------------------------------------------------------------------------------


def dispatch(rt: Runtime) -> list[int]:
    """Number the events that are ready, then take the endpoints with something due (an
    event after the cursor, or a redelivery asked for, and no retry pending) that no delivery
    holds: each is handed out once until its delivery is done or the lease has passed."""
    with rt.uow() as session:
        events.sequence(session)
        session.commit()
    with rt.uow() as session:
        ids = session.execute(
            text(
                """
                UPDATE webhook_endpoints SET dispatched_at = now()
                 WHERE id IN (
                    SELECT e.id FROM webhook_endpoints e
                      LEFT JOIN event_counters k ON k.marketplace_id = e.marketplace_id
                     WHERE e.enabled
                       AND (e.dispatched_at IS NULL
                            OR e.dispatched_at < now() - make_interval(secs => :lease))
                       AND (e.retry_at IS NULL OR e.retry_at <= now())
                       AND (coalesce(k.last_seq, 0) > e.delivered_seq
                            OR EXISTS (SELECT 1 FROM webhook_redeliveries r
                                        WHERE r.endpoint_id = e.id AND r.done_at IS NULL))
                     ORDER BY e.id LIMIT 1000
                       FOR NO KEY UPDATE OF e SKIP LOCKED)
                RETURNING id
                """
            ),
            {"lease": rt.settings.webhook_dispatch_lease_seconds},
        ).scalars()
        found = sorted(int(i) for i in ids)
        session.commit()
    return found


@dataclass
class DeliveryRun:
    endpoint_id: int
    steps: list[Step] = field(default_factory=list)
    # It stopped because its budget was spent, not because something failed or nothing was
    # left: the caller goes on at once rather than wait for the next dispatch.
    more: bool = False

    def count(self, result: str) -> int:
        return sum(1 for s in self.steps if s.result == result)


def deliver(rt: Runtime, endpoint_id: int, sender: Sender | None = None) -> DeliveryRun:
    """Send the endpoint's due events in order until one fails, nothing is due, or the
    budget is spent; each attempt commits on its own."""
    send = sender or delivery.send
    run = DeliveryRun(endpoint_id)
    budget = rt.settings.webhook_delivery_budget
    while len(run.steps) < budget:
        with rt.uow() as session:
            step = delivery.attempt(
                session, endpoint_id, rt.settings, send, last=len(run.steps) + 1 >= budget
            )
            session.commit()
        run.steps.append(step)
        if step.result not in ("delivered", "skipped"):
            break
    else:
        run.more = True
    return run
