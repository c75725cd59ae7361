"""Business measures read from the ledger and the chain, for metrics, alerts and the ops page.

Each function is one set-based read (a handful of statements, none per payout) so a
Prometheus scrape stays cheap; ``measure`` bounds a scrape's statements with a timeout so a
slow database makes a scrape fail fast instead of piling up.

The claims escrow's cover (``escrow_cover``) is its token balance on chain against what is
claimable: a shortfall means some creator's voucher would be refused now, paying nothing.

Runway is the hot wallet's balance divided by its burn: what batches sealed in the last
``runway_window_hours`` and seen on chain took from it (the payouts still in them, per token;
their gas, plus native payouts, from the native balance), spread over that window. A payout
whose transfer the token refused has left its batch, and took nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.chain import codec
from payouts.chain.client import ChainClient
from payouts.claims.escrow import escrow_of
from payouts.claims.topups import covers
from payouts.holds import TRANSFER_FAILED
from payouts.lifecycle import payout_credits_join
from payouts.runtime import Runtime
from payouts.states import (
    BATCH_SEEN,
    PAYOUT_IN_FLIGHT,
    BatchState,
    ExceptionState,
    HoldState,
    PayoutState,
    State,
    TxAttemptState,
    sql_in,
)

NATIVE = "native"
SEEN = sql_in(*BATCH_SEEN)


@dataclass(frozen=True)
class Runway:
    """How long the hot wallet's ``balance`` of ``asset`` ("native" for gas) lasts."""

    asset: str
    balance: int
    burn_per_hour: int
    hours: float | None  # None when nothing burns


@dataclass(frozen=True)
class StateTotal:
    """Payouts of one asset in one state: how many, and their value in base units."""

    state: str
    asset: str
    count: int
    value: int


@dataclass(frozen=True)
class Ledger:
    """Everything a scrape reads from the database, in one unit of work.

    Counts named ``*_total`` only grow (rows that never leave the state counted), so
    Prometheus may take their rate."""

    payouts: list[StateTotal]
    batches: dict[str, int]
    oldest_payout_age: dict[str, float]  # seconds, per non-final payout state that has any
    exceptions: dict[str, tuple[int, float]]  # open, by kind: how many, oldest age (seconds)
    holds: dict[str, int]  # active, by rule
    finalized_total: int
    failures_total: dict[str, int]  # payouts sent back, by cause
    fee_bumps_total: int
    rebroadcasts_total: int
    reorgs_unwound_total: int
    # Seconds since the oldest credit no roll-up run has claimed yet was recorded (0: none).
    unclaimed_credit_age: float


@contextmanager
def measure(rt: Runtime, timeout_ms: int = 1000) -> Iterator[Session]:
    """A read-only unit of work whose statements give up after ``timeout_ms``."""
    with rt.uow() as session:
        session.execute(text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))
        yield session


def pipeline_by_state(rt: Runtime) -> list[StateTotal]:
    """Every payout state for every asset, zeros included (a series that vanishes at zero
    would read as missing data, not as none)."""
    with measure(rt) as session:
        return _pipeline(session)


def ledger(rt: Runtime) -> Ledger:
    """What the metrics export from the database, in ten statements. All but the first read
    small tables (batches, attempts, exceptions, holds, orphaned inclusions) or the payouts
    not final (by their state index); the first sums every payout's value by state, which
    grows with history: past what ``measure``'s timeout allows, the ledger part of a scrape
    fails alone (``payouts_measure_up``) and wants a running total kept at each move."""
    with measure(rt) as session:
        payouts = _pipeline(session)
        return Ledger(
            payouts=payouts,
            batches=_by_state(session, "batches", BatchState),
            oldest_payout_age=_oldest_payouts(session),
            exceptions=_open_exceptions(session),
            holds=_active_holds(session),
            finalized_total=sum(t.count for t in payouts if t.state == PayoutState.FINALIZED),
            failures_total=_failures(session),
            fee_bumps_total=_scalar(
                session,
                f"SELECT count(*) FROM tx_attempts WHERE state = {TxAttemptState.REPLACED.sql}",
            ),
            rebroadcasts_total=_scalar(
                session, "SELECT coalesce(sum(greatest(broadcasts - 1, 0)), 0) FROM tx_attempts"
            ),
            reorgs_unwound_total=_scalar(session, "SELECT count(*) FROM orphaned_inclusions"),
            unclaimed_credit_age=_unclaimed_credit_age(session),
        )


