"""What the ops page draws: the pipeline's recent history as time series, the batches with
their timelines, and the lookups behind its search box. Read-only, set-based: one statement
per chart or list, however many payouts there are.

Series are bucketed by time from the first event in the window to now. The bucket widens with
that span (``bucket_for``), so a two-minute demo and a day of production both draw some tens
of points; counts are given per hour whatever the bucket, so the axes keep one meaning.
Timestamps are the audit trail's (``transitions.at``): a payout finalized is the moment its
``finalized`` row was written, a batch's timeline the last time it entered each state (a reorg
can send it through ``included`` twice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.holds import reviewed_sql
from payouts.lifecycle import payout_credits_join
from payouts.states import BatchState as B
from payouts.states import ExceptionState, HoldState, sql_in
from payouts.states import PayoutState as P

# Bucket widths a chart may use, in seconds, and how many buckets a chart aims to stay under.
BUCKETS = (1, 5, 10, 30, 60, 300, 900, 3600)
MAX_POINTS = 120
WINDOW_HOURS = 24
# A payout going back to pending from these states is a failed attempt (payout.failed).
FAILED_FROM = sql_in(P.BATCHED, P.SUBMITTED, P.CONFIRMED)
TIMELINE = (B.SEALED, B.BROADCAST, B.INCLUDED, B.CONFIRMED, B.FINALIZED, B.FAILED)

TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


@dataclass(frozen=True)
class Series:
    """Columns for a chart: ``x`` in Unix seconds, each named series of the same length
    (None where there is nothing to say, such as a ratio of no attempts)."""

    bucket_seconds: int
    x: list[int] = field(default_factory=list)
    series: dict[str, list[float | None]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"bucket_seconds": self.bucket_seconds, "x": self.x, "series": self.series}


def bucket_for(span_seconds: float) -> int:
    """The narrowest bucket that draws ``span_seconds`` in at most ``MAX_POINTS`` points."""
    for width in BUCKETS:
        if span_seconds / width <= MAX_POINTS:
            return width
    return BUCKETS[-1]


def _bucket(session: Session) -> int:
    span = session.execute(
        text(
            """
            SELECT extract(epoch FROM now() - min(at)) FROM transitions
             WHERE entity IN ('payout', 'batch')
               AND at > now() - make_interval(hours => :h)
            """
        ),
        {"h": WINDOW_HOURS},
    ).scalar()
    return bucket_for(float(span or 0))


# Every bucket from the window's first event to now, so a quiet bucket reads as zero.
_BUCKETS_SQL = """
    buckets AS (
      SELECT generate_series(
               date_bin(make_interval(secs => :b), coalesce(
                 (SELECT min(at) FROM transitions WHERE entity IN ('payout', 'batch')
                     AND at > now() - make_interval(hours => :h)), now()), TIMESTAMPTZ 'epoch'),
               date_bin(make_interval(secs => :b), now(), TIMESTAMPTZ 'epoch'),
               make_interval(secs => :b)) AS t)
