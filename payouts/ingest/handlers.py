"""Ingest handlers: earnings in, creators' payout addresses registered.

The API, the CLI, the demo and the benchmarks call these: open a unit of work, record, commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import catalog, events, holds
from payouts.catalog import ensure_marketplace
from payouts.errors import IdempotencyConflict, IdempotencyInFlight, InvalidInput, NotFound
from payouts.holds import ADDRESS_COOL_DOWN, NewHold
from payouts.ingest import views
from payouts.ingest.earnings import (
    Earning,
    Recorded,
    _validate,
    accepted_event,
    record_earnings,
)
from payouts.runtime import Runtime


def _ceilings(rt: Runtime) -> dict[str, int]:
    """The configured assets and the largest single earning each accepts: an asset the
    operator never configured (the native one, kept for gas) takes no earnings."""
    return {a.symbol: a.max_earning for a in rt.settings.assets}


def record(rt: Runtime, marketplace: str, earnings: Sequence[Earning]) -> list[Recorded]:
    rt.asset_ids()
    with rt.uow() as session:
        marketplace_id = ensure_marketplace(session, marketplace)
        results = _record_request(session, rt, marketplace_id, earnings)
        session.commit()
    return results


def record_for(rt: Runtime, marketplace_id: int, earnings: Sequence[Earning]) -> list[Recorded]:
    """Record a marketplace's earnings in one transaction: all of them or, on any error, none."""
    rt.asset_ids()
    with rt.uow() as session:
        results = _record_request(session, rt, marketplace_id, earnings)
        session.commit()
    return results


def _record_request(
    session: Session, rt: Runtime, marketplace_id: int, earnings: Sequence[Earning]
) -> list[Recorded]:
    """One request's earnings and its one ``earnings.accepted`` event (none for a replay)."""
    results = record_earnings(
        session, marketplace_id, earnings, limits=_ceilings(rt), asset_ids=rt.asset_ids()
    )
    accepted = accepted_event(marketplace_id, earnings, results)
    events.emit_many(session, [accepted] if accepted else [])
    return results


# Earnings per transaction of a bulk import: each a set-based request of the API's batch size.
IMPORT_CHUNK = 10_000


def refused_earnings(rt: Runtime, earnings: Sequence[Earning]) -> list[tuple[int, InvalidInput]]:
    """Every earning the ingest rules refuse, by index, and why: the rules every entry point
    holds (key, creator, amount, configured asset and its ceiling, occurred_at), and a key
    that comes again with another body. Reads nothing; records nothing."""
    ceilings = _ceilings(rt)
    refused: list[tuple[int, InvalidInput]] = []
    first: dict[str, tuple[int, str]] = {}
    for index, e in enumerate(earnings):
        try:
            _validate([e], ceilings)
        except InvalidInput as exc:
            refused.append((index, exc))
            continue
        _, digest = first.setdefault(e.idempotency_key, (index, e.request_hash()))
        if digest != e.request_hash():
            refused.append(
                (
                    index,
                    InvalidInput(
                        f"idempotency key {e.idempotency_key!r} came earlier in this import"
                        " with another body",
                        field="idempotency_key",
                        code="idempotency_key_reused",
                    ),
                )
            )
    return refused


@dataclass
class ImportSummary:
    created: int = 0
    replayed: int = 0
    chunks: int = 0
    totals: dict[str, int] = field(default_factory=dict)  # what was new, per asset


