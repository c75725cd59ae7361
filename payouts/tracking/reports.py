"""Read-only views for operators: status, the invariant check and the trace of one item.

What the chain paid is read from canonical inclusions only (``CANONICAL_TRANSFERS``): a block
a reorg took away keeps its rows in ``onchain_transfers``, and they count for nothing. One
check keeps that filter honest: no finalized payout may owe its payment to an inclusion
recorded orphaned unless its batch landed again after the reorg.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.claims.audit import LEDGER_CHECKS as CLAIMS_CHECKS
from payouts.errors import NotFound
from payouts.lifecycle import CREDIT_UNCLAIMED
from payouts.reconcile.inclusions import CANONICAL_TRANSFERS, orphaned_of
from payouts.states import PAYOUT_IN_FLIGHT, ExceptionState, sql_in
from payouts.states import BatchState as B
from payouts.states import CreditState as C
from payouts.states import PayoutState as P

IN_FLIGHT = sql_in(*PAYOUT_IN_FLIGHT)
WORK_MEM = "64MB"


def status(session: Session) -> dict[str, Any]:
    """Counts by state and totals by asset; ledger paid out next to what the chain showed."""
    counts: dict[str, dict[str, int]] = {}
    # A credit's state is derived (``credit_states``); the others are stored.
    tables = {"credits": "credit_states", "payouts": "payouts", "batches": "batches"}
    for name, table in {**tables, "tx_attempts": "tx_attempts"}.items():
        rows = session.execute(text(f"SELECT state, count(*) FROM {table} GROUP BY state"))
        counts[name] = {state: int(n) for state, n in rows}
    assets = {}
    for row in session.execute(
        text(
            f"""
            WITH transfers AS (
              -- A transaction pays a position once on any one chain, whichever block it is in.
              SELECT DISTINCT ON (o.tx_hash, o.position) o.batch_id, o.amount
                FROM ({CANONICAL_TRANSFERS}) o WHERE o.succeeded
               ORDER BY o.tx_hash, o.position),
            onchain AS (
              SELECT b.asset_id, sum(t.amount) AS paid FROM transfers t
                JOIN batches b ON b.id = t.batch_id GROUP BY b.asset_id)
            SELECT a.symbol, a.decimals,
              (SELECT coalesce(sum(amount), 0) FROM credits c WHERE c.asset_id = a.id) AS earned,
              (SELECT coalesce(sum(amount), 0) FROM payouts p
                WHERE p.asset_id = a.id AND p.state = {P.FINALIZED.sql}) AS ledger_paid,
              coalesce((SELECT paid FROM onchain WHERE onchain.asset_id = a.id), 0)
                AS onchain_paid,
              (SELECT coalesce(sum(amount), 0) FROM payouts p
                WHERE p.asset_id = a.id AND p.state IN {IN_FLIGHT}) AS in_flight
              FROM assets a ORDER BY a.symbol
            """
        )
    ):
        assets[row.symbol] = {
            "decimals": row.decimals,
            "earned": str(int(row.earned)),
            "in_flight": str(int(row.in_flight)),
            "ledger_paid": str(int(row.ledger_paid)),
            "onchain_paid": str(int(row.onchain_paid)),
        }
    exceptions = session.execute(
        text(f"SELECT count(*) FROM exceptions WHERE state = {ExceptionState.OPEN.sql}")
    ).scalar_one()
    return {"counts": counts, "assets": assets, "open_exceptions": int(exceptions)}


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class CheckReport:
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


# Every entry summed once, in one scan and one statement, for the checks below that prove
# the ledger from its entries: per journal and asset (``journal_sums``) and per account
# (``account_sums``, with the account's kind, owner and asset). A million-credit ledger is
# read once instead of once per check.
ENTRY_SUMS = """
    sums AS MATERIALIZED (
        SELECT e.journal_id, e.account_id, a.asset_id, sum(e.amount) AS amount
          FROM entries e JOIN accounts a ON a.id = e.account_id
         GROUP BY GROUPING SETS ((e.journal_id, a.asset_id), (e.account_id, a.asset_id))
    ), journal_sums AS (
        SELECT journal_id, asset_id, amount FROM sums WHERE account_id IS NULL
    ), account_sums AS (
        SELECT a.id AS account_id, a.kind, a.owner_id, a.asset_id, s.amount AS balance
          FROM sums s JOIN accounts a ON a.id = s.account_id
    )"""

# Each check is a query that returns offending rows; none means the invariant holds. These
# read ENTRY_SUMS and run together, in one statement (so also on one snapshot).
ENTRY_CHECKS: list[tuple[str, str]] = [
    (
        "every journal sums to zero per asset",
        "SELECT journal_id, asset_id, amount FROM journal_sums WHERE amount <> 0",
    ),
    (
        "all balances sum to zero per asset",
        """SELECT asset_id, sum(amount) FROM journal_sums GROUP BY 1
           HAVING sum(amount) <> 0""",
    ),
    (
        "creator payable balance equals the creator's unrolled credits",
        f"""WITH ledger AS (
               SELECT owner_id AS creator_id, asset_id, -balance AS owed FROM account_sums
                WHERE kind = 'creator_payable'),
             credits AS (
               SELECT creator_id, asset_id, sum(amount) AS owed FROM credits c
                WHERE {CREDIT_UNCLAIMED} GROUP BY 1, 2)
           SELECT * FROM ledger l FULL JOIN credits c USING (creator_id, asset_id)
            WHERE coalesce(l.owed, 0) <> coalesce(c.owed, 0)""",
    ),
    (
        "payouts in flight equal the payouts not yet final",
        f"""WITH ledger AS (
               SELECT asset_id, -sum(balance) AS owed FROM account_sums
                WHERE kind = 'payouts_in_flight' GROUP BY 1),
             open AS (
               SELECT asset_id, sum(amount) AS owed FROM payouts
                WHERE state IN {IN_FLIGHT} GROUP BY 1)
           SELECT * FROM ledger l FULL JOIN open o USING (asset_id)
            WHERE coalesce(l.owed, 0) <> coalesce(o.owed, 0)""",
    ),
    (
        "each carried balance equals its carry account's entries",
        """WITH ledger AS (
               SELECT account_id, balance FROM account_sums WHERE kind = 'creator_dust')
           SELECT * FROM ledger l FULL JOIN account_balances b USING (account_id)
            WHERE coalesce(l.balance, 0) <> coalesce(b.balance, 0)""",
    ),
]

# Every check: those over the entries, then the others, one query each.
CHECKS: list[tuple[str, str]] = [
    *ENTRY_CHECKS,
    (
        "every finalized payout was paid on chain exactly once",
        f"""SELECT p.id, count(DISTINCT o.tx_hash) FROM payouts p
             LEFT JOIN ({CANONICAL_TRANSFERS}) o ON o.payout_id = p.id AND o.succeeded
            WHERE p.state = {P.FINALIZED.sql} AND p.settled_by IS DISTINCT FROM 'claim'
            GROUP BY p.id
           HAVING count(DISTINCT o.tx_hash) <> 1""",
    ),
    (
        "no payout was paid by two transactions",
        f"""SELECT o.payout_id, count(DISTINCT o.tx_hash) FROM ({CANONICAL_TRANSFERS}) o
            WHERE o.succeeded GROUP BY o.payout_id HAVING count(DISTINCT o.tx_hash) > 1""",
    ),
    (
        # The two checks above leave orphaned inclusions out; this one keeps that honest. A
        # reorg's record is written as its batch goes back to broadcast (``unwound_by``), and
        # a batch is final only after it landed again, later. A record no such landing
        # followed hides a transfer that may be on the chain: a payment counted nowhere.
        "no finalized payout's paying transfer is in an orphaned inclusion",
        f"""SELECT p.id, x.batch_id, x.tx_hash, x.block_hash FROM payouts p
             JOIN onchain_transfers o ON o.payout_id = p.id AND o.succeeded
             JOIN orphaned_inclusions x ON x.block_hash = o.block_hash AND x.tx_hash = o.tx_hash
            WHERE p.state = {P.FINALIZED.sql} AND NOT EXISTS (
                  SELECT 1 FROM transitions t WHERE t.entity = 'batch'
                     AND t.entity_id = x.batch_id AND t.to_state = {B.INCLUDED.sql}
                     AND t.id > x.unwound_by)""",
    ),
    (
        "roll-up runs claim credits in ranges that touch and never overlap",
        """SELECT r.id, r.xid_from, r.xid_to FROM rollup_runs r
            WHERE r.xid_to < r.xid_from OR r.xid_from <> coalesce(
                  (SELECT q.xid_to FROM rollup_runs q WHERE q.id < r.id ORDER BY q.id DESC
                    LIMIT 1), CAST('1' AS xid8))""",
    ),
    (
        "a batch's items add up to its total",
        """SELECT b.id FROM batches b JOIN batch_items i ON i.batch_id = b.id
            GROUP BY b.id, b.total, b.item_count
           HAVING sum(i.amount) <> b.total OR count(*) <> b.item_count""",
    ),
    (
        "every state change has its audit row",
        f"""SELECT 'payout', p.id FROM payouts p WHERE p.state <> {P.PENDING.sql} AND NOT EXISTS (
               SELECT 1 FROM transitions t WHERE t.entity = 'payout' AND t.entity_id = p.id
                  AND t.to_state = p.state)
           UNION ALL
           SELECT 'batch', b.id FROM batches b WHERE b.state <> {B.OPEN.sql} AND NOT EXISTS (
               SELECT 1 FROM transitions t WHERE t.entity = 'batch' AND t.entity_id = b.id
                  AND t.to_state = b.state)""",
    ),
    # Claimable and escrow balances (``payouts.claims.audit``); the chain's side is read by
    # the handler, which has a node.
    *CLAIMS_CHECKS,
]


def check(session: Session, on_result: Callable[[CheckResult], None] | None = None) -> CheckReport:
    """Every check in ``CHECKS``; ``on_result`` hears of each as it ends (a progress bar)."""
    report = CheckReport()
    over_entries = _entry_checks(session)
    for name, sql in CHECKS:
        if name in over_entries:
            report.results.append(over_entries[name])
        else:
            rows = session.execute(text(sql + " LIMIT 5")).all()
            detail = "; ".join(str(tuple(r)) for r in rows)
            report.results.append(CheckResult(name, not rows, detail))
        if on_result is not None:
            on_result(report.results[-1])
    return report


def _entry_checks(session: Session) -> dict[str, CheckResult]:
    # Every entry's account is in one hash table and every account's sum in another: both
    # fit in memory here, where at the server's default they spilled to disk.
    session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    offending = " UNION ALL ".join(
        f"SELECT {n} AS n, CAST(ROW(x.*) AS text) AS row FROM ({sql} LIMIT 5) x"
        for n, (_, sql) in enumerate(ENTRY_CHECKS)
    )
    found: dict[int, list[str]] = {}
    for row in session.execute(text(f"WITH {ENTRY_SUMS} {offending}")):
        found.setdefault(row.n, []).append(row.row)
    return {
        name: CheckResult(name, n not in found, "; ".join(found.get(n, [])))
        for n, (name, _) in enumerate(ENTRY_CHECKS)
    }


def awaiting_depth(session: Session, finality_depth: int) -> list[dict[str, Any]]:
    """Batches on their way to finality: sent, or in a block and waiting for blocks on top of
    it, with the depth each must reach (its own, never shallower than ``finality_depth``)."""
    rows = session.execute(
        text(
            f"""
            SELECT id, state, block_number,
                   greatest(coalesce(finality_depth, 0), :final) AS final_at
              FROM batches WHERE state IN {sql_in(B.BROADCAST, B.INCLUDED, B.CONFIRMED)}
             ORDER BY id
            """
        ),
        {"final": finality_depth},
    )
    return [dict(r._mapping) for r in rows]


def trace(session: Session, kind: str, item_id: int) -> dict[str, Any]:
    """Everything that happened to an earning or a payout, up to the block that carried it."""
    if kind == "earning":
        credit = session.execute(
            text(
                "SELECT c.id, c.amount, s.state, c.idempotency_key, c.created_at, s.payout_id,"
                " m.name AS marketplace, cr.external_id AS creator, a.symbol, s.rollup_run_id"
                " FROM credits c JOIN credit_states s ON s.credit_id = c.id"
                " JOIN marketplaces m ON m.id = c.marketplace_id"
                " JOIN creators cr ON cr.id = c.creator_id JOIN assets a ON a.id = c.asset_id"
                " WHERE c.id = :id"
            ),
            {"id": item_id},
        ).one_or_none()
        if credit is None:
            raise NotFound(f"earning {item_id}")
        earning = credit._asdict()
        run_id = earning.pop("rollup_run_id")
        out: dict[str, Any] = {
            "earning": {**earning, "amount": str(int(credit.amount))},
            "earning_transitions": _credit_transitions(session, run_id, credit.payout_id),
        }
        if credit.payout_id is not None:
            out.update(trace(session, "payout", credit.payout_id))
        return out
    if kind != "payout":
        raise NotFound(kind)
    payout = session.execute(
        text(
            "SELECT id, amount, recipient, state, batch_id, window_start FROM payouts"
            " WHERE id = :id"
        ),
        {"id": item_id},
    ).one_or_none()
    if payout is None:
        raise NotFound(f"payout {item_id}")
    batches = session.execute(
        text(
            """
            SELECT b.id, b.state, b.nonce, b.tx_hash, b.block_number, b.block_hash, b.gas_used,
                   i.position FROM batch_items i JOIN batches b ON b.id = i.batch_id
             WHERE i.payout_id = :id ORDER BY b.id
            """
        ),
        {"id": item_id},
    ).all()
    return {
        "payout": {**payout._asdict(), "amount": str(int(payout.amount))},
        "payout_transitions": _transitions(session, "payout", item_id),
        "batches": [
            {
                **b._asdict(),
                "transitions": _transitions(session, "batch", b.id),
                # Where a reorg took the batch's transaction away (history, paid nothing).
                "orphaned_inclusions": orphaned_of(session, b.id),
            }
            for b in batches
        ],
    }


def _credit_transitions(
    session: Session, run_id: int | None, payout_id: int | None
) -> list[dict[str, Any]]:
    """A credit's history, read from what made its state: the run that claimed it, then
    its payout's end (a credit row is never moved, so it has no audit rows of its own)."""
    if run_id is None:
        return []
    run = session.execute(
        text("SELECT actor, created_at FROM rollup_runs WHERE id = :id"), {"id": run_id}
    ).one()
    if payout_id is None:
        cause = f"carried: run {run_id} paid its creator nothing"
        return [_step(C.ACCRUED, C.CARRIED, cause, run.actor, run.created_at)]
    steps = [_step(C.ACCRUED, C.ROLLED_UP, f"rolled into payout {payout_id}", run.actor,
                   run.created_at)]  # fmt: skip
    ends = {P.FINALIZED: (C.PAID, "finalized"), P.CANCELLED: (C.CARRIED, "cancelled into carry")}
    for t in _transitions(session, "payout", payout_id):
        if t["to_state"] in ends:
            to, what = ends[P(t["to_state"])]
            steps.append(_step(C.ROLLED_UP, to, f"payout {payout_id} {what}", t["actor"], t["at"]))
    return steps


def _step(from_state: C, to_state: C, cause: str, actor: str, at: datetime) -> dict[str, Any]:
    return {
        "from_state": str(from_state),
        "to_state": str(to_state),
        "cause": cause,
        "actor": actor,
        "at": at,
    }


def _transitions(session: Session, entity: str, entity_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        text(
            "SELECT from_state, to_state, cause, actor, at FROM transitions"
            " WHERE entity = :e AND entity_id = :id ORDER BY id"
        ),
        {"e": entity, "id": entity_id},
    )
    return [dict(r._mapping) for r in rows]
