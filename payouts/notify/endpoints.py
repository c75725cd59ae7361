"""Where a marketplace's events are pushed: endpoints, their signing secrets, their attempts
and the redeliveries asked of them.

An endpoint belongs to one marketplace; every read and write here takes the marketplace
(None: an operator's, who sees them all), so another marketplace's endpoint is simply not
found. A secret is made by the server (``whsec_`` + base64 of 32 random bytes) and shown once,
when it is made. A rotation makes a new secret and gives the live ones an end
(``expires_at = now + overlap``); until then deliveries carry a signature by each.

The cursor (``delivered_seq``) and the failure columns are written only by the delivery
(``payouts.notify.delivery``) under the endpoint's row lock.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.errors import IllegalTransition, InvalidInput, NotFound
from payouts.notify.decisions import address_allowed

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_BYTES = 32
MAX_URL = 2048
MAX_EVENT_TYPES = 50
# An event's public id (payouts.events.public_id).
EVENT_ID_PATTERN = "^evt_[1-9][0-9]{0,18}$"
MAX_ID = 2**63 - 1

# --- what an endpoint's URL may be (the OpenAPI pattern says the same) ----------------------

_LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PORT = ":(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_PATH_CHAR = "(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})"
_QUERY_CHAR = "(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})"


def _not_word(word: str, lo: int, hi: int) -> str:
    """Lowercase letters, ``lo``..``hi`` of them, except ``word`` (no look-around)."""
    n = len(word)
    shorter = f"[a-z]{{{lo},{n - 1}}}"
    longer = f"[a-z]{{{n + 1},{hi}}}"
    same = [
        f"{word[:i]}[{''.join(c for c in 'abcdefghijklmnopqrstuvwxyz' if c != word[i])}]"
        f"[a-z]{{{n - i - 1}}}"
        for i in range(n)
    ]
    return "(?:" + "|".join([shorter, longer, *same]) + ")"


# A name whose last label is letters and not "localhost": an IP literal never matches it.
_NAME = f"(?:{_LABEL}\\.)+{_not_word('localhost', 2, 63)}"
_LOCAL = f"localhost|(?:{_LABEL}\\.)+localhost|{_OCTET}(?:\\.{_OCTET}){{3}}"


def url_pattern(*, allow_http: bool, allow_private: bool) -> str:
    """The endpoint URLs registration accepts: https (or http where allowed), a host name
    (IPv4 literals and localhost only where private addresses are allowed), a port, a path
    and a query; no user, no fragment, lowercase host, at most ``MAX_URL`` characters."""
    scheme = "https?" if allow_http else "https"
    host = f"(?:{_NAME}|{_LOCAL})" if allow_private else _NAME
    return f"^{scheme}://{host}(?:{_PORT})?(?:/{_PATH_CHAR}*)?(?:\\?{_QUERY_CHAR}*)?$"


@dataclass(frozen=True)
class UrlRules:
    allow_http: bool
    allow_private: bool

    def check(self, url: str) -> str:
        """The URL as given, or InvalidInput saying what is wrong with it."""
        if len(url) > MAX_URL:
            raise InvalidInput(
                f"url must be at most {MAX_URL} characters", field="url", code="invalid_url"
            )
        pattern = url_pattern(allow_http=self.allow_http, allow_private=self.allow_private)
        if re.fullmatch(pattern, url):
            return url
        if not self.allow_http and url.startswith("http://"):
            raise InvalidInput("url must be https", field="url", code="insecure_url")
        host = urlsplit(url).hostname if re.match("^https?://", url) else None
        if host is not None and not self.allow_private and _local(host):
            raise InvalidInput(
                f"url names a loopback or private address ({host}); only public receivers"
                " are allowed",
                field="url",
                code="address_not_allowed",
            )
        raise InvalidInput(
            "url must be https://host[:port][/path][?query] with a lowercase host name",
            field="url",
            code="invalid_url",
        )


def _local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    return not address_allowed(host.strip("[]"), allow_private=False) and _is_ip(host)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


# --- rows --------------------------------------------------------------------------------------

_ENDPOINT = """
    SELECT e.id, e.marketplace_id, m.name AS marketplace, e.url, e.event_types, e.enabled,
           e.disabled_reason, e.disabled_at, e.delivered_seq, e.failures, e.retry_at,
           e.failing_since, e.created_at, coalesce(k.last_seq, 0) AS last_seq
      FROM webhook_endpoints e
      JOIN marketplaces m ON m.id = e.marketplace_id
      LEFT JOIN event_counters k ON k.marketplace_id = e.marketplace_id