def _unclaimed_credit_age(session: Session) -> float:
    """Credits above the last run's claim, by their inserting transaction (its index): none
    older than a window or two unless the roll-up is not running, or a long transaction of
    this database holds its claim back (``payouts.rollup.runs``). A run's own transaction's
    credits, claimed by id, count here until a later run; only tests roll up that way."""
    age = session.execute(
        text(
            """
            SELECT extract(epoch FROM now() - min(created_at)) FROM credits
             WHERE created_xid >= (SELECT coalesce(max(xid_to), CAST('1' AS xid8))
                                     FROM rollup_runs)
            """
        )
    ).scalar_one()
    return float(age or 0)


def _scalar(session: Session, sql: str) -> int:
    return int(session.execute(text(sql)).scalar_one())


def _pipeline(session: Session) -> list[StateTotal]:
    states = ", ".join(s.sql for s in PayoutState)
    rows = session.execute(
        text(
            f"""
            SELECT s.state, a.symbol, count(p.id) AS n, coalesce(sum(p.amount), 0) AS value
              FROM assets a CROSS JOIN unnest(ARRAY[{states}]) AS s(state)
              LEFT JOIN payouts p ON p.asset_id = a.id AND p.state = s.state
             GROUP BY s.state, a.symbol ORDER BY a.symbol, s.state
            """
        )
    )
    return [StateTotal(r.state, r.symbol, int(r.n), int(r.value)) for r in rows]


def _by_state(session: Session, table: str, states: type[State]) -> dict[str, int]:
    rows = session.execute(text(f"SELECT state, count(*) FROM {table} GROUP BY state"))
    counted: dict[str, int] = {state: int(n) for state, n in rows}
    return {s.value: counted.get(s.value, 0) for s in states}


def _oldest_payouts(session: Session) -> dict[str, float]:
    rows = session.execute(
        text(
            f"""
            SELECT state, extract(epoch FROM now() - min(created_at)) AS age FROM payouts
             WHERE state IN {sql_in(*PAYOUT_IN_FLIGHT)} GROUP BY state
            """
        )
    )
    return {r.state: float(r.age) for r in rows}


def _open_exceptions(session: Session) -> dict[str, tuple[int, float]]:
    rows = session.execute(
        text(
            f"""
            SELECT kind, count(*) AS n, extract(epoch FROM now() - min(created_at)) AS age
              FROM exceptions WHERE state = {ExceptionState.OPEN.sql} GROUP BY kind
            """
        )
    )
    return {r.kind: (int(r.n), float(r.age)) for r in rows}


def _active_holds(session: Session) -> dict[str, int]:
    rows = session.execute(
        text(f"SELECT rule, count(*) FROM holds WHERE state = {HoldState.ACTIVE.sql} GROUP BY rule")
    )
    return {rule: int(n) for rule, n in rows}


def _failures(session: Session) -> dict[str, int]:
    """Payouts sent back to pending: every payout of a failed batch (its nonce was taken),
    and the transfers the token refused, by the holds they left (one per creator and batch:
    a batch pays a creator once per window, so one per payout but for a backlog)."""
    return {
        "batch_failed": _scalar(
            session,
            "SELECT coalesce(sum(item_count), 0) FROM batches"
            f" WHERE state = {BatchState.FAILED.sql}",
        ),
        "transfer_refused": _scalar(
            session,
            f"SELECT count(*) FROM holds WHERE rule = '{TRANSFER_FAILED}'",
        ),
    }


