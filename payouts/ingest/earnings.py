"""Recording earnings: one or ten thousand credits in a few set-based statements.

An earning is idempotent on (marketplace, idempotency key). The same key with the same body
returns the first result (inside one request too: the second occurrence is a replay of the
first); with a different body it is an ``IdempotencyConflict`` and nothing of the request is
written. Each new credit posts Dr marketplace funding / Cr creator payable.

Every entry point holds the same bounds, checked here before anything is written: a key of 1
to 255 visible ASCII characters, an amount above zero and at most the asset's ceiling, a
configured asset, and an ``occurred_at`` with a real UTC offset between 2000-01-01T00:00Z and
one day after now.

How a request is written: its earnings, one per key, are staged with COPY in a temporary
table; then one statement resolves each to its creator and accounts and writes the journal, the
credits (``ON CONFLICT DO NOTHING``) and the entries. When a creator or an account is missing
it writes nothing instead; then one anti-join upsert creates the creators the ledger lacks and
one more their payable accounts (and the marketplace's funding account), and the statement runs
again. Only the keys it did not insert are read back, and their request hashes compared: equal
is a replay, different a conflict, and a conflict rolls back everything the request wrote.

Request hashes are versioned, so a stored hash stays comparable: version 2 (``v2:`` and 60 hex
digits of BLAKE2b) covers a fixed tuple of the body's fields; rows recorded before it hold
version 1 (64 hex digits of SHA-256 over the body as canonical JSON), and an earning sent again
for one of them is hashed the old way to compare.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import psycopg
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from config.settings import AssetConfig
from payouts.errors import IdempotencyConflict, InvalidInput
from payouts.ingest import views
from payouts.states import CreditState

MAX_KEY_LENGTH = 255
# When an earning can have happened: from 2000 to a day ahead of our clock (clocks drift,
# time zones differ), with a UTC offset some place on earth uses.
EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)
MAX_AHEAD = timedelta(days=1)
MIN_OFFSET = timedelta(hours=-12)
MAX_OFFSET = timedelta(hours=14)
# Hex digits never hold a colon, so a version-1 hash never starts like this.
HASH_VERSION = "v2:"
_METADATA_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


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
        """Version 2: the body's fields in a fixed order with NUL between them (PostgreSQL text
        holds no NUL, so no field can forge a boundary); an optional field is empty when absent
        and follows ``=`` when present, so that None and "" differ."""
        occurred = "" if self.occurred_at is None else "=" + self.occurred_at.isoformat()
        reference = "" if self.reference is None else "=" + self.reference
        metadata = "" if self.metadata is None else "=" + _METADATA_JSON.encode(self.metadata)
        body = "\0".join(
            (self.creator_id, str(self.amount), self.asset, occurred, reference, metadata)
        )
        # surrogatepass: hashing never fails; PostgreSQL refuses such text when it is stored.
        digest = hashlib.blake2b(body.encode("utf-8", "surrogatepass"), digest_size=30)
        return HASH_VERSION + digest.hexdigest()

    def request_hash_v1(self) -> str:
        """The hash of rows recorded before version 2: SHA-256 of the body as canonical JSON."""
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

    def same_request(self, stored_hash: str) -> bool:
        """Whether a stored request hash, of either version, is this earning's."""
        if stored_hash.startswith(HASH_VERSION):
            return stored_hash == self.request_hash()
        return stored_hash == self.request_hash_v1()


class Recorded(NamedTuple):
    """A named tuple rather than a frozen dataclass: a request builds ten thousand of them,
    and a tuple is built several times faster."""

    credit_id: int
    idempotency_key: str
    replayed: bool
    # As recorded: a replay answers what the first request was told, as the API's body does.
    state: str


def _field(count: int, index: int, name: str) -> str:
    """``amount`` for a single earning, ``earnings[3].amount`` inside a batch."""
    return f"earnings[{index}].{name}" if count > 1 else name


