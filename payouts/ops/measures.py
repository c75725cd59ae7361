"""Business measures read from the ledger and the chain, for metrics, alerts and the ops page.

Each function is one set-based read (a handful of statements, none per payout) so a
Prometheus scrape stays cheap; ``measure`` bounds a scrape's statements with a timeout so a
slow database makes a scrape fail fast instead of piling up.

Runway is the hot wallet's balance divided by its burn: what batches sealed in the last
``runway_window_hours`` and seen on chain took from it (their totals per token; their gas,
plus the totals of native payouts, from the native balance), spread over that window.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.chain import codec
from payouts.runtime import Runtime
from payouts.states import BATCH_SEEN, PayoutState, sql_in

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


@contextmanager
def measure(rt: Runtime, timeout_ms: int = 2000) -> Iterator[Session]:
    """A read-only unit of work whose statements give up after ``timeout_ms``."""
    with rt.uow() as session:
        session.execute(text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))
        yield session


def pipeline_by_state(rt: Runtime) -> list[StateTotal]:
    """Every payout state for every asset, zeros included (a series that vanishes at zero
    would read as missing data, not as none)."""
    states = ", ".join(s.sql for s in PayoutState)
    with measure(rt) as session:
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


def _burn(session: Session, window_hours: int) -> tuple[int, dict[str, int]]:
    """Gas (wei) and totals per asset of the batches sealed in the window and seen on chain."""
    rows = session.execute(
        text(
            f"""
            SELECT a.symbol, a.address IS NULL AS native,
                   coalesce(sum(b.total), 0) AS paid,
                   coalesce(sum(b.gas_used * b.effective_gas_price), 0) AS gas
              FROM batches b JOIN assets a ON a.id = b.asset_id
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


def wallet_runway(rt: Runtime) -> list[Runway]:
    """The hot wallet's runway for gas ("native") and for each configured token."""
    window = rt.settings.runway_window_hours
    wallet = rt.signer.address
    tokens = rt.token_assets()
    with measure(rt) as session:
        gas, paid = _burn(session, window)
    native_balance = rt.chain.balance(wallet)
    answers = rt.chain.call_many(
        [(str(t.address), codec.balance_of_calldata(wallet)) for t in tokens]
    )
    runways = [_runway(NATIVE, native_balance, gas + paid.get(NATIVE, 0), window)]
    for token, answer in zip(tokens, answers, strict=True):
        runways.append(_runway(token.symbol, int(answer, 16), paid.get(token.symbol, 0), window))
    return runways