"""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def endpoint_view(r: Any) -> dict[str, Any]:
    return {
        "id": int(r.id),
        "marketplace": r.marketplace,
        "url": r.url,
        "event_types": list(r.event_types),
        "status": "enabled" if r.enabled else "disabled",
        "disabled_reason": r.disabled_reason,
        "disabled_at": _iso(r.disabled_at),
        "delivered_seq": int(r.delivered_seq),
        "last_seq": int(r.last_seq),
        "failures": int(r.failures),
        "retry_at": _iso(r.retry_at),
        "failing_since": _iso(r.failing_since),
        "created_at": _iso(r.created_at),
    }


def _scope(marketplace_id: int | None) -> tuple[str, dict[str, Any]]:
    if marketplace_id is None:
        return "TRUE", {}
    return "e.marketplace_id = :m", {"m": marketplace_id}


def get(session: Session, endpoint_id: int, marketplace_id: int | None) -> dict[str, Any]:
    where, params = _scope(marketplace_id)
    row = session.execute(
        text(f"{_ENDPOINT} WHERE e.id = :id AND {where}"), {"id": endpoint_id, **params}
    ).first()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint_view(row)


def page(
    session: Session, marketplace_id: int | None, before_id: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Endpoints newest first, and the last id when there are more."""
    where, params = _scope(marketplace_id)
    rows = session.execute(
        text(
            f"{_ENDPOINT} WHERE {where} AND (CAST(:before AS bigint) IS NULL OR e.id < :before)"
            " ORDER BY e.id DESC LIMIT :limit"
        ),
        {**params, "before": before_id, "limit": limit + 1},
    ).all()
    views = [endpoint_view(r) for r in rows[:limit]]
    return views, (views[-1]["id"] if len(rows) > limit else None)


def create(
    session: Session, marketplace_id: int, url: str, event_types: list[str]
) -> tuple[int, str]:
    """A new endpoint and its first secret. Its cursor starts at the marketplace's newest
    event: an endpoint hears of what happens from now on (older events: redeliver or read
    ``/v1/events``)."""
    endpoint_id = session.execute(
        text(
            """
            INSERT INTO webhook_endpoints (marketplace_id, url, event_types, delivered_seq)
            VALUES (:m, :url, CAST(:types AS text[]),
                    coalesce((SELECT last_seq FROM event_counters WHERE marketplace_id = :m), 0))
            RETURNING id
            """
        ),
        {"m": marketplace_id, "url": url, "types": sorted(set(event_types))},
    ).scalar_one()
    secret = new_secret()
    _add_secret(session, int(endpoint_id), secret)
    return int(endpoint_id), secret


def _add_secret(session: Session, endpoint_id: int, secret: str) -> None:
    session.execute(
        text("INSERT INTO webhook_secrets (endpoint_id, secret) VALUES (:e, :s)"),
        {"e": endpoint_id, "s": secret},
    )


def lock(session: Session, endpoint_id: int, marketplace_id: int | None) -> None:
    """Wait for the endpoint's row (a delivery under way holds it at most its timeout)."""
    where, params = _scope(marketplace_id)
    found = session.execute(
        text(f"SELECT 1 FROM webhook_endpoints e WHERE e.id = :id AND {where} FOR NO KEY UPDATE"),
        {"id": endpoint_id, **params},
    ).first()
    if found is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")


def update(
    session: Session,
    endpoint_id: int,
    *,
    url: str | None = None,
    event_types: list[str] | None = None,
    enabled: bool | None = None,
) -> None:
    """Change the URL, the types wanted, or enable / disable. Enabling, or a new URL, clears
    the failures: the head event is tried at once."""
    session.execute(
        text(
            """
            UPDATE webhook_endpoints e SET
                url = coalesce(a.url, e.url),
                event_types = coalesce(a.types, e.event_types),
                enabled = coalesce(a.enable, e.enabled),
                disabled_reason = CASE WHEN a.enable IS NULL THEN e.disabled_reason
                                       WHEN a.enable THEN NULL ELSE a.reason END,
                disabled_at = CASE WHEN a.enable IS NULL THEN e.disabled_at
                                   WHEN a.enable THEN NULL
                                   ELSE coalesce(e.disabled_at, now()) END,
                failures = CASE WHEN a.fresh THEN 0 ELSE e.failures END,
                retry_at = CASE WHEN a.fresh THEN NULL ELSE e.retry_at END,
                failing_since = CASE WHEN a.fresh THEN NULL ELSE e.failing_since END
              FROM (SELECT CAST(:url AS text) AS url, CAST(:types AS text[]) AS types,
                           CAST(:enabled AS boolean) AS enable, CAST(:reason AS text) AS reason,
                           coalesce(CAST(:enabled AS boolean), CAST(:url AS text) IS NOT NULL)
                               AS fresh) a
             WHERE e.id = :id
            """
        ),
        {
            "id": endpoint_id,
            "url": url,
            "types": None if event_types is None else sorted(set(event_types)),
            "enabled": enabled,
            "reason": "disabled by request",
        },
    )


