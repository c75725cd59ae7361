"""Pushing one endpoint's events, in order, at least once.

One attempt is one transaction that holds the endpoint's row lock (``FOR NO KEY UPDATE SKIP
LOCKED``: one delivery per endpoint at a time, so its events go in sequence order; inserts
that reference the row, an attempt or a redelivery, are not blocked). Under the lock: the
redeliveries asked for are served first (one event; or everything after a sequence number, by
moving the cursor back), then the first wanted event after the cursor, skipping the
unwanted. The request is signed by every live secret (Standard Webhooks: ``webhook-id``,
``webhook-timestamp``, ``webhook-signature``) and sent; its attempt is written; the cursor
moves past the event only when the receiver answered 2xx. A worker killed mid-request takes
its transaction with it, lock and all, the cursor unmoved: the next delivery sends the same
event with the same ``webhook-id`` (the event's public id), and the receiver deduplicates.

Requests go only to addresses the operator allows: the name is resolved at every attempt and
the connection made to the address that was checked (the Host header and TLS name stay the
URL's), so a name that changes its answer (DNS rebinding) cannot steer a request inside.
Redirects are not followed; a slow receiver is cut off by the timeout.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import text
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from config.settings import Settings
from payouts import events
from payouts.exception_queue import record_exception
from payouts.notify import endpoints
from payouts.notify.decisions import (
    Failing,
    Outcome,
    address_allowed,
    after_attempt,
    outcome_of,
    retry_after_seconds,
    schedule_for,
)

RESPONSE_SNIPPET = 500  # characters of the receiver's answer kept with the attempt
_READ_AT_MOST = 4096  # bytes read of an answer at all
ENDPOINT_DISABLED = "webhook_endpoint_disabled"  # the operator's exception kind
SCAN = 500  # events looked at per attempt when skipping unwanted ones


@dataclass(frozen=True)
class Sent:
    """What came of one request: a status, or an error without one."""

    status: int | None
    error: str | None
    latency_ms: int
    response: str | None = None
    retry_after: str | None = None


Sender = Callable[[str, Mapping[str, str], bytes, Settings], Sent]


def sign(secrets: list[str], msg_id: str, at: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers: one ``v1,<sig>`` per live secret, space-separated."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets),
    }


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# Pooled clients of this process, by (pid, timeout, scheme, host name). Building a client costs
# about 50 ms (its TLS context), most of a delivery's time, and a pooled one keeps the
# connection to a receiver alive between its events. By host name, never only by address: a
# TLS connection is for the name it was opened with. By pid: a forked worker process builds
# its own rather than share its parent's sockets.
_CLIENTS: OrderedDict[tuple[int, float, str, str], httpx.Client] = OrderedDict()
_MAX_CLIENTS = 64


def _client(timeout: float, scheme: str, host: str) -> httpx.Client:
    key = (os.getpid(), timeout, scheme, host)
    client = _CLIENTS.get(key)
    if client is None:
        client = httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False
        )
        _CLIENTS[key] = client
        while len(_CLIENTS) > _MAX_CLIENTS:
            _, oldest = _CLIENTS.popitem(last=False)
            oldest.close()
    _CLIENTS.move_to_end(key)
    return client


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def send(url: str, headers: Mapping[str, str], body: bytes, settings: Settings) -> Sent:
    """POST ``body`` to ``url`` at an address that was checked, never following a redirect."""
    started = time.monotonic()
    parts = urlsplit(url)
    host, scheme = parts.hostname or "", parts.scheme
    if scheme != "https" and not (scheme == "http" and settings.webhook_allow_http):
        return Sent(None, f"scheme {scheme} not allowed", _elapsed_ms(started))
    port = parts.port or (443 if scheme == "https" else 80)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        return Sent(None, _text(f"cannot resolve {host}: {exc}"), _elapsed_ms(started))
    allow = settings.webhook_allow_private_addresses
    refused = [a for a in addresses if not address_allowed(a, allow)]
    if refused or not addresses:
        return Sent(
            None,
            f"address not allowed: {host} resolves to {', '.join(refused) or 'nothing'}",
            _elapsed_ms(started),
        )
    address = addresses[0]
    netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    target = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    request_headers = {
        **headers,
        "host": parts.netloc,
        "content-type": "application/json",
        "user-agent": "payouts-webhooks/1",
    }
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    try:
        client = _client(settings.webhook_timeout_seconds, scheme, host)
        with client.stream(
            "POST", target, content=body, headers=request_headers, extensions=extensions
        ) as response:
            answer = b""
            deadline = started + settings.webhook_timeout_seconds
            for chunk in response.iter_bytes():
                answer += chunk
                # Enough to show, and no receiver keeps a worker by trickling its answer.
                if len(answer) >= _READ_AT_MOST or time.monotonic() > deadline:
                    break
            return Sent(
                response.status_code,
                None,
                _elapsed_ms(started),
                _text(answer.decode("utf-8", "replace")),
                response.headers.get("retry-after"),
            )
    except httpx.TimeoutException as exc:
        return Sent(None, f"timeout: {type(exc).__name__}", _elapsed_ms(started))
    except httpx.HTTPError as exc:
        return Sent(None, _text(f"{type(exc).__name__}: {exc}"), _elapsed_ms(started))


def _text(value: str) -> str:
    """What PostgreSQL text can keep of a receiver's answer: no NUL, the first characters."""
    return value.replace("\x00", "")[:RESPONSE_SNIPPET]


