"""Scenario 1: earnings recorded per second, by the bulk service and both HTTP endpoints.

The baseline is the obvious first version: per earning, one ORM transaction that inserts the
journal, the credit and its two entries and commits. Every path writes the same rows to the
same ledger, for the same pool of creators, created beforehand (steady state: marketplaces
mostly pay creators we already know). Inputs are built before each clock starts.

The floor is the bulk path's earnings COPYed as rows into look-alikes of ``credits`` and
``entries`` (``benchmarks.floors``), in the same database right after the bulk path: the
same rows and transaction size, without the checks and look-ups that make them a ledger.
"""

from __future__ import annotations

import gc
import http.client
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text

import devstack
from benchmarks import floors, httpload, stack
from benchmarks.checks import ledger_invariants_hold
from benchmarks.report import (
    FLOOR_RATIO,
    ScenarioResult,
    Table,
    Target,
    floor_ratio,
    fmt_int,
    fmt_ratio,
    met,
)
from benchmarks.seed import MARKETPLACE, amount_of
from benchmarks.timing import StatementTimer, stopwatch, time_statements
from devstack import processes
from payouts.catalog import create_marketplace
from payouts.db import engine_for, models, session_factory, unit_of_work
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.ledger.accounts import AccountKind, account_id, ensure_accounts
from payouts.runtime import Runtime

BULK_CHUNK = 10_000  # what one call of the bulk service (and one batch request) carries
# Issue 14's targets, earnings per second: bulk handler, batch HTTP, single HTTP.
TARGET_PER_SECOND = 50_000
TARGET_BATCH_HTTP = 40_000
TARGET_SINGLE_HTTP = 3_000


@dataclass(frozen=True)
class IngestSizes:
    creators: int
    bulk: int
    orm: int
    http_batch: int
    http_single: int
    concurrency: int  # connections of the single-earning load


def _earnings(prefix: str, count: int, creators: int) -> list[Earning]:
    return [
        Earning(f"{prefix}-{i}", f"creator-{i % creators}", amount_of(i), "USDC")
        for i in range(count)
    ]


def _analyze(url: str) -> None:
    """Statistics as a ledger in service has them (autovacuum keeps them): without them the
    planner takes the warmed-up tables for the few rows of a fresh database and scans every
    creator and account for each request instead of looking up the ones it names."""
    with engine_for(url).connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()


def _bulk(rt: Runtime, earnings: list[Earning]) -> tuple[float, StatementTimer]:
    with time_statements(engine_for(rt.database_url)) as sql, stopwatch() as watch:
        for low in range(0, len(earnings), BULK_CHUNK):
            ingest.record(rt, MARKETPLACE, earnings[low : low + BULK_CHUNK])
    return watch.seconds, sql


def _orm_one_by_one(rt: Runtime, marketplace_id: int, earnings: list[Earning]) -> float:
    """The baseline: an ORM unit of work and a commit per earning."""
    asset_id = rt.asset_ids()["USDC"]
    with rt.uow() as session:
        creators = dict(
            session.execute(
                text("SELECT external_id, id FROM creators WHERE marketplace_id = :m"),
                {"m": marketplace_id},
            ).all()
        )
        keys = [(AccountKind.CREATOR_PAYABLE, c, asset_id) for c in creators.values()]
        keys.append((AccountKind.MARKETPLACE_FUNDING, marketplace_id, asset_id))
        accounts = ensure_accounts(session, keys)
        session.commit()
    funding = accounts[(AccountKind.MARKETPLACE_FUNDING, marketplace_id, asset_id)]
    now = datetime.now(UTC)
    with stopwatch() as watch, session_factory(rt.database_url)() as session:
        for e in earnings:
            creator = creators[e.creator_id]
            journal = models.Journal(kind="earnings", cause=f"earning {e.idempotency_key}")
            session.add(journal)
            session.flush()
            credit = models.Credit(
                marketplace_id=marketplace_id,
                creator_id=creator,
                asset_id=asset_id,
                amount=e.amount,
                idempotency_key=e.idempotency_key,
                request_hash=e.request_hash(),
                occurred_at=now,
                journal_id=journal.id,
            )
            session.add(credit)
            session.flush()
            payable = accounts[(AccountKind.CREATOR_PAYABLE, creator, asset_id)]
            session.add_all(
                [
                    models.Entry(
                        journal_id=journal.id, account_id=payable, amount=-e.amount,
                        credit_id=credit.id,
                    ),
                    models.Entry(journal_id=journal.id, account_id=funding, amount=e.amount),
                ]
            )  # fmt: skip
            session.commit()
    return watch.seconds