"""


def _bin(column: str) -> str:
    return f"date_bin(make_interval(secs => :b), {column}, TIMESTAMPTZ 'epoch')"


def _finalized(entity: str) -> str:
    """``id, at``: each payout or batch finalized in the window, and when (both share the
    state's name)."""
    return f"""
        SELECT entity_id AS id, max(at) AS at FROM transitions
         WHERE entity = '{entity}' AND to_state = {P.FINALIZED.sql}
           AND at > now() - make_interval(hours => :h)
         GROUP BY entity_id"""


def _columns(rows: Any, bucket: int, names: list[str]) -> Series:
    out = Series(bucket, series={name: [] for name in names})
    for row in rows:
        out.x.append(int(row.x))
        for name in names:
            value = getattr(row, name)
            out.series[name].append(None if value is None else float(value))
    return out


def throughput(session: Session) -> Series:
    """Per hour: payouts finalized, payouts failed (back to pending from a batch), exceptions
    opened; and the success ratio (finalized of finalized + failed, in percent)."""
    bucket = _bucket(session)
    rows = session.execute(
        text(
            f"""
            WITH {_BUCKETS_SQL},
            moves AS (
              SELECT {_bin("at")} AS t,
                     count(*) FILTER (WHERE to_state = {P.FINALIZED.sql}) AS finalized,
                     count(*) FILTER (WHERE to_state = {P.PENDING.sql}
                                        AND from_state IN {FAILED_FROM}) AS failed
                FROM transitions
               WHERE entity = 'payout' AND at > now() - make_interval(hours => :h)
               GROUP BY 1),
            opened AS (
              SELECT {_bin("created_at")} AS t, count(*) AS n FROM exceptions
               WHERE created_at > now() - make_interval(hours => :h) GROUP BY 1)
            SELECT extract(epoch FROM b.t) AS x,
                   coalesce(m.finalized, 0) * 3600.0 / :b AS finalized,
                   coalesce(m.failed, 0) * 3600.0 / :b AS failed,
                   coalesce(o.n, 0) * 3600.0 / :b AS exceptions,
                   100.0 * m.finalized / nullif(m.finalized + m.failed, 0) AS success
              FROM buckets b LEFT JOIN moves m USING (t) LEFT JOIN opened o USING (t)
             ORDER BY b.t
            """
        ),
        {"b": bucket, "h": WINDOW_HOURS},
    )
    return _columns(rows, bucket, ["finalized", "failed", "exceptions", "success"])


def finality(session: Session) -> Series:
    """Seconds from a payout's first earning recorded to the payout final: p50 and p99 of the
    payouts finalized in each bucket."""
    bucket = _bucket(session)
    rows = session.execute(
        text(
            f"""
            WITH {_BUCKETS_SQL},
            final AS ({_finalized("payout")}),
            waited AS (
              SELECT {_bin("f.at")} AS t, extract(epoch FROM f.at - min(c.created_at)) AS secs
                FROM final f JOIN payouts p ON p.id = f.id {payout_credits_join("p")}
               GROUP BY f.id, f.at),
            pct AS (
              SELECT t, percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) AS p50,
                        percentile_cont(0.99) WITHIN GROUP (ORDER BY secs) AS p99
                FROM waited GROUP BY t)
            SELECT extract(epoch FROM b.t) AS x, p.p50, p.p99
              FROM buckets b LEFT JOIN pct p USING (t) ORDER BY b.t
            """
        ),
        {"b": bucket, "h": WINDOW_HOURS},
    )
    return _columns(rows, bucket, ["p50", "p99"])


def gas(session: Session) -> Series:
    """Of the batches finalized in each bucket: gas per payout, and the fee per payout in gwei
    (whole gwei: a chart's resolution, not an amount anyone is paid)."""
    bucket = _bucket(session)
    rows = session.execute(
        text(
            f"""
            WITH {_BUCKETS_SQL},
            final AS ({_finalized("batch")}),
            spent AS (
              SELECT {_bin("f.at")} AS t, sum(b.gas_used) AS gas,
                     sum(b.gas_used * b.effective_gas_price) AS fee, sum(b.item_count) AS n
                FROM final f JOIN batches b ON b.id = f.id GROUP BY 1)
            SELECT extract(epoch FROM k.t) AS x,
                   round(s.gas / nullif(s.n, 0)) AS gas_per_payout,
                   round(s.fee / nullif(s.n, 0) / 1000000000) AS fee_gwei_per_payout
              FROM buckets k LEFT JOIN spent s USING (t) ORDER BY k.t
            """
        ),
        {"b": bucket, "h": WINDOW_HOURS},
    )
    return _columns(rows, bucket, ["gas_per_payout", "fee_gwei_per_payout"])


CHARTS = {"throughput": throughput, "finality": finality, "gas": gas}


def tiles(session: Session) -> dict[str, int]:
    """The counts at the top of the page, cheap enough to read every few seconds: batches by
    state, open exceptions, holds waiting for review (index-sized reads, no ledger scan)."""
    reviewed = reviewed_sql("rule")
    by_state = ", ".join(f"count(*) FILTER (WHERE state = {s.sql}) AS {s.value}" for s in TIMELINE)
    row = session.execute(
        text(
            f"""
            SELECT (SELECT count(*) FROM exceptions WHERE state = {ExceptionState.OPEN.sql})
                     AS open_exceptions,
                   (SELECT count(*) FROM holds WHERE state = {HoldState.ACTIVE.sql}
                       AND ({reviewed})) AS in_review,
                   {by_state}
              FROM batches
            """
        )
    ).one()
    return {name: int(value) for name, value in row._mapping.items()}


# --- batches and their timelines ---------------------------------------------------------------

_ENTERED = ", ".join(
    f"max(t.at) FILTER (WHERE t.to_state = {s.sql}) AS {s.value}" for s in TIMELINE
)
_BATCHES = f"""
    SELECT b.id, b.public_id, a.symbol, a.decimals, b.state, b.item_count, b.total, b.nonce,
           b.tx_hash, b.block_number, b.gas_used, b.last_error, {_ENTERED}
      FROM batches b JOIN assets a ON a.id = b.asset_id
      LEFT JOIN transitions t ON t.entity = 'batch' AND t.entity_id = b.id
"""


def _batch_row(r: Any) -> dict[str, Any]:
    row = dict(r._mapping)
    row["public_id"] = str(r.public_id)
    row["total"] = int(r.total)
    row["timeline"] = [(s.value, row.pop(s.value)) for s in TIMELINE]
    return row


def batches(
    session: Session, *, limit: int = 20, ids: list[int] | None = None
) -> list[dict[str, Any]]:
    """The newest batches (or those of ``ids``), each with when it entered each state."""
    rows = session.execute(
        text(
            _BATCHES + " WHERE (CAST(:ids AS bigint[]) IS NULL OR b.id = ANY(:ids))"
            " GROUP BY b.id, a.symbol, a.decimals ORDER BY b.id DESC LIMIT :limit"
        ),
        {"ids": ids, "limit": limit},
    )
    return [_batch_row(r) for r in rows]


# --- the search box ------------------------------------------------------------------------------


def batches_of_tx(session: Session, tx_hash: str) -> list[int]:
    """The batches a transaction hash belongs to: the one it paid, or any attempt's."""
    return list(
        session.execute(
            text(
                """
                SELECT id FROM batches WHERE lower(tx_hash) = lower(:h)
                UNION SELECT batch_id FROM tx_attempts WHERE lower(tx_hash) = lower(:h)
                ORDER BY 1
                """
            ),
            {"h": tx_hash},
        ).scalars()
    )


_PAYOUTS = """
    SELECT p.id, p.state, p.amount, a.symbol, a.decimals, cr.external_id AS creator,
           m.name AS marketplace, p.recipient, p.batch_id, p.created_at
      FROM payouts p JOIN assets a ON a.id = p.asset_id JOIN creators cr ON cr.id = p.creator_id
      JOIN marketplaces m ON m.id = cr.marketplace_id
"""


def payouts_of_batches(session: Session, batch_ids: list[int]) -> list[dict[str, Any]]:
    """Every payout a batch was sealed with (a failed batch's payouts went on elsewhere)."""
    rows = session.execute(
        text(
            _PAYOUTS + " JOIN batch_items i ON i.payout_id = p.id"
            " WHERE i.batch_id = ANY(:ids) ORDER BY i.batch_id, i.position"
        ),
        {"ids": batch_ids},
    )
    return [{**r._mapping, "amount": int(r.amount)} for r in rows]


def payouts_of_creator(session: Session, needle: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """A creator's payouts, newest first, by their marketplace's id for them or by their
    payout address (in any marketplace)."""
    by_address = ADDRESS.fullmatch(needle) is not None
    rows = session.execute(
        text(
            _PAYOUTS + " WHERE (CASE WHEN :addr THEN lower(cr.payout_address) = lower(:n)"
            " ELSE cr.external_id = :n END) ORDER BY p.id DESC LIMIT :limit"
        ),
        {"addr": by_address, "n": needle, "limit": limit},
    )
    return [{**r._mapping, "amount": int(r.amount)} for r in rows]