def earning_ages(
    rt: Runtime, batch_ids: list[int], bounds: list[float], payout_ids: Sequence[int] = ()
) -> list[tuple[int, int, float]]:
    """For the earnings paid by these (finalized) batches, and by these payouts finalized by
    claim, the time from each earning recorded to its payout final, as (bucket, how many,
    their summed seconds): bucket i holds the ages up to ``bounds[i]``, bucket len(bounds)
    those above. One statement however many."""
    if not batch_ids and not payout_ids:
        return []
    with measure(rt) as session:
        rows = session.execute(
            text(
                f"""
                WITH final AS (
                  SELECT t.entity_id AS payout_id, max(t.at) AS at FROM transitions t
                   WHERE t.entity = 'payout' AND t.to_state = {PayoutState.FINALIZED.sql}
                     AND (t.entity_id IN (SELECT payout_id FROM batch_items
                                           WHERE batch_id = ANY(:batches))
                          OR t.entity_id = ANY(:payouts))
                   GROUP BY t.entity_id)
                SELECT bucket, count(*) AS n, sum(age) AS seconds FROM (
                  SELECT extract(epoch FROM f.at - c.created_at) AS age,
                         -- bisect: the first bound not below the age (le is inclusive)
                         (SELECT count(*) FROM unnest(CAST(:bounds AS float8[])) AS b(le)
                           WHERE b.le < extract(epoch FROM f.at - c.created_at)) AS bucket
                    FROM final f JOIN payouts p ON p.id = f.payout_id
                         {payout_credits_join("p")}) ages
                 GROUP BY bucket ORDER BY bucket
                """
            ),
            {"batches": batch_ids, "payouts": list(payout_ids), "bounds": bounds},
        )
        return [(int(r.bucket), int(r.n), float(r.seconds)) for r in rows]


def _burn(session: Session, window_hours: int) -> tuple[int, dict[str, int]]:
    """Gas (wei) and payouts per asset of the batches sealed in the window and seen on chain."""
    rows = session.execute(
        text(
            f"""
            SELECT a.symbol, a.address IS NULL AS native,
                   coalesce(sum(paid.amount), 0) AS paid,
                   coalesce(sum(b.gas_used * b.effective_gas_price), 0) AS gas
              FROM batches b JOIN assets a ON a.id = b.asset_id
             CROSS JOIN LATERAL (SELECT coalesce(sum(p.amount), 0) AS amount FROM payouts p
                                  WHERE p.batch_id = b.id) paid
             WHERE b.state IN {SEEN} AND b.created_at > now() - make_interval(hours => :h)
             GROUP BY a.symbol, a.address
            """
        ),
        {"h": window_hours},
    )
    gas = 0
    paid: dict[str, int] = {}
    for row in rows:
        gas += int(row.gas)
        paid[NATIVE if row.native else row.symbol] = int(row.paid)
    return gas, paid


def _runway(asset: str, balance: int, burnt: int, window_hours: int) -> Runway:
    if burnt <= 0:
        return Runway(asset, balance, 0, None)
    # Rounded up, so a small but real burn never reads as none.
    return Runway(asset, balance, -(-burnt // window_hours), balance * window_hours / burnt)


def wallet_runway(rt: Runtime, *, chain: ChainClient | None = None) -> list[Runway]:
    """The hot wallet's runway for gas ("native") and for each configured token, its balances
    read through ``chain`` (the runtime's client unless given)."""
    chain = chain or rt.chain
    window = rt.settings.runway_window_hours
    wallet = rt.signer.address
    tokens = rt.token_assets()
    with measure(rt) as session:
        gas, paid = _burn(session, window)
    native_balance = chain.balance(wallet)
    answers = chain.call_many([(str(t.address), codec.balance_of_calldata(wallet)) for t in tokens])
    runways = [_runway(NATIVE, native_balance, gas + paid.get(NATIVE, 0), window)]
    for token, answer in zip(tokens, answers, strict=True):
        runways.append(_runway(token.symbol, int(answer, 16), paid.get(token.symbol, 0), window))
    return runways


@dataclass(frozen=True)
class EscrowCover:
    """The claims escrow's ``balance`` of ``asset`` on chain against what is ``claimable``."""

    asset: str
    balance: int
    claimable: int

    @property
    def shortfall(self) -> int:
        return max(0, self.claimable - self.balance)


def escrow_cover(rt: Runtime, *, chain: ChainClient | None = None) -> list[EscrowCover]:
    """Each token's escrow cover (none without an escrow), its balances read through ``chain``
    (the runtime's client unless given)."""
    escrow = escrow_of(rt)
    if escrow is None:
        return []
    chain = chain or rt.chain
    with measure(rt) as session:
        found = covers(session)
    answers = chain.call_many([(c.token, codec.balance_of_calldata(escrow.address)) for c in found])
    return [
        EscrowCover(c.symbol, int(answer, 16), c.claimable)
        for c, answer in zip(found, answers, strict=True)
    ]