def valid_key(key: object) -> bool:
    """Visible ASCII only (0x21-0x7E): a key means the same bytes in a header and a JSON body."""
    # Printable ASCII is 0x20-0x7E in every Unicode version; the space is not visible.
    return (
        isinstance(key, str)
        and 0 < len(key) <= MAX_KEY_LENGTH
        and key.isascii()
        and key.isprintable()
        and " " not in key
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
    now = datetime.now(UTC)
    for index, e in enumerate(earnings):
        # The common case in one expression; anything it does not pass (an occurred_at too)
        # goes through the checks that name the field.
        if (
            e.occurred_at is not None
            or type(e.amount) is not int
            or not 0 < e.amount <= ceilings.get(e.asset, 0)
            or not e.creator_id
            or len(e.creator_id) > 255
            or not valid_key(e.idempotency_key)
        ):
            _check(earnings, index, ceilings, now)


def _check(
    earnings: Sequence[Earning], index: int, ceilings: Mapping[str, int], now: datetime
) -> None:
    """Every bound on one earning, refused with the field it concerns."""
    n = len(earnings)
    e = earnings[index]
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
    asset_ids: Mapping[str, int] | None = None,
    bodies: dict[int, dict[str, Any]] | None = None,
) -> list[Recorded]:
    """Record earnings for one marketplace; the result is in the order of ``earnings``.

    ``limits`` are the configured assets and the largest earning each takes (``max_earning``);
    an asset outside them is unknown. Without them every asset in the table is known (the
    runtime adds the native one for gas) and takes up to its default ceiling. ``asset_ids``
    (the runtime's, by symbol) spares reading the assets table on every call. ``bodies``, when
    given, receives the API's body of each credit this call created, by id, as the insert
    returned its row (a replay's is read from the ledger by the caller): a single earning's
    response then costs no statement of its own.
    """
    if not earnings:
        return []
    if limits is None or asset_ids is None:
        assets = _assets(session)
        asset_ids = {symbol: asset_id for symbol, (asset_id, _) in assets.items()}
        if limits is None:
            limits = {symbol: ceiling for symbol, (_, ceiling) in assets.items()}
    ceilings = {symbol: ceiling for symbol, ceiling in limits.items() if symbol in asset_ids}
    _validate(earnings, ceilings)

    first: dict[str, tuple[int, str]] = {}
    for index, e in enumerate(earnings):
        digest = e.request_hash()
        seen = first.setdefault(e.idempotency_key, (index, digest))
        if seen[1] != digest:
            raise IdempotencyConflict([e.idempotency_key])
    # Key order, as the insert takes them: two requests sharing keys lock them in the same
    # order (no deadlock), and the new ids come back in it.
    keys = sorted(first)
    # Savepoint: a conflict found after the insert, or a request of replays only (its journal
    # would be empty and fail at commit), leaves no trace of it.
    unique = [earnings[first[k][0]] for k in keys]
    with session.begin_nested() as savepoint:
        _stage(session, unique, [first[k][1] for k in keys], asset_ids)
        returning = bodies is not None
        new = _insert(session, marketplace_id, len(keys), returning)
        if new is None:
            # Someone new: create what is missing, then the same insert, which finds it all.
            _ensure_creators_and_accounts(session, marketplace_id)
            new = _insert(session, marketplace_id, len(keys), returning)
        if new is None:  # pragma: no cover - the upserts above leave nothing missing
            raise RuntimeError("a staged earning found no creator or account to post to")
        earlier: dict[str, tuple[int, str]] = {}
        if len(new.ids) < len(keys):
            earlier = _read_back(session, marketplace_id, new.journal_id)
            sent = dict(zip(keys, unique, strict=True))
            conflicts = [k for k, (_, h) in earlier.items() if not sent[k].same_request(h)]
            if conflicts:
                raise IdempotencyConflict(sorted(conflicts))
        if not new.ids:
            savepoint.rollback()
    created = dict(zip((k for k in keys if k not in earlier), new.ids, strict=True))
    if bodies is not None:
        sent = dict(zip(keys, unique, strict=True))
        bodies.update(_bodies(new, [sent[k] for k in keys if k not in earlier]))
    accrued = str(CreditState.ACCRUED)
    results = []
    for index, e in enumerate(earnings):
        key = e.idempotency_key
        if key in created:
            results.append(Recorded(created[key], key, first[key][0] != index, accrued))
        else:
            results.append(Recorded(earlier[key][0], key, True, accrued))
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


# Text COPY into a temporary table: the fastest way in for many rows, and the app role may
# create one (TEMPORARY on the database). The table stays with the connection, emptied at each
# commit and before each use: creating and dropping it per request cost more than a small
# request's insert, and left the catalog a pair of dead rows per request.
_STAGE = """
    CREATE TEMPORARY TABLE IF NOT EXISTS earnings_stage (
        key text NOT NULL, creator text NOT NULL, asset_id bigint NOT NULL,
        amount numeric NOT NULL, hash text NOT NULL, ref text, meta jsonb, occurred timestamptz
    ) ON COMMIT DELETE ROWS;
    TRUNCATE earnings_stage
"""
_COPY = "COPY earnings_stage (key, creator, asset_id, amount, hash, ref, meta, occurred) FROM STDIN"