def _copy_floor(url: str, marketplace_id: int, asset_id: int, earnings: list[Earning]) -> float:
    """Seconds the floor takes to COPY the same earnings (ids looked up before its clock)."""
    with unit_of_work(url) as session:
        payable = {
            external: (creator, account)
            for external, creator, account in session.execute(
                text(
                    "SELECT c.external_id, c.id, a.id FROM creators c JOIN accounts a"
                    " ON a.kind = 'creator_payable' AND a.owner_id = c.id AND a.asset_id = :a"
                    " WHERE c.marketplace_id = :m"
                ),
                {"m": marketplace_id, "a": asset_id},
            )
        }
        funding = account_id(session, AccountKind.MARKETPLACE_FUNDING, marketplace_id, asset_id)
    rows = [
        floors.EarningRow(*payable[e.creator_id], e.amount, e.idempotency_key) for e in earnings
    ]
    return floors.copy_earnings(
        url, rows, marketplace_id=marketplace_id, asset_id=asset_id, funding_account=funding,
        chunk=BULK_CHUNK,
    )  # fmt: skip


@contextmanager
def api_server(env: dict[str, str], servers: stack.Servers) -> Iterator[int]:
    """``payouts api`` as an operator runs it (one uvicorn process); yields its port."""
    port = devstack.free_port()
    process = processes.start_api(env, servers.state_dir / "api", port)
    try:
        deadline = time.monotonic() + 30
        while not _healthy(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"payouts api did not start; see {servers.state_dir}/api")
            time.sleep(0.1)
        yield port
    finally:
        processes.stop(process)


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _item(e: Earning) -> dict[str, str]:
    return {"creator_id": e.creator_id, "amount": str(e.amount), "asset": e.asset}


def _batch_requests(api_key: str, earnings: list[Earning]) -> list[bytes]:
    auth = {"Authorization": f"Bearer {api_key}"}
    return [
        httpload.post(
            "/v1/earnings/batch",
            json.dumps(
                {
                    "earnings": [
                        {**_item(e), "idempotency_key": e.idempotency_key}
                        for e in earnings[low : low + BULK_CHUNK]
                    ]
                }
            ).encode(),
            auth,
        )
        for low in range(0, len(earnings), BULK_CHUNK)
    ]


def _single_requests(api_key: str, earnings: list[Earning]) -> list[bytes]:
    return [
        httpload.post(
            "/v1/earnings",
            json.dumps(_item(e)).encode(),
            {"Authorization": f"Bearer {api_key}", "Idempotency-Key": e.idempotency_key},
        )
        for e in earnings
    ]


