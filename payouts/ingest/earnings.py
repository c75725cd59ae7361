"""Recording earnings: one or ten thousand credits in a few set-based statements.

An earning is idempotent on (marketplace, idempotency key). The same key with the same body
returns the first result (inside one request too: the second occurrence is a replay of the
first); with a different body it is an ``IdempotencyConflict`` and nothing of the request is
written. Each new credit posts Dr marketplace funding / Cr creator payable.

Every entry point holds the same bounds, checked here before anything is written: a key of 1
to 255 visible ASCII characters, an amount above zero and at most the asset's ceiling, a
configured asset, and an ``occurred_at`` with a real UTC offset between 2000-01-01T00:00Z and
one day after now.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from config.settings import AssetConfig
from payouts.catalog import ensure_creators
from payouts.errors import IdempotencyConflict, InvalidInput
from payouts.ledger.accounts import AccountKind, ensure_accounts

MAX_KEY_LENGTH = 255
# Visible ASCII only (0x21-0x7E): a key means the same bytes in a header and in a JSON body.
KEY_CHARACTERS = frozenset(chr(c) for c in range(0x21, 0x7F))
# When an earning can have happened: from 2000 to a day ahead of our clock (clocks drift,
# time zones differ), with a UTC offset some place on earth uses.
EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)
MAX_AHEAD = timedelta(days=1)
MIN_OFFSET = timedelta(hours=-12)
MAX_OFFSET = timedelta(hours=14)


@dataclass(frozen=True)
class Earning:
    idempotency_key: str
    creator_id: str  # the marketplace's id for the creator
    amount: int  # base units, already parsed by payouts.money.parse_amount
    asset: str
    occurred_at: datetime | None = None
    reference: str | None = None
    metadata: Mapping[str, Any] | None = field(default=None, hash=False)

    def request_hash(self) -> str:
        body = {
            "creator_id": self.creator_id,
            "amount": str(self.amount),
            "asset": self.asset,
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "reference": self.reference,
            "metadata": self.metadata,
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Recorded:
    credit_id: int
    idempotency_key: str
    replayed: bool
    state: str


def _field(count: int, index: int, name: str) -> str:
    """``amount`` for a single earning, ``earnings[3].amount`` inside a batch."""
    return f"earnings[{index}].{name}" if count > 1 else name


def valid_key(key: object) -> bool:
    return (
        isinstance(key, str)
        and 0 < len(key) <= MAX_KEY_LENGTH
        and all(c in KEY_CHARACTERS for c in key)
    )


def check_occurred_at(
    value: datetime, *, field: str = "occurred_at", now: datetime | None = None
) -> datetime:
    """``value`` if it names an instant from 2000 to a day ahead with a real UTC offset."""
    offset = value.utcoffset()
    if offset is None:
        raise InvalidInput(
            "occurred_at must carry a UTC offset", field=field, code="invalid_occurred_at"
        )
    if not MIN_OFFSET <= offset <= MAX_OFFSET or offset % timedelta(minutes=1):
        raise InvalidInput(
            "occurred_at must have a UTC offset from -12:00 to +14:00 in whole minutes",
            field=field,
            code="invalid_occurred_at",
        )
    latest = (now or datetime.now(UTC)) + MAX_AHEAD
    # Compared before converting: a year-1 or year-9999 time may not exist in UTC at all.
    if not 1999 <= value.year <= latest.year or not (
        EARLIEST_OCCURRED_AT <= value.astimezone(UTC) <= latest
    ):
        raise InvalidInput(
            f"occurred_at must be from {EARLIEST_OCCURRED_AT.isoformat()} to one day from now",
            field=field,
            code="invalid_occurred_at",
        )
    return value


def _validate(earnings: Sequence[Earning], ceilings: Mapping[str, int]) -> None:
    n = len(earnings)
    now = datetime.now(UTC)
    for index, e in enumerate(earnings):
        if not valid_key(e.idempotency_key):
            raise InvalidInput(
                f"idempotency key must be 1..{MAX_KEY_LENGTH} visible ASCII characters (0x21-0x7E)",
                field=_field(n, index, "idempotency_key"),
                code="invalid_idempotency_key",
            )
        if not e.creator_id or len(e.creator_id) > 255:
            raise InvalidInput(
                "creator_id must be 1..255 characters", field=_field(n, index, "creator_id")
            )
        if not isinstance(e.amount, int) or isinstance(e.amount, bool) or e.amount <= 0:
            raise InvalidInput(
                "amount must be a positive integer",
                field=_field(n, index, "amount"),
                code="invalid_amount",
            )
        if e.asset not in ceilings:
            raise InvalidInput(
                f"unknown asset {e.asset!r}", field=_field(n, index, "asset"), code="unknown_asset"
            )
        if e.amount > ceilings[e.asset]:
            raise InvalidInput(
                f"amount must be at most {ceilings[e.asset]} base units of {e.asset}",
                field=_field(n, index, "amount"),
                code="amount_too_large",
            )
        if e.occurred_at is not None:
            check_occurred_at(e.occurred_at, field=_field(n, index, "occurred_at"), now=now)


def _assets(session: Session) -> dict[str, tuple[int, int]]:
    """Every asset in the table: its id and the default ceiling its decimals give."""
    rows = session.execute(text("SELECT symbol, id, decimals FROM assets"))
    return {r.symbol: (r.id, AssetConfig.default_max_earning(r.decimals)) for r in rows}


def record_earnings(
    session: Session,
    marketplace_id: int,
    earnings: Sequence[Earning],
    *,
    limits: Mapping[str, int] | None = None,
) -> list[Recorded]:
    """Record earnings for one marketplace; the result is in the order of ``earnings``.

    ``limits`` are the configured assets and the largest earning each takes (``max_earning``);
    an asset outside them is unknown. Without them every asset in the table is known (the
    runtime adds the native one for gas) and takes up to its default ceiling.
    """
    if not earnings:
        return []
    assets = _assets(session)
    if limits is None:
        ceilings = {symbol: ceiling for symbol, (_, ceiling) in assets.items()}
    else:
        ceilings = {symbol: ceiling for symbol, ceiling in limits.items() if symbol in assets}
    _validate(earnings, ceilings)
    known_assets = {symbol: asset_id for symbol, (asset_id, _) in assets.items()}

    hashes = [e.request_hash() for e in earnings]
    first: dict[str, tuple[int, str]] = {}
    for index, (e, digest) in enumerate(zip(earnings, hashes, strict=True)):
        seen = first.setdefault(e.idempotency_key, (index, digest))
        if seen[1] != digest:
            raise IdempotencyConflict([e.idempotency_key])

    keys = list(first)
    existing = _existing(session, marketplace_id, keys)
    _raise_on_conflicts(existing, first)
    # Key order: two requests sharing keys then lock them in the same order (no deadlock).
    new_indexes = [i for k, (i, _) in sorted(first.items()) if k not in existing]
    inserted: set[int] = set()
    if new_indexes:
        inserted = _insert(
            session,
            marketplace_id,
            [earnings[i] for i in new_indexes],
            [hashes[i] for i in new_indexes],
            known_assets,
        )
        # A concurrent request may have won a key between our read and our insert.
        existing = _existing(session, marketplace_id, keys)
        _raise_on_conflicts(existing, first)
    # New is what this request's insert returned: a key another request inserted between our
    # read and our insert is a replay here, though it committed in the meantime. A key that
    # comes again later in this request is a replay of its first occurrence.
    results = []
    for index, e in enumerate(earnings):
        credit_id, _, state = existing[e.idempotency_key]
        created = credit_id in inserted and first[e.idempotency_key][0] == index
        results.append(Recorded(credit_id, e.idempotency_key, not created, state))
    return results


def accepted_event(
    marketplace_id: int, earnings: Sequence[Earning], recorded: Sequence[Recorded]
) -> tuple[int, str, str, dict[str, Any]] | None:
    """The ``earnings.accepted`` event of one request (marketplace, type, subject, payload),
    or None when the request recorded nothing new (a replay tells nobody anything)."""
    new = [(e, r) for e, r in zip(earnings, recorded, strict=True) if not r.replayed]
    if not new:
        return None
    totals: dict[str, int] = {}
    for e, _ in new:
        totals[e.asset] = totals.get(e.asset, 0) + e.amount
    one = new[0] if len(new) == 1 else None
    payload: dict[str, Any] = {
        "accepted": len(new),
        "replayed": len(recorded) - len(new),
        "totals": {asset: str(amount) for asset, amount in sorted(totals.items())},
        # Named when the request accepted one earning (every single POST /v1/earnings).
        "earning_id": one[1].credit_id if one else None,
        "creator_id": one[0].creator_id if one else None,
        "url": f"/v1/earnings/{one[1].credit_id}" if one else None,
    }
    first = min(r.credit_id for _, r in new)
    return (marketplace_id, "earnings.accepted", f"earnings:{first}", payload)


def _existing(
    session: Session, marketplace_id: int, keys: list[str]
) -> dict[str, tuple[int, str, str]]:
    rows = session.execute(
        text(
            """
            SELECT c.id, c.idempotency_key, c.request_hash, c.state FROM credits c
             WHERE c.marketplace_id = :m AND c.idempotency_key = ANY(:keys)
            """
        ),
        {"m": marketplace_id, "keys": keys},
    )
    return {r.idempotency_key: (r.id, r.request_hash, r.state) for r in rows}


def _raise_on_conflicts(
    existing: Mapping[str, tuple[int, str, str]], first: Mapping[str, tuple[int, str]]
) -> None:
    conflicts = [k for k, row in existing.items() if row[1] != first[k][1]]
    if conflicts:
        raise IdempotencyConflict(sorted(conflicts))


def _insert(
    session: Session,
    marketplace_id: int,
    earnings: Sequence[Earning],
    hashes: Sequence[str],
    known_assets: Mapping[str, int],
) -> set[int]:
    """Insert the credits whose keys nobody holds yet; returns the ids this call inserted."""
    creators = ensure_creators(session, marketplace_id, (e.creator_id for e in earnings))
    used_assets = {known_assets[e.asset] for e in earnings}
    ensure_accounts(
        session,
        [
            (AccountKind.CREATOR_PAYABLE, creators[e.creator_id], known_assets[e.asset])
            for e in earnings
        ]
        + [(AccountKind.MARKETPLACE_FUNDING, marketplace_id, a) for a in used_assets],
    )
    now = datetime.now(UTC).isoformat()
    # One JSON document instead of eight arrays: json.dumps runs in C, where adapting eight
    # Python lists element by element cost more than the insert itself.
    rows = json.dumps(
        [
            {
                "creator_id": creators[e.creator_id],
                "asset_id": known_assets[e.asset],
                "amount": str(e.amount),
                "key": e.idempotency_key,
                "hash": digest,
                "ref": e.reference,
                "meta": e.metadata,
                "occurred": e.occurred_at.isoformat() if e.occurred_at else now,
            }
            for e, digest in zip(earnings, hashes, strict=True)
        ],
        default=str,
    )
    params = {
        "m": marketplace_id,
        "cause": f"{len(earnings)} earnings from marketplace {marketplace_id}",
        "rows": rows,
    }
    # Savepoint: if every key was taken by a concurrent request, the journal would be empty
    # and would fail at commit; rolling back to here leaves no trace of it.
    with session.begin_nested() as savepoint:
        inserted = session.execute(
            text(
                """
                WITH journal AS (
                    INSERT INTO journals (kind, cause) VALUES ('earnings', :cause) RETURNING id
                ), new AS (
                    INSERT INTO credits (marketplace_id, creator_id, asset_id, amount,
                                         idempotency_key, request_hash, reference, metadata,
                                         occurred_at, journal_id)
                    SELECT :m, v.creator_id, v.asset_id, v.amount, v.key, v.hash, v.ref,
                           v.meta, v.occurred, (SELECT id FROM journal)
                      FROM json_to_recordset(CAST(:rows AS json))
                           AS v(creator_id bigint, asset_id bigint, amount numeric, key text,
                                hash text, ref text, meta jsonb, occurred timestamptz)
                    ON CONFLICT (marketplace_id, idempotency_key) DO NOTHING
                    RETURNING id, creator_id, asset_id, amount, journal_id
                ), payable AS (
                    INSERT INTO entries (journal_id, account_id, amount, credit_id)
                    SELECT new.journal_id, a.id, -new.amount, new.id
                      FROM new JOIN accounts a ON a.kind = 'creator_payable'
                       AND a.owner_id = new.creator_id AND a.asset_id = new.asset_id
                    RETURNING 1
                ), funding AS (
                    INSERT INTO entries (journal_id, account_id, amount)
                    SELECT new.journal_id, a.id, sum(new.amount)
                      FROM new JOIN accounts a ON a.kind = 'marketplace_funding'
                       AND a.owner_id = :m AND a.asset_id = new.asset_id
                     GROUP BY new.journal_id, a.id
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM new) AS credits,
                       (SELECT count(*) FROM payable) AS legs,
                       (SELECT array_agg(id) FROM new) AS ids
                """
            ),
            params,
        ).one()
        if inserted.credits == 0:
            savepoint.rollback()
            return set()
        if inserted.legs != inserted.credits:  # pragma: no cover - accounts ensured above
            raise RuntimeError("a credit found no payable account")
    return set(inserted.ids)