def _stage(
    session: Session,
    earnings: Sequence[Earning],
    hashes: Sequence[str],
    known_assets: Mapping[str, int],
) -> None:
    connection = session.connection().connection.driver_connection
    if not isinstance(connection, psycopg.Connection):  # pragma: no cover - psycopg URLs only
        raise TypeError("staging earnings needs a psycopg connection")
    try:
        with connection.cursor() as cursor:
            # Two statements in one round trip: without parameters psycopg sends them as one.
            cursor.execute(_STAGE)
            with cursor.copy(_COPY) as copy:
                write = copy.write_row
                for e, digest in zip(earnings, hashes, strict=True):
                    write(
                        (
                            e.idempotency_key,
                            e.creator_id,
                            known_assets[e.asset],
                            e.amount,
                            digest,
                            e.reference,
                            None if e.metadata is None else json.dumps(e.metadata, default=str),
                            e.occurred_at,
                        )
                    )
    except psycopg.Error as exc:
        # Past SQLAlchemy: mapped as its own errors are, so the unit of work maps it on.
        raise DBAPIError.instance(_COPY, None, exc, psycopg.Error) from exc


def _ensure_creators_and_accounts(session: Session, marketplace_id: int) -> None:
    """The creators the staged earnings name with their payable and carry accounts, and the
    marketplace's funding account, created where missing: one anti-join upsert each, in key
    order. The carry account (``creator_dust``) comes with the payable one, once in a
    creator's life, so the hourly roll-up does not create a hundred thousand of them."""
    session.execute(
        text(
            """
            INSERT INTO creators (marketplace_id, external_id)
            SELECT :m, n.creator FROM (
                SELECT DISTINCT s.creator FROM earnings_stage s
                 WHERE NOT EXISTS (SELECT FROM creators c
                                    WHERE c.marketplace_id = :m AND c.external_id = s.creator)
            ) n ORDER BY n.creator COLLATE "C"
            ON CONFLICT DO NOTHING
            """
        ),
        {"m": marketplace_id},
    )
    # A statement of its own: its snapshot sees the creators a concurrent request committed
    # while the one above waited for them.
    session.execute(
        text(
            """
            INSERT INTO accounts (kind, owner_id, asset_id)
            SELECT k.kind, n.owner_id, n.asset_id FROM (
                SELECT DISTINCT c.id AS owner_id, s.asset_id FROM earnings_stage s
                  JOIN creators c ON c.marketplace_id = :m AND c.external_id = s.creator
            ) n
            CROSS JOIN (VALUES ('creator_payable'), ('creator_dust')) k(kind)
             WHERE NOT EXISTS (SELECT FROM accounts a WHERE a.kind = 'creator_payable'
                                  AND a.owner_id = n.owner_id AND a.asset_id = n.asset_id)
            UNION ALL
            SELECT 'marketplace_funding', :m, n.asset_id FROM (
                SELECT DISTINCT s.asset_id FROM earnings_stage s
            ) n
             WHERE NOT EXISTS (SELECT FROM accounts a WHERE a.kind = 'marketplace_funding'
                                  AND a.owner_id = :m AND a.asset_id = n.asset_id)
            ORDER BY 1, 2, 3
            ON CONFLICT DO NOTHING
            """
        ),
        {"m": marketplace_id},
    )


@dataclass(frozen=True)
class _Inserted:
    journal_id: int
    ids: list[int]  # the credits inserted, in key order
    # As stored, in the same order, when asked for: what a replay will read back.
    occurred: list[datetime] = field(default_factory=list)
    metadata: list[Any] = field(default_factory=list)
    created_at: datetime | None = None


class _Stored(NamedTuple):
    """A created credit under the names ``views.earning_created`` reads."""

    id: int
    idempotency_key: str
    creator_id: str
    amount: int
    symbol: str
    occurred_at: datetime
    reference: str | None
    metadata: Any
    created_at: datetime | None


def _bodies(new: _Inserted, earnings: Sequence[Earning]) -> dict[int, dict[str, Any]]:
    """The created credits' bodies: the earning as sent, its times and metadata as stored."""
    return {
        credit_id: views.earning_created(
            _Stored(credit_id, e.idempotency_key, e.creator_id, e.amount, e.asset, occurred,
                    e.reference, metadata, new.created_at)
        )
        for credit_id, e, occurred, metadata in zip(
            new.ids, earnings, new.occurred, new.metadata, strict=True
        )
    }  # fmt: skip


