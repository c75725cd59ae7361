"""Helpers for webhook tests: settings that deliver fast to loopback, marketplaces, events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from payouts import events
from payouts.catalog import create_marketplace
from payouts.runtime import Runtime
from tests.waiting import wait_until

# Retries in tenths of a second, no jitter, loopback allowed: what the tests run with.
FAST: dict[str, Any] = {
    "webhook_allow_http": True,
    "webhook_allow_private_addresses": True,
    "webhook_retry_delays_seconds": [0.2, 0.4, 0.6],
    "webhook_retry_jitter_percent": 0,
    "webhook_timeout_seconds": 3,
    "webhook_dispatch_interval_seconds": 0.3,
    "webhook_dispatch_lease_seconds": 3,
}


def fast(rt: Runtime, **overrides: Any) -> Runtime:
    """The same database, with the webhook settings of the tests."""
    return Runtime(rt.settings.model_copy(update={**FAST, **overrides}))


def marketplace(rt: Runtime, name: str) -> int:
    with rt.uow() as session:
        created = create_marketplace(session, name)
        session.commit()
    return created.id


def emit(rt: Runtime, marketplace_id: int, *types: str) -> None:
    """Write events of ``types`` (in that order) and wait until they are numbered (a call
    that finds another sequencer at work, a worker's dispatch, numbers nothing)."""
    with rt.uow() as session:
        for i, type_ in enumerate(types):
            events.emit(session, marketplace_id, type_, f"test:{i}", {"n": i, "type": type_})
        session.commit()

    def numbered() -> bool:
        with rt.uow() as session:
            events.sequence(session)
            session.commit()
            left = session.execute(text("SELECT count(*) FROM events WHERE seq IS NULL"))
            return left.scalar_one() == 0

    wait_until(numbered, timeout=60, interval=0.1, what="the events to be numbered")


def scalar(rt: Runtime, sql: str, **params: Any) -> Any:
    with rt.uow() as session:
        return session.execute(text(sql), params).scalar()
