"""The ledger's measures as Prometheus metrics, read from the database at scrape time.

Computed when Prometheus scrapes (``LedgerCollector.collect``), not counted as things happen:
the database is the truth every process shares, so the API's ``/metrics`` says the same
whichever process answers, and nothing is lost when a process restarts. Labels are bounded
(state, asset symbol, exception kind, hold rule); never a creator or a marketplace.

Each part fails alone: a database or a node that does not answer leaves its families out of
that scrape and sets ``payouts_measure_up{measure=...}`` to 0, so an alert can tell missing
data from good news.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from functools import cache

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from payouts.chain.client import ChainClient
from payouts.errors import PayoutsError
from payouts.ops import measures
from payouts.runtime import Runtime

log = logging.getLogger(__name__)

Part = Callable[[Runtime], Iterable[Metric]]


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def _ledger_families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
    """The families ``ledger`` fills, empty: one place for their names, help and labels."""
    return {
        "count": _gauge("payouts_payouts", "Payouts by state and asset", ["state", "asset"]),
        "value": _gauge(
            "payouts_payouts_value",
            "Value of the payouts by state and asset, in the asset's base units",
            ["state", "asset"],
        ),
        "batches": _gauge("payouts_batches", "Batches by state", ["state"]),
        "oldest": _gauge(
            "payouts_oldest_nonfinal_payout_age_seconds",
            "Age of the oldest payout in each non-final state",
            ["state"],
        ),
        "exceptions": _gauge(
            "payouts_exceptions_open", "Open exceptions in the operators' queue", ["kind"]
        ),
        "exceptions_age": _gauge(
            "payouts_exceptions_oldest_open_age_seconds",
            "Age of the oldest open exception",
            ["kind"],
        ),
        "holds": _gauge(
            "payouts_holds_active", "Active holds (the review queue) by rule", ["rule"]
        ),
        "finalized": _counter("payouts_payouts_finalized", "Payouts final (business finality)"),
        "failures": _counter(
            "payouts_payout_failures",
            "Payouts sent back to pending: their batch failed, or the token refused the transfer",
            ["cause"],
        ),
        "fee_bumps": _counter(
            "payouts_fee_bumps",
            "Replacement transactions: a stuck batch resent with the same nonce and higher fees",
        ),
        "rebroadcasts": _counter(
            "payouts_tx_rebroadcasts", "Dropped transactions resent from their stored bytes"
        ),
        "reorgs": _counter(
            "payouts_reorgs_unwound", "Inclusions a reorg took off the chain, unwound"
        ),
        "unclaimed": _gauge(
            "payouts_oldest_unclaimed_credit_age_seconds",
            "Age of the oldest credit no roll-up has claimed yet (0 when none)",
        ),
    }


def ledger(rt: Runtime) -> Iterator[Metric]:
    found = measures.ledger(rt)
    families = _ledger_families()
    for t in found.payouts:
        families["count"].add_metric([t.state, t.asset], t.count)
        families["value"].add_metric([t.state, t.asset], t.value)
    for state, n in found.batches.items():
        families["batches"].add_metric([state], n)
    for state, age in found.oldest_payout_age.items():
        families["oldest"].add_metric([state], age)
    for kind, (n, age) in found.exceptions.items():
        families["exceptions"].add_metric([kind], n)
        families["exceptions_age"].add_metric([kind], age)
    for rule, n in found.holds.items():
        families["holds"].add_metric([rule], n)
    families["finalized"].add_metric([], found.finalized_total)
    for cause, n in found.failures_total.items():
        families["failures"].add_metric([cause], n)
    families["fee_bumps"].add_metric([], found.fee_bumps_total)
    families["rebroadcasts"].add_metric([], found.rebroadcasts_total)
    families["reorgs"].add_metric([], found.reorgs_unwound_total)
    families["unclaimed"].add_metric([], found.unclaimed_credit_age)
    yield from families.values()


def _runway_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        _gauge(
            "payouts_wallet_balance",
            "The hot wallet's balance in base units (native: for gas)",
            ["asset"],
        ),
        _gauge(
            "payouts_wallet_burn_per_hour",
            "What the hot wallet spent per hour lately, in base units",
            ["asset"],
        ),
        _gauge(
            "payouts_wallet_runway_hours",
            "Hours the hot wallet lasts at that burn (+Inf when nothing burns)",
            ["asset"],
        ),
    )


# Prometheus gives up on a scrape after 10 s by default: a node that hangs must cost the
# runway alone, not the whole scrape (three tries of this, then the error).
SCRAPE_RPC_TIMEOUT_SECONDS = 1.5


@cache
def _scrape_chain(rt: Runtime) -> ChainClient:
    """One client per runtime, so scrapes reuse its connections. The runtime's breaker: a
    node that fails a scrape has failed for every process."""
    return ChainClient(
        rt.settings.rpc_url, timeout=SCRAPE_RPC_TIMEOUT_SECONDS, breaker=rt.chain.breaker
    )


def runway(rt: Runtime) -> Iterator[Metric]:
    balance, burn, hours = _runway_families()
    for r in measures.wallet_runway(rt, chain=_scrape_chain(rt)):
        balance.add_metric([r.asset], r.balance)
        burn.add_metric([r.asset], r.burn_per_hour)
        hours.add_metric([r.asset], math.inf if r.hours is None else r.hours)
    yield from (balance, burn, hours)


def _escrow_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        _gauge(
            "payouts_claims_escrow_balance",
            "The claims escrow's balance on chain, in base units",
            ["asset"],
        ),
        _gauge(
            "payouts_claims_claimable",
            "Value of the payouts claimable and not yet claimed, in base units",
            ["asset"],
        ),
        _gauge(
            "payouts_claims_escrow_shortfall",
            "What is claimable beyond the escrow's balance (vouchers it would refuse now)",
            ["asset"],
        ),
    )


def escrow(rt: Runtime) -> Iterator[Metric]:
    balance, claimable, shortfall = _escrow_families()
    for c in measures.escrow_cover(rt, chain=_scrape_chain(rt)):
        balance.add_metric([c.asset], c.balance)
        claimable.add_metric([c.asset], c.claimable)
        shortfall.add_metric([c.asset], c.shortfall)
    yield from (balance, claimable, shortfall)


def _breaker_family() -> GaugeMetricFamily:
    return _gauge(
        "payouts_rpc_circuit_open",
        "1 while the RPC circuit breaker (shared by every process) stops calls to the node",
    )


def breaker(rt: Runtime) -> Iterator[Metric]:
    family = _breaker_family()
    circuit = rt.chain.breaker
    family.add_metric([], 1 if circuit is not None and circuit.is_open() else 0)
    yield family


PARTS: dict[str, Part] = {
    "ledger": ledger,
    "runway": runway,
    "escrow": escrow,
    "breaker": breaker,
}


class LedgerCollector(Collector):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def describe(self) -> Iterable[Metric]:
        """The families without values (no query): what registering checks names against."""
        yield from _ledger_families().values()
        yield from _runway_families()
        yield from _escrow_families()
        yield _breaker_family()
        yield _up_family()

    def collect(self) -> Iterable[Metric]:
        up = _up_family()
        for name, part in PARTS.items():
            try:
                families = list(part(self.rt))
            except PayoutsError as exc:
                log.warning("metrics: %s unavailable: %s: %s", name, type(exc).__name__, exc)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up


def _up_family() -> GaugeMetricFamily:
    return _gauge(
        "payouts_measure_up", "1 if the last scrape could read this measure, else 0", ["measure"]
    )
