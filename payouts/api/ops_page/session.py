"""The ops page's login: the admin key once, then a signed session cookie.

The cookie holds no key: it is a random session id and a CSRF token, signed (itsdangerous)
with a secret derived from the admin key, so changing the key signs everyone out. It is
HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), scoped to
``/ops``, Secure over HTTPS, and expires after ``MAX_AGE_SECONDS``. Every POST must also carry
the session's CSRF token (a form field, or the ``X-CSRF-Token`` header htmx sends) and, when
the browser names one, an ``Origin`` of this very host.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from payouts.api.routes.common import runtime

COOKIE = "payouts_ops"
PATH = "/ops"
MAX_AGE_SECONDS = 8 * 3600
CSRF_HEADER = "x-csrf-token"


class LoginRequired(Exception):
    """No valid session: a page sends the browser to the login form."""


class Forbidden(Exception):
    """A POST without this session's CSRF token, or from another origin."""


@dataclass(frozen=True)
class OpsSession:
    sid: str
    csrf: str


def admin_key(request: Request) -> str | None:
    configured = runtime(request).settings.admin_api_key
    if configured is None or not configured.get_secret_value():
        return None
    return configured.get_secret_value()


def _signer(key: str) -> URLSafeTimedSerializer:
    secret = hmac.new(key.encode(), b"payouts ops page session", hashlib.sha256).hexdigest()
    return URLSafeTimedSerializer(secret, salt="ops-session")


def key_matches(request: Request, offered: str) -> bool:
    key = admin_key(request)
    return key is not None and hmac.compare_digest(offered.encode(), key.encode())


def start(request: Request, response: Response) -> None:
    """Sign a new session into the response's cookie (after the key was checked)."""
    key = admin_key(request)
    assert key is not None  # key_matches passed
    fresh = {"sid": secrets.token_urlsafe(16), "csrf": secrets.token_urlsafe(24)}
    value = _signer(key).dumps(fresh)
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE_SECONDS,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def end(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")


def current(request: Request) -> OpsSession:
    """FastAPI dependency: the signed-in session, or ``LoginRequired``."""
    key = admin_key(request)
    raw = request.cookies.get(COOKIE)
    if key is None or raw is None:
        raise LoginRequired
    try:
        data: dict[str, Any] = _signer(key).loads(raw, max_age=MAX_AGE_SECONDS)
    except BadSignature:
        raise LoginRequired from None
    return OpsSession(str(data["sid"]), str(data["csrf"]))


def same_origin(request: Request) -> None:
    """A browser names the page a POST came from; it must be this host (no CSRF from
    another site, even before a session exists, as on the login form)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("this form was posted from another site")


async def checked(request: Request) -> OpsSession:
    """FastAPI dependency of every POST behind the login: the session, its CSRF token sent
    back, and the same origin."""
    session = current(request)
    same_origin(request)
    offered = request.headers.get(CSRF_HEADER)
    if offered is None:
        form = await request.form()
        field = form.get("csrf")
        offered = field if isinstance(field, str) else None
    if offered is None or not hmac.compare_digest(offered.encode(), session.csrf.encode()):
        raise Forbidden("this form is out of date: reload the page")
    return session