# --- one attempt ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """What one attempt did: ``idle`` (nothing due, or another delivery holds the endpoint),
    ``skipped`` (moved the cursor over unwanted events only), or the attempt's outcome."""

    result: str
    event_id: int | None = None
    status: int | None = None


IDLE = Step("idle")


def _lock(session: Session, endpoint_id: int) -> Any:
    return session.execute(
        text(
            """
            SELECT id, marketplace_id, url, event_types, delivered_seq, failures, retry_at,
                   failing_since, now() AS now
              FROM webhook_endpoints WHERE id = :id AND enabled
               FOR NO KEY UPDATE SKIP LOCKED
            """
        ),
        {"id": endpoint_id},
    ).first()


def _rewind(session: Session, endpoint_id: int) -> bool:
    """Serve the after-sequence redeliveries: the cursor goes back, the head is tried now."""
    after = session.execute(
        text(
            """
            WITH served AS (
                UPDATE webhook_redeliveries SET done_at = now()
                 WHERE endpoint_id = :e AND after_seq IS NOT NULL AND done_at IS NULL
                RETURNING after_seq
            )
            SELECT min(after_seq) FROM served
            """
        ),
        {"e": endpoint_id},
    ).scalar()
    if after is None:
        return False
    session.execute(
        text(
            "UPDATE webhook_endpoints SET delivered_seq = least(delivered_seq, :after),"
            " failures = 0, retry_at = NULL WHERE id = :e"
        ),
        {"e": endpoint_id, "after": after},
    )
    return True


_EVENT = f"SELECT {events.EVENT_COLUMNS} FROM events"


def _head(session: Session, ep: Any) -> tuple[Any, int | None, int | None]:
    """The next event to send: (row, redelivery id, cursor to set first), row None when
    nothing is wanted (the cursor then moves over what was seen)."""
    redelivery = session.execute(
        text(
            f"""
            SELECT r.id AS redelivery_id, v.* FROM webhook_redeliveries r
              JOIN LATERAL ({_EVENT} WHERE id = r.event_id) v ON TRUE
             WHERE r.endpoint_id = :e AND r.done_at IS NULL AND r.event_id IS NOT NULL
             ORDER BY r.id LIMIT 1
            """
        ),
        {"e": ep.id},
    ).first()
    if redelivery is not None:
        return redelivery, int(redelivery.redelivery_id), None
    # One statement: what it sees of the numbered events is one snapshot, so the cursor
    # never skips an event numbered after the read. Only the first wanted event's payload is
    # read; the others of the scan are index entries and their type.
    wanted = list(ep.event_types)
    row = session.execute(
        text(
            f"""
            WITH seen AS (
                SELECT id, seq, type FROM events
                 WHERE marketplace_id = :m AND seq > :cursor ORDER BY seq LIMIT :n
            ), first AS (
                SELECT id FROM seen
                 WHERE cardinality(CAST(:types AS text[])) = 0
                    OR type = ANY(CAST(:types AS text[]))
                 ORDER BY seq LIMIT 1
            )
            SELECT (SELECT max(seq) FROM seen) AS seen_to, v.*
              FROM (SELECT 1) AS one
              LEFT JOIN first ON TRUE
              LEFT JOIN LATERAL ({_EVENT} WHERE id = first.id) v ON TRUE
            """
        ),
        # Every type wanted: the first event after the cursor is the one, no scan needed.
        {
            "m": ep.marketplace_id,
            "cursor": ep.delivered_seq,
            "n": SCAN if wanted else 1,
            "types": wanted,
        },
    ).one()
    if row.id is not None:
        return row, None, int(row.seq) - 1
    return None, None, None if row.seen_to is None else int(row.seen_to)