def import_earnings(
    rt: Runtime,
    marketplace_id: int,
    earnings: Sequence[Earning],
    *,
    chunk: int = IMPORT_CHUNK,
    on_chunk: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Record many earnings in chunks, each one transaction of a few set-based statements
    (``record_for``) with its own ``earnings.accepted`` event. Idempotent: an earning already
    recorded with the same body is a replay, so an import that stopped half-way is simply
    run again. Check ``refused_earnings`` first; a chunk the database still refuses (a key
    recorded earlier with another body) raises, and the chunks before it stay recorded."""
    summary = ImportSummary()
    for start in range(0, len(earnings), chunk):
        part = earnings[start : start + chunk]
        recorded = record_for(rt, marketplace_id, part)
        for e, r in zip(part, recorded, strict=True):
            if r.replayed:
                summary.replayed += 1
            else:
                summary.created += 1
                summary.totals[e.asset] = summary.totals.get(e.asset, 0) + e.amount
        summary.chunks += 1
        if on_chunk is not None:
            on_chunk(len(part))
    return summary


# What one request of ``record_each`` gets: the body of its first response and whether this
# was a replay, or the error that is its alone.
Outcome = tuple[dict[str, object], bool] | Exception


def record_each(rt: Runtime, requests: Sequence[tuple[int, Earning]]) -> list[Outcome]:
    """Record independent single-earning requests (any marketplaces) in one transaction.

    This is group commit: the API gathers the single earnings that arrive while the previous
    transaction is committing and records them together, so each costs a share of one commit
    instead of a commit of its own. The requests stay independent: a key still in flight or
    reused with another body refuses that request only. Should the transaction fail as a
    whole, each request is retried in a transaction of its own, so one bad request cannot
    fail the others.
    """
    rt.asset_ids()
    try:
        return _record_together(rt, requests)
    except Exception:
        if len(requests) == 1:
            raise
        outcomes: list[Outcome] = []
        for request in requests:
            try:
                outcomes.extend(_record_together(rt, [request]))
            except Exception as exc:  # noqa: BLE001 - it is that request's answer
                outcomes.append(exc)
        return outcomes


def _record_together(rt: Runtime, requests: Sequence[tuple[int, Earning]]) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(requests)
    emitted: list[tuple[int, str, str, dict[str, Any]]] = []
    with rt.uow() as session:
        # A transaction-scoped advisory lock per key marks it in flight until this commits;
        # a second request with the same key meanwhile is refused rather than queued. The lock
        # dies with the transaction, so a crashed request never leaves a key stuck.
        refused = session.execute(
            text(
                """
                SELECT i FROM unnest(CAST(:keys AS text[]), CAST(:ms AS bigint[]))
                              WITH ORDINALITY AS t(k, m, i)
                 WHERE NOT pg_try_advisory_xact_lock(hashtextextended(k, m))
                """
            ),
            {
                "keys": [e.idempotency_key for _, e in requests],
                "ms": [m for m, _ in requests],
            },
        ).scalars()
        for i in refused:
            outcomes[i - 1] = IdempotencyInFlight(requests[i - 1][1].idempotency_key)
        by_marketplace: dict[int, list[int]] = {}
        for index, (m, _) in enumerate(requests):
            if outcomes[index] is None:
                by_marketplace.setdefault(m, []).append(index)
        for m, indexes in by_marketplace.items():
            recorded: list[Recorded] = []
            bodies: dict[int, dict[str, Any]] = {}
            while indexes:
                try:
                    # Its own savepoint rolls back whatever a refused attempt wrote.
                    recorded = record_earnings(
                        session,
                        m,
                        [requests[i][1] for i in indexes],
                        limits=_ceilings(rt),
                        asset_ids=rt.asset_ids(),
                        bodies=bodies,
                    )
                    break
                except IdempotencyConflict as exc:
                    reused = set(exc.keys)
                    for i in indexes:
                        key = requests[i][1].idempotency_key
                        if key in reused:
                            outcomes[i] = IdempotencyConflict([key])
                    indexes = [i for i in indexes if requests[i][1].idempotency_key not in reused]
            replayed = [r.credit_id for r in recorded if r.credit_id not in bodies]
            if replayed:
                bodies.update(views.earnings_created(session, m, replayed))
            for i, r in zip(indexes, recorded, strict=True):
                outcomes[i] = (bodies[r.credit_id], r.replayed)
                accepted = accepted_event(m, [requests[i][1]], [r])
                if accepted:
                    emitted.append(accepted)
        # Each request its own earnings.accepted, all in one statement.
        events.emit_many(session, emitted)
        session.commit()
    answered = [o for o in outcomes if o is not None]
    if len(answered) != len(requests):  # pragma: no cover - every branch above answers
        raise RuntimeError("a request of the group got no outcome")
    return answered


def authenticate(rt: Runtime, api_key: str) -> int | None:
    """The marketplace an API key belongs to, or None."""
    with rt.uow() as session:
        return catalog.marketplace_for_key(session, api_key)


@dataclass(frozen=True)
class AddressChange:
    creator: dict[str, object]
    created: bool  # the creator was unknown before this request
    changed: bool  # the address differs from the one on file


def set_payout_address(
    rt: Runtime, marketplace_id: int, external_id: str, address: str, *, actor: str
) -> AddressChange:
    cool_down = timedelta(seconds=rt.settings.payout_address_cool_down_seconds)
    with rt.uow() as session:
        try:
            before = views.creator(session, marketplace_id, external_id)
        except NotFound:
            before = None
        creator = catalog.set_payout_address(
            session, marketplace_id, external_id, address, cool_down=cool_down, actor=actor
        )
        after = views.creator(session, marketplace_id, external_id)
        changed = before is not None and before["payout_address"] != after["payout_address"]
        if changed and cool_down > timedelta(0):
            _cool_down(session, creator.id, after["payout_address"], creator.hold_until, actor)
        session.commit()
    return AddressChange(
        after,
        created=before is None,
        changed=before is None or before["payout_address"] != after["payout_address"],
    )


def _cool_down(
    session: Session, creator_id: int, address: str, until: datetime | None, actor: str
) -> None:
    """The cool-down after an address change is a hold like the others: listed with its
    reason and expiry, released by the settlement run after it (or by an operator)."""
    if until is None:
        return
    holds.place(
        session,
        [
            NewHold(
                creator_id,
                ADDRESS_COOL_DOWN,
                f"payout address changed to {address}: held for the cool-down",
                expires_at=until,
            )
        ],
        actor=actor,
    )


def earning(rt: Runtime, marketplace_id: int, credit_id: int) -> dict[str, object]:
    with rt.uow() as session:
        return views.earning(session, marketplace_id, credit_id)


def balance(rt: Runtime, marketplace_id: int, external_id: str) -> dict[str, object]:
    with rt.uow() as session:
        return views.balance(session, marketplace_id, external_id)
