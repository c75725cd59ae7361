"""Seeding a ledger with a million credits in seconds, with rows the ledger accepts.

Creators, their payable accounts, credits and the journal entries that recorded them are
generated inside PostgreSQL (``generate_series``), never row by row from Python. The rows
are those ``payouts.ledger.earnings`` writes: one ``earnings`` journal per 10,000 credits,
Cr creator payable per credit and Dr marketplace funding per journal, all in one transaction
(entries may join a journal only in the transaction that opened it, and each journal must
balance at commit). Amounts and addresses are deterministic, so two runs seed the same rows.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from benchmarks import stack
from benchmarks.timing import stopwatch
from payouts.catalog import ensure_marketplace
from payouts.db import engine_for
from payouts.ledger.accounts import AccountKind, ensure_accounts
from payouts.runtime import Runtime

MARKETPLACE = "bench-marketplace"
CREDITS_PER_JOURNAL = 10_000

# Credit g pays 1,000..250,000 base units (0.001..0.25 USDC): tiny earnings, as marketplaces
# send them. The multiplier is prime, so amounts spread over the whole range.
MIN_AMOUNT = 1000
AMOUNT_SQL = f"{MIN_AMOUNT} + (g * 7919) % 249001"


def amount_of(g: int) -> int:
    return MIN_AMOUNT + (g * 7919) % 249001


def address_of(n: int, prefix: int = 1) -> str:
    """A fresh EIP-55 address made of digits only (so it is its own checksum), never a
    precompile: ``0x1000...0042`` for creator 42."""
    return f"0x{prefix}{n:039d}"


ADDRESS_SQL = "'0x1' || lpad(g::text, 39, '0')"


@dataclass(frozen=True)
class Seeded:
    marketplace_id: int
    asset_id: int
    creators: int
    credits: int
    total: int  # base units credited in all
    first_insert: InsertProfile | None  # what PostgreSQL did for the first journal's credits


@dataclass(frozen=True)
class InsertProfile:
    """EXPLAIN ANALYZE of one journal's INSERT: its time, and the triggers' share of it."""

    rows: int
    milliseconds: float
    triggers: dict[str, float]  # trigger name -> milliseconds (the foreign-key checks)

    def summary(self) -> str:
        spent = sum(self.triggers.values())
        ranked = sorted(self.triggers.items(), key=lambda kv: kv[1], reverse=True)
        return (
            f"inserting {self.rows:,} credits with their entries took {self.milliseconds:,.0f} ms, "
            f"{spent:,.0f} ms ({spent / self.milliseconds:.0%}) of it in per-row triggers: "
            + ", ".join(f"`{name}` {ms:,.0f} ms" for name, ms in ranked)
        )


def seed_ledger(rt: Runtime, *, creators: int, credits: int) -> Seeded:
    """``credits`` accrued credits spread evenly over ``creators`` new creators with addresses.

    Credit g (1-based) belongs to creator ``g % creators``; with 1,000,000 credits over
    100,000 creators each creator has ten.
    """
    asset_id = rt.asset_ids()["USDC"]
    with rt.uow() as session:
        marketplace_id = ensure_marketplace(session, MARKETPLACE)
        _seed_creators(session, marketplace_id, asset_id, creators)
        funding = ensure_accounts(
            session, [(AccountKind.MARKETPLACE_FUNDING, marketplace_id, asset_id)]
        )[(AccountKind.MARKETPLACE_FUNDING, marketplace_id, asset_id)]
        profile: InsertProfile | None = None
        for low in range(1, credits + 1, CREDITS_PER_JOURNAL):
            high = min(credits, low + CREDITS_PER_JOURNAL - 1)
            plan = _seed_credits(
                session, marketplace_id, asset_id, funding, creators, low, high,
                explain=profile is None,
            )  # fmt: skip
            profile = profile or plan
        session.commit()
    # Vacuumed and analysed as autovacuum would have left them, and now rather than whenever
    # it comes by: an autovacuum of a million fresh credits on a 2-core machine took a core
    # from whatever ran meanwhile (a roll-up measured at 4.7 s with it, 3.7 s without), and a
    # copy made before it and one made after were not the same ledger to read.
    with engine_for(rt.database_url).connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("creators", "accounts", "credits", "entries", "journals"):
            conn.execute(text(f"VACUUM (ANALYZE) {table}"))
        total = conn.execute(text("SELECT coalesce(sum(amount), 0) FROM credits")).scalar_one()
    return Seeded(marketplace_id, asset_id, creators, credits, int(total), profile)


def _seed_creators(session: Session, marketplace_id: int, asset_id: int, count: int) -> None:
    session.execute(
        text(
            f"""
            INSERT INTO creators (marketplace_id, external_id, payout_address)
            SELECT :m, 'creator-' || g, {ADDRESS_SQL} FROM generate_series(1, :n) g
            """
        ),
        {"m": marketplace_id, "n": count},
    )
    session.execute(
        text(
            """
            INSERT INTO accounts (kind, owner_id, asset_id)
            SELECT k.kind, c.id, :a FROM creators c
             CROSS JOIN (VALUES ('creator_payable'), ('creator_dust')) k(kind)
             WHERE c.marketplace_id = :m
            """
        ),
        {"m": marketplace_id, "a": asset_id},
    )
    # Credit g goes to seed_creators row g % count: a lookup by position, not a join on text.
    session.execute(
        text(
            """
            CREATE TEMP TABLE seed_creators ON COMMIT DROP AS
            SELECT substr(c.external_id, 9)::bigint % :n AS slot, c.id AS creator_id,
                   a.id AS account_id
              FROM creators c JOIN accounts a ON a.kind = 'creator_payable'
               AND a.owner_id = c.id AND a.asset_id = :a
             WHERE c.marketplace_id = :m
            """
        ),
        {"m": marketplace_id, "a": asset_id, "n": count},
    )
    session.execute(text("ALTER TABLE seed_creators ADD PRIMARY KEY (slot)"))
    session.execute(text("CREATE INDEX ON seed_creators (creator_id)"))
    session.execute(text("ANALYZE seed_creators"))


def _seed_credits(
    session: Session,
    marketplace_id: int,
    asset_id: int,
    funding_account: int,
    creators: int,
    low: int,
    high: int,
    *,
    explain: bool,
) -> InsertProfile | None:
    """Insert credits low..high; with ``explain`` through EXPLAIN ANALYZE (which runs it)."""
    prefix = "EXPLAIN (ANALYZE, FORMAT JSON) " if explain else ""
    result = session.execute(
        text(
            prefix
            + f"""
            WITH journal AS (
                INSERT INTO journals (kind, cause)
                VALUES ('earnings', 'bench seed: credits ' || :low || '..' || :high)
                RETURNING id
            ), new AS (
                INSERT INTO credits (marketplace_id, creator_id, asset_id, amount,
                                     idempotency_key, request_hash, occurred_at, journal_id)
                SELECT :m, s.creator_id, :a, {AMOUNT_SQL}, 'seed-' || g,
                       encode(sha256(('seed-' || g)::bytea), 'hex'), now(),
                       (SELECT id FROM journal)
                  FROM generate_series(CAST(:low AS bigint), CAST(:high AS bigint)) g
                  JOIN seed_creators s ON s.slot = g % :n
                RETURNING id, creator_id, amount, journal_id
            ), payable AS (
                INSERT INTO entries (journal_id, account_id, amount, credit_id)
                SELECT new.journal_id, s.account_id, -new.amount, new.id
                  FROM new JOIN seed_creators s ON s.creator_id = new.creator_id
            )
            INSERT INTO entries (journal_id, account_id, amount)
            SELECT (SELECT id FROM journal), :funding, sum(amount) FROM new
            """
        ),
        {
            "m": marketplace_id,
            "a": asset_id,
            "n": creators,
            "low": low,
            "high": high,
            "funding": funding_account,
        },
    )
    if not explain:
        return None
    plan = result.scalar_one()[0]
    return InsertProfile(
        rows=high - low + 1,
        milliseconds=float(plan["Execution Time"]),
        triggers={t["Trigger Name"]: float(t["Time"]) for t in plan.get("Triggers", [])},
    )


class Templates:
    """Seeded ledgers kept for the run, so scenarios that start from the same ledger (the
    roll-up and the end-to-end run) copy it instead of seeding it again."""

    def __init__(self, servers: stack.Servers) -> None:
        self._servers = servers
        self._stack = ExitStack()
        self._ledgers: dict[tuple[int, int], tuple[str, Seeded, float]] = {}

    def ledger(self, credits: int, creators: int) -> tuple[str, Seeded, float]:
        """The URL of a ledger seeded with these sizes, what it holds and the seconds it took;
        copy it with ``stack.cloned_db``, never write to it."""
        key = (credits, creators)
        if key not in self._ledgers:
            url = self._stack.enter_context(
                stack.fresh_db(self._servers, f"seed_{credits}_{creators}")
            )
            rt = stack.runtime_for(stack.bench_env(self._servers, url))
            with stopwatch() as watch:
                seeded = seed_ledger(rt, creators=creators, credits=credits)
            engine_for(url).dispose()
            self._ledgers[key] = (url, seeded, watch.seconds)
        return self._ledgers[key]

    def close(self) -> None:
        self._stack.close()