def _record(session: Session, endpoint_id: int, event_id: int, attempt: int, sent: Sent) -> None:
    session.execute(
        text(
            """
            INSERT INTO webhook_attempts
                (endpoint_id, event_id, attempt, status, error, latency_ms, response)
            VALUES (:e, :event, :attempt, :status, :error, :latency, :response)
            """
        ),
        {
            "e": endpoint_id,
            "event": event_id,
            "attempt": attempt,
            "status": sent.status,
            "error": sent.error,
            "latency": sent.latency_ms,
            "response": sent.response,
        },
    )


def _set(session: Session, endpoint_id: int, **columns: Any) -> None:
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    session.execute(
        text(f"UPDATE webhook_endpoints SET {assignments} WHERE id = :_id"),
        {"_id": endpoint_id, **columns},
    )


def attempt(
    session: Session, endpoint_id: int, settings: Settings, sender: Sender, *, last: bool
) -> Step:
    """One attempt at the endpoint's head event, in the caller's transaction (the caller
    commits). ``last``: the delivery stops after this one, so the endpoint may be handed out
    again (``dispatched_at`` cleared)."""
    ep = _lock(session, endpoint_id)
    if ep is None:
        return IDLE
    rewound = _rewind(session, endpoint_id)
    if rewound:
        ep = _lock(session, endpoint_id)
    row, redelivery_id, cursor = _head(session, ep)
    due = rewound or ep.retry_at is None or ep.retry_at <= ep.now
    if row is None or not due:
        if cursor is not None and row is None:
            _set(session, endpoint_id, delivered_seq=cursor)
        _set(session, endpoint_id, dispatched_at=None)
        return Step("skipped") if cursor is not None and row is None else IDLE
    if cursor is not None and cursor != ep.delivered_seq:
        _set(session, endpoint_id, delivered_seq=cursor)
    body = json.dumps(events.as_message(row), separators=(",", ":"), ensure_ascii=False)
    msg_id = events.public_id(int(row.id))
    headers = sign(endpoints.signing_secrets(session, endpoint_id), msg_id, datetime.now(UTC), body)
    sent = sender(ep.url, headers, body.encode(), settings)
    _record(session, endpoint_id, int(row.id), int(ep.failures) + 1, sent)
    now = datetime.now(UTC)
    decided = after_attempt(
        outcome_of(sent.status),
        Failing(int(ep.failures), ep.failing_since),
        now,
        schedule_for(settings),
        timedelta(seconds=settings.webhook_disable_after_seconds),
        retry_after_seconds(sent.retry_after, now, settings.webhook_retry_after_max_seconds),
    )
    # What the attempt changes of the endpoint, in one statement.
    changes: dict[str, Any] = {
        "failures": decided.failures,
        "retry_at": decided.retry_at,
        "failing_since": decided.failing_since,
    }
    if decided.outcome is Outcome.DELIVERED:
        if redelivery_id is None:
            changes["delivered_seq"] = int(row.seq)
        else:
            session.execute(
                text("UPDATE webhook_redeliveries SET done_at = now() WHERE id = :r"),
                {"r": redelivery_id},
            )
    if last or decided.outcome is not Outcome.DELIVERED:
        changes["dispatched_at"] = None
    _set(session, endpoint_id, **changes)
    if decided.disable_reason is not None:
        _disable(session, ep, decided.disable_reason, msg_id, sent)
    return Step(str(decided.outcome), int(row.id), sent.status)


def _disable(session: Session, ep: Any, reason: str, msg_id: str, sent: Sent) -> None:
    session.execute(
        text(
            "UPDATE webhook_endpoints SET enabled = false, disabled_reason = :reason,"
            " disabled_at = now(), retry_at = NULL WHERE id = :e"
        ),
        {"e": ep.id, "reason": reason},
    )
    record_exception(
        session,
        ENDPOINT_DISABLED,
        f"endpoint:{ep.id}:{datetime.now(UTC).isoformat()}",
        {
            "endpoint_id": ep.id,
            "marketplace_id": ep.marketplace_id,
            "url": ep.url,
            "reason": reason,
            "head_event": msg_id,
            "last_status": sent.status,
            "last_error": sent.error,
        },
    )