def run(servers: stack.Servers, sizes: IngestSizes) -> ScenarioResult:
    with stack.fresh_db(servers, "ingest") as url:
        env = stack.bench_env(servers, url)
        rt = stack.runtime_for(env)
        rt.asset_ids()
        with unit_of_work(url) as session:
            market = create_marketplace(session, MARKETPLACE)
            session.commit()
        # Warm-up, untimed: creates the creators and their accounts.
        ingest.record(rt, MARKETPLACE, _earnings("warm", sizes.creators, sizes.creators))
        _analyze(url)
        # As `payouts api` does once its app is built: what is alive now lives as long as
        # the process, so the collector's full passes skip it. The inputs below are built
        # after this, so their own cost to the collector is still in every figure.
        gc.collect()
        gc.freeze()

        bulk = _earnings("bulk", sizes.bulk, sizes.creators)
        bulk_s, bulk_sql = _bulk(rt, bulk)
        floor_s = _copy_floor(url, market.id, rt.asset_ids()["USDC"], bulk)
        orm = _earnings("orm", sizes.orm, sizes.creators)
        orm_s = _orm_one_by_one(rt, market.id, orm)
        batch = _earnings("batch", sizes.http_batch, sizes.creators)
        single = _earnings("single", sizes.http_single, sizes.creators)
        # Again, as the timed work above changed the tables twentyfold: statistics taken after
        # the warm-up (one journal) made the HTTP loads plan for a ledger that no longer was.
        _analyze(url)
        with api_server(env, servers) as port:
            batch_load = httpload.run_load(
                "127.0.0.1", port, _batch_requests(market.api_key, batch), 2
            )
            single_load = httpload.run_load(
                "127.0.0.1", port, _single_requests(market.api_key, single), sizes.concurrency
            )
        gc.unfreeze()
        ledger_ok = ledger_invariants_hold(url)
        with unit_of_work(url) as session:
            counts = dict(
                session.execute(
                    text(
                        "SELECT split_part(idempotency_key, '-', 1), count(*) FROM credits"
                        " GROUP BY 1"
                    )
                ).all()
            )

    baseline = sizes.orm / orm_s
    floor = sizes.bulk / floor_s
    paths = [
        ("bulk handler (`ingest.handlers.record`, 10,000 per call)", "bulk ingest",
         sizes.bulk / bulk_s, TARGET_PER_SECOND),
        ("batch HTTP endpoint (`POST /v1/earnings/batch`, 10,000 per request, 2 connections)",
         "batch HTTP ingest", sizes.http_batch / batch_load.seconds, TARGET_BATCH_HTTP),
        (f"single HTTP endpoint (`POST /v1/earnings`, {sizes.concurrency} connections)",
         "single HTTP ingest", sizes.http_single / single_load.seconds, TARGET_SINGLE_HTTP),
    ]  # fmt: skip
    rows = [
        [
            name,
            f"{fmt_int(rate)}/s",
            f"{fmt_int(baseline)}/s",
            fmt_ratio(rate / baseline),
            f"{fmt_int(floor)}/s",
            floor_ratio(rate, floor),
            f"≥ {fmt_int(target)}/s",
            met(rate >= target),
        ]
        for name, _, rate, target in paths
    ]
    return ScenarioResult(
        key="ingest",
        title="1. Ingest",
        setup=(
            f"{sizes.creators:,} creators (created by an untimed warm-up; ANALYZE before the "
            "bulk path and again before the HTTP loads, as autovacuum keeps a ledger in service; "
            "the process's start-up objects frozen "
            "out of the garbage collector, as `payouts api` freezes its own). Bulk: "
            f"{sizes.bulk:,} earnings; baseline: {sizes.orm:,} earnings, one ORM transaction "
            f"(journal, credit, two entries) and commit each; batch HTTP: {sizes.http_batch:,}; "
            f"single HTTP: {sizes.http_single:,}. HTTP goes to one `payouts api` process "
            "(uvicorn) on loopback, driven by `benchmarks/httpload.py` (raw asyncio, "
            "keep-alive). Floor: the bulk path's earnings, rendered beforehand as rows of "
            f"credits and entries, COPYed {BULK_CHUNK:,} per transaction into look-alike tables "
            "(the ledger's columns and indexes, none of its foreign keys or triggers; logged, "
            "as the ledger is) in the same database right after the bulk path: the same rows, "
            "without parsing, hashing, look-ups or checks (`benchmarks/floors.py`)."
        ),
        tables=[
            Table(
                [
                    "path",
                    "earnings recorded",
                    "baseline: ORM, commit each",
                    "ratio (value ÷ baseline)",
                    "floor: COPY of the same rows",
                    FLOOR_RATIO,
                    "target",
                    "met",
                ],
                rows,
            )
        ],
        targets=[
            Target(
                what,
                f"{fmt_int(rate)} earnings/s",
                f"≥ {fmt_int(target)}/s",
                rate >= target,
                of_floor=rate / floor,
            )
            for _, what, rate, target in paths
        ],
        checks={
            "every earning recorded once": counts.get("bulk") == sizes.bulk
            and counts.get("orm") == sizes.orm
            and counts.get("batch") == sizes.http_batch
            and counts.get("single") == sizes.http_single,
            "every HTTP request answered 200/201": batch_load.ok(200) and single_load.ok(201),
            "ledger invariants (payouts check)": ledger_ok,
        },
        breakdown=[
            f"bulk path: SQL {bulk_sql.total:,.2f} s of {bulk_s:,.2f} s "
            f"({bulk_sql.total / bulk_s:.0%}), the rest Python (validation, request hashes, "
            "the JSON document); slowest statements: "
            + "; ".join(f"{s:,.2f} s in {n} x `{q}`" for q, s, n in bulk_sql.top(3)),
            f"HTTP load generator CPU: {batch_load.client_cpu_share:.0%} of one core during "
            f"the batch load, {single_load.client_cpu_share:.0%} during the single load "
            "(the server, not the client, set the pace where this is well under 100%).",
        ],
    )