def rotate(session: Session, endpoint_id: int, overlap_seconds: float) -> str:
    """A new secret; the live ones keep signing for ``overlap_seconds`` more."""
    session.execute(
        text(
            """
            UPDATE webhook_secrets SET expires_at = now() + make_interval(secs => :overlap)
             WHERE endpoint_id = :e AND (expires_at IS NULL OR expires_at > now()
                                         + make_interval(secs => :overlap))
            """
        ),
        {"e": endpoint_id, "overlap": overlap_seconds},
    )
    secret = new_secret()
    _add_secret(session, endpoint_id, secret)
    return secret


def signing_secrets(session: Session, endpoint_id: int) -> list[str]:
    """The secrets that sign now, newest first."""
    rows = session.execute(
        text(
            "SELECT secret FROM webhook_secrets WHERE endpoint_id = :e"
            " AND (expires_at IS NULL OR expires_at > now()) ORDER BY id DESC"
        ),
        {"e": endpoint_id},
    ).scalars()
    return list(rows)


def attempts_page(
    session: Session, endpoint_id: int, before_id: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    rows = session.execute(
        text(
            """
            SELECT a.id, a.event_id, v.seq, v.type, a.attempt, a.status, a.error,
                   a.latency_ms, a.response, a.created_at
              FROM webhook_attempts a JOIN events v ON v.id = a.event_id
             WHERE a.endpoint_id = :e
               AND (CAST(:before AS bigint) IS NULL OR a.id < :before)
             ORDER BY a.id DESC LIMIT :limit
            """
        ),
        {"e": endpoint_id, "before": before_id, "limit": limit + 1},
    ).all()
    views = [
        {
            "id": int(r.id),
            "event_id": f"evt_{r.event_id}",
            "seq": None if r.seq is None else int(r.seq),
            "type": r.type,
            "attempt": int(r.attempt),
            "status": r.status,
            "error": r.error,
            "latency_ms": int(r.latency_ms),
            "response": r.response,
            "created_at": _iso(r.created_at),
        }
        for r in rows[:limit]
    ]
    return views, (views[-1]["id"] if len(rows) > limit else None)


def event_id_of(public_id: str) -> int:
    """``evt_123`` -> 123; one that cannot be an event names nothing."""
    if not re.fullmatch(EVENT_ID_PATTERN, public_id) or int(public_id[4:]) > MAX_ID:
        raise NotFound(f"no event {public_id}")
    return int(public_id[4:])


def redelivery_plan(
    session: Session,
    endpoint: dict[str, Any],
    marketplace_id: int,
    *,
    event_id: int | None,
    after_seq: int | None,
    limit: int = 100,
) -> dict[str, Any]:
    """What a redelivery would send: the event, or the wanted events after ``after_seq``
    (the first ``limit`` listed, all counted)."""
    types = endpoint["event_types"] or None
    if event_id is not None:
        row = session.execute(
            text(
                "SELECT id, seq, type FROM events WHERE id = :id AND marketplace_id = :m"
                " AND seq IS NOT NULL"
            ),
            {"id": event_id, "m": marketplace_id},
        ).first()
        if row is None:
            raise NotFound(f"no event evt_{event_id}")
        if types is not None and row.type not in types:
            raise IllegalTransition(
                f"evt_{event_id} is a {row.type} event, which this endpoint does not take"
            )
        rows = [row]
        total = 1
    else:
        params = {"m": marketplace_id, "after": after_seq, "types": types}
        condition = (
            "marketplace_id = :m AND seq > :after"
            " AND (CAST(:types AS text[]) IS NULL OR type = ANY(CAST(:types AS text[])))"
        )
        total = int(
            session.execute(
                text(f"SELECT count(*) FROM events WHERE {condition}"), params
            ).scalar_one()
        )
        rows = list(
            session.execute(
                text(f"SELECT id, seq, type FROM events WHERE {condition} ORDER BY seq LIMIT :n"),
                {**params, "n": limit},
            ).all()
        )
    return {
        "events": total,
        "first": [{"id": f"evt_{r.id}", "seq": int(r.seq), "type": r.type} for r in rows],
    }


def request_redelivery(
    session: Session,
    endpoint_id: int,
    *,
    event_id: int | None,
    after_seq: int | None,
    requested_by: str,
) -> None:
    """Queue the redelivery (the delivery serves it before the cursor) and make the endpoint
    due now: a redelivery is asked for to be sent, not to wait out a retry. The caller holds
    the endpoint's row (``lock``)."""
    session.execute(
        text(
            "INSERT INTO webhook_redeliveries (endpoint_id, event_id, after_seq, requested_by)"
            " VALUES (:e, :event, :after, :by)"
        ),
        {"e": endpoint_id, "event": event_id, "after": after_seq, "by": requested_by},
    )
    session.execute(
        text(
            "UPDATE webhook_endpoints SET failures = 0, retry_at = NULL, dispatched_at = NULL"
            " WHERE id = :e"
        ),
        {"e": endpoint_id},
    )
