"""A small Python client for the payouts HTTP API.

    from payouts.client import PayoutsClient

    with PayoutsClient("https://payouts.example", api_key) as client:
        receipt = client.record_earning("creator-42", 1_250_000, "USDC")

Every earning carries an idempotency key (generated when you do not give one) and a retry
resends the same key, so a timeout, a dropped connection or a 5xx can be retried without ever
crediting twice. Errors are raised as ``PayoutsApiError`` subclasses chosen by the API's
stable error code.

What the API would refuse whatever its configuration is refused here before anything is sent,
as the same ``InvalidRequest`` (status 422, the API's code and field): a key that is not 1..255
visible ASCII characters, an ``int`` amount not above zero or past what a transfer can carry,
an ``occurred_at`` without a UTC offset from -12:00 to +14:00 or outside 2000-01-01T00:00Z to a
day from now, a payout address that is not hex or is the zero address or a precompile. Amounts
given as strings, assets and each asset's ceiling are the server's to check.

A webhook receiver checks each delivery with ``verify_webhook`` (the Standard Webhooks
signature and timestamp) and gets a typed ``WebhookEvent``; its ``id`` (the ``webhook-id``)
is the same on every retry and redelivery, so deduplicate by it, and order by ``seq``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from standardwebhooks import Webhook
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

MAX_BATCH = 10_000
MAX_KEY_LENGTH = 255
MAX_AMOUNT = 2**96 - 1  # what one transfer of the batcher carries; each asset's ceiling is lower
EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)
MAX_AHEAD = timedelta(days=1)
_KEY = re.compile(f"[!-~]{{1,{MAX_KEY_LENGTH}}}")
_ADDRESS = re.compile("0x[0-9a-fA-F]{40}")


class PayoutsApiError(Exception):
    """The API refused a request; ``code`` is the machine-readable reason."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" ({field})" if field else ""))
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.errors = errors or []


class AuthenticationError(PayoutsApiError):
    """The API key is missing, unknown, or not allowed here."""


class InvalidRequest(PayoutsApiError):
    """Bad input; ``errors`` lists every bad field (``earnings[3].amount``)."""


class NotFoundError(PayoutsApiError):
    pass


class IdempotencyKeyReused(PayoutsApiError):
    """The key was used before with a different body; nothing was recorded."""


class RequestInFlight(PayoutsApiError):
    """The first request with this key has not finished; retried automatically."""


class ServerError(PayoutsApiError):
    """The API failed or is unavailable; retried automatically."""


class ApiUnreachable(PayoutsApiError):
    """No answer after every retry (connection refused, reset or timed out)."""


def error_for(status: int, body: Any) -> PayoutsApiError:
    error = body.get("error", {}) if isinstance(body, dict) else {}
    code = str(error.get("code") or f"http_{status}")
    message = str(error.get("message") or "no message")
    cls: type[PayoutsApiError]
    if code == "idempotency_key_reused":
        cls = IdempotencyKeyReused
    elif code == "idempotency_key_in_flight":
        cls = RequestInFlight
    elif status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = NotFoundError
    elif status >= 500:
        cls = ServerError
    else:
        cls = InvalidRequest
    return cls(status, code, message, error.get("field"), error.get("errors"))


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, ServerError | RequestInFlight) or (
        isinstance(exc, PayoutsApiError) and exc.status == 429
    )


@dataclass(frozen=True)
class EarningReceipt:
    id: int
    idempotency_key: str
    creator_id: str
    amount: int
    asset: str
    status: str
    replayed: bool
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class BatchReceipt:
    created: int
    replayed: int
    ids: list[int]  # in the order the earnings were given
    keys: list[str]


# A problem found before sending: the field's name, the API's code, a message.
_Problem = tuple[str, str, str]