_INSERT_SQL = """
            WITH resolved AS MATERIALIZED (
                SELECT s.key, s.hash, s.ref, s.meta, s.occurred, s.amount, s.asset_id,
                       c.id AS creator_id, a.id AS account_id, f.id AS funding_id
                  FROM earnings_stage s
                  LEFT JOIN creators c ON c.marketplace_id = :m AND c.external_id = s.creator
                  LEFT JOIN accounts a ON a.kind = 'creator_payable' AND a.owner_id = c.id
                   AND a.asset_id = s.asset_id
                  LEFT JOIN accounts f ON f.kind = 'marketplace_funding' AND f.owner_id = :m
                   AND f.asset_id = s.asset_id
            ), ready AS (
                SELECT NOT EXISTS (SELECT FROM resolved
                                    WHERE account_id IS NULL OR funding_id IS NULL) AS ok
            ), journal AS (
                INSERT INTO journals (kind, cause)
                SELECT 'earnings', :cause FROM ready WHERE ok
                RETURNING id
            ), new AS (
                INSERT INTO credits (marketplace_id, creator_id, asset_id, amount,
                                     idempotency_key, request_hash, reference, metadata,
                                     occurred_at, journal_id)
                SELECT :m, r.creator_id, r.asset_id, r.amount, r.key, r.hash, r.ref, r.meta,
                       coalesce(r.occurred, now()), j.id
                  FROM resolved r CROSS JOIN journal j
                 ORDER BY r.key COLLATE "C"
                ON CONFLICT (marketplace_id, idempotency_key) DO NOTHING
                RETURNING id, idempotency_key, amount, journal_id{returning}
            ), posted AS MATERIALIZED (
                SELECT new.id, new.idempotency_key, new.amount, new.journal_id, r.account_id,
                       r.funding_id
                  FROM new JOIN resolved r ON r.key = new.idempotency_key
            ), payable AS (
                INSERT INTO entries (journal_id, account_id, amount, credit_id)
                SELECT journal_id, account_id, -amount, id FROM posted
                RETURNING 1
            ), funding AS (
                INSERT INTO entries (journal_id, account_id, amount)
                SELECT journal_id, funding_id, sum(amount) FROM posted
                 GROUP BY journal_id, funding_id
                RETURNING 1
            )
            SELECT (SELECT ok FROM ready) AS ready,
                   (SELECT id FROM journal) AS journal_id,
                   (SELECT count(*) FROM payable) AS legs,
                   (SELECT count(*) FROM funding) AS funding,
                   (SELECT array_agg(id ORDER BY idempotency_key COLLATE "C")
                      FROM new) AS ids{select}
            """
# The rows' stored times and metadata too, for a caller that answers with them.
_INSERT = {
    False: _INSERT_SQL.format(returning="", select=""),
    True: _INSERT_SQL.format(
        returning=", occurred_at, metadata",
        select="""
                 , (SELECT array_agg(occurred_at ORDER BY idempotency_key COLLATE "C")
                      FROM new) AS occurred,
                   (SELECT array_agg(metadata ORDER BY idempotency_key COLLATE "C")
                      FROM new) AS metadata,
                   now() AS created_at""",
    ),
}


def _insert(
    session: Session, marketplace_id: int, staged: int, returning: bool
) -> _Inserted | None:
    """The journal, the credits whose keys nobody holds yet and their entries, in one
    statement; the ids come back in key order. None, and nothing written, when a staged
    earning names a creator or an account the ledger lacks: the common case, every creator
    known, then costs no statement to look for missing ones."""
    row = session.execute(
        text(_INSERT[returning]),
        {"m": marketplace_id, "cause": f"{staged} earnings from marketplace {marketplace_id}"},
    ).one()
    if not row.ready:
        return None
    ids = list(row.ids or [])
    if row.legs != len(ids) or (ids and not row.funding):  # pragma: no cover - checked above
        raise RuntimeError("a credit found no account to post to")
    if not returning:
        return _Inserted(row.journal_id, ids)
    return _Inserted(
        row.journal_id, ids, list(row.occurred or []), list(row.metadata or []), row.created_at
    )


def _read_back(
    session: Session, marketplace_id: int, journal_id: int
) -> dict[str, tuple[int, str]]:
    """The staged keys another request recorded, with their ids and request hashes. A
    statement of its own, so it also sees a key a concurrent request committed while the
    insert waited for it."""
    rows = session.execute(
        text(
            """
            SELECT s.key, c.id, c.request_hash FROM earnings_stage s
              JOIN credits c ON c.marketplace_id = :m AND c.idempotency_key = s.key
             WHERE c.journal_id <> :j
            """
        ),
        {"m": marketplace_id, "j": journal_id},
    )
    return {r.key: (r.id, r.request_hash) for r in rows}