def _amount(value: int | str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError("amount must be an int (or str) of base units, never a float")
    return str(value)


def _amount_problem(value: int | str) -> _Problem | None:
    if isinstance(value, int) and value <= 0:
        return ("amount", "invalid_amount", "amount must be greater than zero")
    if isinstance(value, int) and value > MAX_AMOUNT:
        return ("amount", "amount_too_large", f"amount must be at most {MAX_AMOUNT}")
    return None


def _occurred_at_problem(value: datetime | str | None) -> _Problem | None:
    if not isinstance(value, datetime):
        return None
    offset = value.utcoffset()
    if offset is None:
        return ("occurred_at", "invalid_occurred_at", "occurred_at must carry a UTC offset")
    if not timedelta(hours=-12) <= offset <= timedelta(hours=14) or offset % timedelta(minutes=1):
        return (
            "occurred_at",
            "invalid_occurred_at",
            "occurred_at must have a UTC offset from -12:00 to +14:00 in whole minutes",
        )
    latest = datetime.now(UTC) + MAX_AHEAD
    if not 1999 <= value.year <= latest.year or not (
        EARLIEST_OCCURRED_AT <= value.astimezone(UTC) <= latest
    ):
        return (
            "occurred_at",
            "invalid_occurred_at",
            "occurred_at must be from 2000-01-01T00:00:00+00:00 to one day from now",
        )
    return None


def _key_problem(key: object, name: str) -> _Problem | None:
    if isinstance(key, str) and _KEY.fullmatch(key):
        return None
    return (
        name,
        "invalid_idempotency_key",
        f"idempotency key must be 1..{MAX_KEY_LENGTH} visible ASCII characters (0x21-0x7E)",
    )


def _refused(problems: list[tuple[int | None, _Problem]]) -> InvalidRequest:
    """What the API would have answered: the first problem, and every one in ``errors``."""
    errors: list[dict[str, Any]] = []
    for index, (name, code, message) in problems:
        where = name if index is None else f"earnings[{index}].{name}"
        error: dict[str, Any] = {"code": code, "field": where, "message": message}
        if index is not None:
            error["index"] = index
        errors.append(error)
    _, code, message = problems[0][1]
    return InvalidRequest(422, code, message, errors[0]["field"], errors)


def _earning_body(
    creator_id: str,
    amount: int | str,
    asset: str,
    occurred_at: datetime | str | None,
    reference: str | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"creator_id": creator_id, "amount": _amount(amount), "asset": asset}
    if occurred_at is not None:
        body["occurred_at"] = (
            occurred_at.isoformat() if isinstance(occurred_at, datetime) else occurred_at
        )
    if reference is not None:
        body["reference"] = reference
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return body


def _earning_problems(amount: int | str, occurred_at: datetime | str | None) -> list[_Problem]:
    found = [_amount_problem(amount), _occurred_at_problem(occurred_at)]
    return [p for p in found if p is not None]


# --- webhooks -----------------------------------------------------------------------------

WEBHOOK_TOLERANCE = timedelta(minutes=5)


class WebhookVerificationError(Exception):
    """A delivery that is not from us, was altered, or is too old or too new: answer 400."""


@dataclass(frozen=True)
class WebhookEvent:
    """One event as delivered (and as ``GET /v1/events`` lists it)."""

    id: str  # evt_..., the webhook-id: the same on every retry; deduplicate by it
    seq: int  # the marketplace's sequence number: order by it, drop what you have seen
    type: str  # payout.finalized, ...
    timestamp: datetime
    data: dict[str, Any]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> WebhookEvent:
        try:
            return cls(
                id=str(body["id"]),
                seq=int(body["seq"]),
                type=str(body["type"]),
                timestamp=datetime.fromisoformat(str(body["timestamp"])),
                data=dict(body["data"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WebhookVerificationError(f"not an event: {exc}") from exc


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing header {name}")


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: timedelta = WEBHOOK_TOLERANCE,
    now: datetime | None = None,
) -> WebhookEvent:
    """Check a delivery's Standard Webhooks signature (``webhook-signature``, any of its
    ``v1,`` entries made with ``secret``, the ``whsec_...`` the endpoint was given) and that
    its ``webhook-timestamp`` is within ``tolerance`` of now; return the event it carries.
    Raises ``WebhookVerificationError`` otherwise. Pass the body exactly as received."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    if not stamp.isascii() or not stamp.isdigit():
        raise WebhookVerificationError("webhook-timestamp is not a Unix time")
    sent_at = datetime.fromtimestamp(int(stamp[:12]), tz=UTC)
    if abs((now or datetime.now(UTC)) - sent_at) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old or too new")
    try:
        signer = Webhook(secret)
    except (ValueError, binascii.Error) as exc:
        raise WebhookVerificationError("the secret is not a whsec_ secret") from exc
    expected = base64.b64decode(signer.sign(msg_id, sent_at, text).split(",", 1)[1])
    for entry in _header(headers, "webhook-signature").split():
        version, _, signature = entry.partition(",")
        try:
            given = base64.b64decode(signature, validate=True)
        except binascii.Error:
            continue
        if version == "v1" and hmac.compare_digest(expected, given):
            break
    else:
        raise WebhookVerificationError("no signature matches the secret")
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise WebhookVerificationError("the body is not JSON") from exc
    event = WebhookEvent.from_json(parsed if isinstance(parsed, dict) else {})
    if event.id != msg_id:
        raise WebhookVerificationError("the body's id is not the webhook-id")
    return event


class PayoutsClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_attempts: int = 5,
        max_wait: float = 8.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "payouts-client/1"},
            timeout=timeout,
            transport=transport,
        )
        self._max_attempts = max_attempts
        self._max_wait = max_wait
        self.attempts = 0  # requests sent, retries included (for the curious and for tests)

    def __enter__(self) -> PayoutsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- earnings ---

    def record_earning(
        self,
        creator_id: str,
        amount: int | str,
        asset: str,
        *,
        idempotency_key: str | None = None,
        occurred_at: datetime | None = None,
        reference: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> EarningReceipt:
        key = idempotency_key or str(uuid.uuid4())
        body = _earning_body(creator_id, amount, asset, occurred_at, reference, metadata)
        problems = [_key_problem(key, "Idempotency-Key"), *_earning_problems(amount, occurred_at)]
        if any(problems):
            raise _refused([(None, p) for p in problems if p is not None])
        response = self._request(
            "POST", "/v1/earnings", json=body, headers={"Idempotency-Key": key}
        )
        body = response.json()
        return EarningReceipt(
            id=body["id"],
            idempotency_key=body["idempotency_key"],
            creator_id=body["creator_id"],
            amount=int(body["amount"]),
            asset=body["asset"],
            status=body["status"],
            replayed=response.headers.get("Idempotent-Replayed") == "true",
            raw=body,
        )

    def record_earnings(self, earnings: Iterable[Mapping[str, Any]]) -> BatchReceipt:
        """Record many earnings, 10,000 per request; each mapping has ``creator_id``,
        ``amount``, ``asset`` and optionally ``idempotency_key`` (generated if absent),
        ``occurred_at``, ``reference``, ``metadata``."""
        items = []
        problems: list[tuple[int | None, _Problem]] = []
        for index, e in enumerate(earnings):
            body = _earning_body(
                e["creator_id"],
                e["amount"],
                e["asset"],
                e.get("occurred_at"),
                e.get("reference"),
                e.get("metadata"),
            )
            body["idempotency_key"] = e.get("idempotency_key") or str(uuid.uuid4())
            items.append(body)
            found = [
                _key_problem(body["idempotency_key"], "idempotency_key"),
                *_earning_problems(e["amount"], e.get("occurred_at")),
            ]
            problems.extend((index, p) for p in found if p is not None)
        if problems:
            raise _refused(problems)
        created = replayed = 0
        ids: list[int] = []
        for start in range(0, len(items), MAX_BATCH):
            chunk = items[start : start + MAX_BATCH]
            result = self._request("POST", "/v1/earnings/batch", json={"earnings": chunk}).json()
            created += result["created"]
            replayed += result["replayed"]
            ids.extend(r["id"] for r in result["results"])
        return BatchReceipt(created, replayed, ids, [i["idempotency_key"] for i in items])

    def earning(self, earning_id: int) -> dict[str, Any]:
        return self._json("GET", f"/v1/earnings/{earning_id}")

    # --- creators ---

    def set_payout_address(self, creator_id: str, payout_address: str) -> dict[str, Any]:
        """``payout_address`` all lowercase or EIP-55 checksummed; the zero address and the
        precompiles (up to 0x...ffff) cannot be paid."""
        if not (
            isinstance(payout_address, str)
            and _ADDRESS.fullmatch(payout_address)
            and int(payout_address, 16) > 0xFFFF
        ):
            raise _refused(
                [
                    (
                        None,
                        (
                            "payout_address",
                            "invalid_address",
                            "not a payable Ethereum address (0x and 40 hex digits, above"
                            " 0x...ffff)",
                        ),
                    )
                ]
            )
        return self._json(
            "PUT", f"/v1/creators/{_segment(creator_id)}", json={"payout_address": payout_address}
        )

    def balance(self, creator_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/creators/{_segment(creator_id)}/balance")

    def creator_claim(self, creator_id: str) -> dict[str, Any]:
        """The creator's current vouchers (``claims``), signed now: each one's ``calldata``
        claims everything left at its address when sent to the escrow by anyone."""
        return self._json("GET", f"/v1/creators/{_segment(creator_id)}/claim")

    def claim(self, creator_id: str, *, rpc_url: str, payer_key: str) -> list[str]:
        """Submit the creator's current vouchers to the escrow through the node at ``rpc_url``,
        the gas paid by ``payer_key`` (anyone may pay: the escrow pays the voucher's address).
        Only those that would pay something are sent; the transactions' hashes."""
        # Imported here: only a client that claims needs the chain's libraries.
        from pydantic import SecretStr

        from payouts.chain.client import ChainClient
        from payouts.chain.signer import LocalKeySigner
        from payouts.claims.relay import submit_vouchers

        vouchers = [c["voucher"] for c in self.creator_claim(creator_id)["claims"]]
        payer = LocalKeySigner(SecretStr(payer_key))
        return submit_vouchers(ChainClient(rpc_url), payer, vouchers)

    def set_settle_mode(self, creator_id: str, settle_mode: str) -> dict[str, Any]:
        """``push``, ``claim`` or ``auto`` (pushed when worth today's gas, else claimable)."""
        if settle_mode not in ("auto", "push", "claim"):
            raise _refused(
                [(None, ("settle_mode", "invalid_settle_mode", "one of auto, push, claim"))]
            )
        return self._json(
            "PUT",
            f"/v1/creators/{_segment(creator_id)}/settle-mode",
            json={"settle_mode": settle_mode},
        )

    # --- payouts ---

    def payout(self, payout_id: int) -> dict[str, Any]:
        return self._json("GET", f"/v1/payouts/{payout_id}")

    def payouts(
        self, creator_id: str | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Every payout, newest first, following the cursor page by page."""
        params: dict[str, Any] = {"limit": page_size}
        if creator_id is not None:
            params["creator_id"] = creator_id
        while True:
            page = self._json("GET", "/v1/payouts", params=params)
            yield from page["data"]
            if not page["has_more"]:
                return
            params["cursor"] = page["next_cursor"]

    # --- events and webhook endpoints ---

    def events(self, after: int = 0, page_size: int = 100) -> Iterator[WebhookEvent]:
        """Your events after sequence number ``after``, in order (``GET /v1/events``): how a
        receiver that was down catches up."""
        while True:
            page = self._json("GET", "/v1/events", params={"after": after, "limit": page_size})
            for item in page["data"]:
                event = WebhookEvent.from_json(item)
                after = event.seq
                yield event
            if not page.get("has_more") or not page["data"]:
                return

    def create_webhook_endpoint(self, url: str, event_types: Iterable[str] = ()) -> dict[str, Any]:
        """Register a receiver; the answer's ``secret`` is shown this once."""
        body = {"url": url, "event_types": list(event_types)}
        return self._json("POST", "/v1/webhooks/endpoints", json=body)

    def webhook_endpoints(self, page_size: int = 100) -> Iterator[dict[str, Any]]:
        yield from self._pages("/v1/webhooks/endpoints", {"limit": page_size})

    def webhook_endpoint(self, endpoint_id: int) -> dict[str, Any]:
        return self._json("GET", f"/v1/webhooks/endpoints/{endpoint_id}")

    def update_webhook_endpoint(
        self,
        endpoint_id: int,
        *,
        url: str | None = None,
        event_types: Iterable[str] | None = None,
        enabled: bool | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if url is not None:
            body["url"] = url
        if event_types is not None:
            body["event_types"] = list(event_types)
        if enabled is not None:
            body["enabled"] = enabled
        return self._json("PATCH", f"/v1/webhooks/endpoints/{endpoint_id}", json=body)

    def rotate_webhook_secret(self, endpoint_id: int) -> dict[str, Any]:
        """A new secret (``secret``, shown once); the old one signs too during the overlap."""
        return self._json("POST", f"/v1/webhooks/endpoints/{endpoint_id}/rotate-secret")

    def webhook_attempts(self, endpoint_id: int, page_size: int = 100) -> Iterator[dict[str, Any]]:
        path = f"/v1/webhooks/endpoints/{endpoint_id}/attempts"
        yield from self._pages(path, {"limit": page_size})

    def redeliver(
        self,
        endpoint_id: int,
        *,
        event_id: str | None = None,
        after_seq: int | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Send one event again, or every event after ``after_seq``; ``dry_run`` says what."""
        if (event_id is None) == (after_seq is None):
            raise TypeError("give event_id or after_seq")
        body: dict[str, Any] = {"dry_run": dry_run}
        body.update({"event_id": event_id} if event_id is not None else {"after_seq": after_seq})
        return self._json("POST", f"/v1/webhooks/endpoints/{endpoint_id}/redeliver", json=body)

    # --- plumbing ---

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while True:
            page = self._json("GET", path, params=params)
            yield from page["data"]
            if not page["has_more"]:
                return
            params = {**params, "cursor": page["next_cursor"]}

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = self._request(method, path, **kwargs).json()
        return body

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send, retrying transient failures with the very same request (same key)."""

        def give_up(state: RetryCallState) -> httpx.Response:
            assert state.outcome is not None
            exc = state.outcome.exception()
            if isinstance(exc, httpx.TransportError):
                raise ApiUnreachable(0, "unreachable", str(exc) or type(exc).__name__) from exc
            assert exc is not None
            raise exc

        retrying = Retrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_exponential_jitter(
                multiplier=0.1, max=self._max_wait, jitter=min(1.0, self._max_wait)
            ),
            retry=retry_if_exception(_transient),
            retry_error_callback=give_up,
            reraise=True,
        )
        response: httpx.Response = retrying(self._send, method, path, **kwargs)
        return response

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self.attempts += 1
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise error_for(response.status_code, body)
        return response


def _segment(value: str) -> str:
    return quote(value, safe="")
