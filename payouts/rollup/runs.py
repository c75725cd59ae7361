"""The hourly roll-up: the credits a run claims become one payout per creator and asset.

A credit is never rewritten. A run claims the credits by the transaction that inserted them
(``credits.created_xid``): every id from where the last run stopped up to the first
transaction of this database still running when the run began (its own aside). Below that
bound every inserting transaction has ended, so each credit there is visible now and no
credit will ever commit there again; a credit whose transaction began before the run and
commits after it lies above the bound and is the next run's. The ranges of successive runs
(``rollup_runs.xid_from``/``xid_to``) touch and never overlap, runs taking an advisory lock in
turn, so every credit is claimed exactly once. A credit's state then follows from its run and
that run's payout for its creator (the ``credit_states`` view).

Exactly once per window: the window's row in ``rollup_runs`` (unique start) is inserted with
the claim, so a second run of a window (a retried task, a second beat) waits for the first to
commit and then does nothing.

Every creator with claimed credits is settled in one journal: a payout, rounded down to the
asset's ``rounding_unit``, when what they are owed (the credits plus what they carry) reaches
the minimum, the remainder carried; otherwise all of it carried (below the minimum, no
address, on hold). A creator who carries enough to be paid on that alone is paid too. What a
creator carries is read from ``account_balances``, kept by the statements that post to the
carry account, never summed over its history.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import events, lifecycle
from payouts.ledger.accounts import AccountKind, ensure_accounts
from payouts.rollup.windows import PayoutRule, RollupResult

# Runs claim one after another: a run's range starts where the last committed one ended.
ROLLUP_LOCK = 0x726F6C6C7570  # "rollup"

# The claim and the window's row, in one statement: its snapshot is the run's view of which
# transactions have ended, and its list of running ones (``pg_snapshot_xip``) the only ids
# that can hold a run back. A credit records its top-level transaction
# (``pg_current_xact_id``), so a subtransaction's id never matters: pg_stat_activity does not
# show it, and counting it as running held runs back behind another database's savepoints.
# Ids are compared as bigint (xid8 has no arithmetic). A running
# transaction of another database, or of no client (autovacuum analysing a table), never
# inserts our credits and holds no run back; pg_stat_activity shows its xid without the
# epoch, hence the modulo. The app role is not shown another role's backend type, but it is
# shown that a process runs as no role at all (autovacuum, the server's own workers). The
# range stops below the run's own transaction (it may insert credits after the run); what
# that transaction inserted before the run (a test's earnings and roll-ups in one
# transaction) is claimed by id instead.
_CLAIM = """
    WITH last AS (
        SELECT coalesce(max(xid_to), CAST('1' AS xid8)) AS xid_from FROM rollup_runs
    ), snap AS (
        SELECT s, CAST(CAST(pg_snapshot_xmin(s) AS text) AS bigint) AS xmin,
               CAST(CAST(pg_snapshot_xmax(s) AS text) AS bigint) AS xmax,
               pg_current_xact_id_if_assigned() AS own
          FROM pg_current_snapshot() s
    ), span AS (
        SELECT last.xid_from, snap.own, snap.xmax,
               greatest(CAST(CAST(last.xid_from AS text) AS bigint), snap.xmin) AS lo,
               CAST(CAST(snap.own AS text) AS bigint) AS own_id
          FROM last, snap
    ), elsewhere AS (
        SELECT CAST(CAST(backend_xid AS text) AS bigint) AS xid FROM pg_stat_activity
         WHERE backend_xid IS NOT NULL
           AND (datname IS DISTINCT FROM current_database() OR backend_type <> 'client backend'
                OR usesysid IS NULL)
    ), running AS (
        SELECT min(r.x) AS xid FROM span, snap, LATERAL (
            SELECT CAST(CAST(v AS text) AS bigint) AS x FROM pg_snapshot_xip(snap.s) v) r
         WHERE r.x >= span.lo AND r.x IS DISTINCT FROM span.own_id
           AND r.x % 4294967296 NOT IN (SELECT xid FROM elsewhere)
    ), own AS (
        SELECT span.own,
               (SELECT coalesce(max(o.own_id_to), 0) FROM rollup_runs o
                 WHERE o.own_xid = span.own) AS id_from,
               CASE WHEN span.own IS NOT NULL THEN
                   (SELECT max(c.id) FROM credits c WHERE c.created_xid = span.own) END AS id_to
          FROM span
    )
    INSERT INTO rollup_runs (window_start, window_end, actor, xid_from, xid_to, own_xid,
                             own_id_to)
    SELECT :start, :end, :actor, span.xid_from,
           CAST(CAST(greatest(CAST(CAST(span.xid_from AS text) AS bigint),
                              least(coalesce(running.xid, span.xmax), span.own_id,
                                    span.xmax)) AS text) AS xid8),
           CASE WHEN own.id_to > own.id_from THEN own.own END,
           CASE WHEN own.id_to > own.id_from THEN own.id_to END
      FROM span, running, own
    ON CONFLICT (window_start) DO NOTHING
    RETURNING id, xid_from, xid_to, own_xid, own_id_to
"""


def roll_up(
    session: Session,
    window_start: datetime,
    window_end: datetime,
    rules: Mapping[int, PayoutRule],
    *,
    actor: str = "beat",
) -> RollupResult:
    """Roll up one window. The caller commits."""
    # A statement of its own: the claim's snapshot must be taken once the lock is ours.
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ROLLUP_LOCK})
    run = session.execute(
        text(_CLAIM), {"start": window_start, "end": window_end, "actor": actor}
    ).one_or_none()
    if run is None:
        done = session.execute(
            text(
                "SELECT r.payout_count, r.credit_count, coalesce(sum(p.amount), 0) AS total"
                " FROM rollup_runs r LEFT JOIN payouts p ON p.rollup_run_id = r.id"
                " WHERE r.window_start = :start GROUP BY r.id"
            ),
            {"start": window_start},
        ).one()
        return RollupResult(
            window_start, window_end, False, done.payout_count, done.credit_count, int(done.total)
        )
    # The run's aggregate (a million credits into one group per creator) and the sets its
    # statement passes between CTEs (a row per creator) fit in memory here; at the server's
    # default every one of them spilled to disk, a third of the statement.
    session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    asset_list = sorted(rules)
    in_flight = ensure_accounts(
        session, [(AccountKind.PAYOUTS_IN_FLIGHT, None, a) for a in asset_list]
    )
    counts = session.execute(
        text(_ROLLUP),
        {
            "from": run.xid_from,
            "to": run.xid_to,
            "own": run.own_xid,
            "own_from": _own_claimed_before(session, run),
            "own_to": run.own_id_to,
            "assets": asset_list,
            "mins": [rules[a].min_payout for a in asset_list],
            "units": [rules[a].rounding_unit for a in asset_list],
            "in_flight": [in_flight[(AccountKind.PAYOUTS_IN_FLIGHT, None, a)] for a in asset_list],
            "run": run.id,
            "start": window_start,
            "cause": f"roll-up of window {window_start.isoformat()}",
            "_event": "{}",
            "_actor": actor,
        },
    ).one()
    return RollupResult(
        window_start, window_end, True, counts.payouts, int(counts.credits), int(counts.total)
    )


def _own_claimed_before(session: Session, run: Any) -> int | None:
    """The last credit id an earlier run of this transaction claimed of its own."""
    if run.own_xid is None:
        return None
    return int(
        session.execute(
            text(
                "SELECT coalesce(max(own_id_to), 0) FROM rollup_runs"
                " WHERE own_xid = CAST(:own AS xid8) AND id <> :run"
            ),
            {"own": run.own_xid, "run": run.id},
        ).scalar_one()
    )


WORK_MEM = "64MB"

# Per creator and asset with claimed credits, or carrying enough to be paid on that alone:
# what they are credited and carry, their payable and carry accounts, and what they are paid
# (0: all of it carried). Ids are drawn here, in creator order, for the payouts and for the
# carry accounts still missing, so every later CTE reads this one set and none joins another
# CTE (the planner cannot size a CTE; such a join went quadratic before).
_CANDIDATES = """
    claimed_credits AS (
        SELECT c.creator_id, c.asset_id, c.amount FROM credits c
         WHERE c.created_xid >= CAST(:from AS xid8) AND c.created_xid < CAST(:to AS xid8)
           AND NOT EXISTS (SELECT 1 FROM rollup_runs o
                            WHERE o.own_xid = c.created_xid AND o.own_id_to >= c.id)
        UNION ALL
        SELECT c.creator_id, c.asset_id, c.amount FROM credits c
         WHERE c.created_xid = CAST(:own AS xid8) AND c.id > :own_from AND c.id <= :own_to
    ), sums AS (
        SELECT creator_id, asset_id, sum(amount) AS credited, count(*) AS credits
          FROM claimed_credits GROUP BY creator_id, asset_id
    ), rules AS (
        SELECT r.*, (SELECT a.symbol FROM assets a WHERE a.id = r.asset_id) AS symbol
          FROM unnest(CAST(:assets AS bigint[]), CAST(:mins AS numeric[]),
                      CAST(:units AS numeric[]), CAST(:in_flight AS bigint[]))
               AS r(asset_id, min_payout, unit, in_flight)
    ), carrying AS (
        -- Paid on what they carry alone (an address set since, a hold ended).
        SELECT d.owner_id AS creator_id, d.asset_id, 0 AS credited, 0 AS credits
          FROM account_balances b
          JOIN accounts d ON d.id = b.account_id AND d.kind = 'creator_dust'
          JOIN rules r ON r.asset_id = d.asset_id
          JOIN creators c ON c.id = d.owner_id
         WHERE div(-b.balance, r.unit) * r.unit >= greatest(r.min_payout, 1)
           AND c.payout_address IS NOT NULL
           AND (c.hold_until IS NULL OR c.hold_until <= now())
           AND NOT EXISTS (SELECT 1 FROM sums s
                            WHERE s.creator_id = d.owner_id AND s.asset_id = d.asset_id)
    ), claimed AS (
        SELECT * FROM sums UNION ALL SELECT * FROM carrying
    ), owed AS (
        SELECT s.creator_id, s.asset_id, s.credited, s.credits, c.payout_address,
               c.marketplace_id, c.external_id, r.symbol, p.id AS payable_account,
               d.id AS carry_account, b.account_id IS NULL AS no_balance, r.in_flight,
               CASE WHEN c.payout_address IS NOT NULL
                     AND (c.hold_until IS NULL OR c.hold_until <= now())
                    THEN div(s.credited + coalesce(-b.balance, 0), r.unit) * r.unit
               END AS due,
               r.min_payout
          FROM claimed s
          JOIN creators c ON c.id = s.creator_id
          LEFT JOIN rules r ON r.asset_id = s.asset_id
          LEFT JOIN accounts p ON p.kind = 'creator_payable'
               AND p.owner_id = s.creator_id AND p.asset_id = s.asset_id
          LEFT JOIN accounts d ON d.kind = 'creator_dust'
               AND d.owner_id = s.creator_id AND d.asset_id = s.asset_id
          LEFT JOIN account_balances b ON b.account_id = d.id
    ), paid AS (
        SELECT o.*, CASE WHEN due >= min_payout AND due > 0 THEN due ELSE 0 END AS amount
          FROM owed o
    ), candidates AS MATERIALIZED (
        -- nextval is volatile, so PostgreSQL draws it after the sort: ids in creator order.
        SELECT creator_id, asset_id, credited, credits, payout_address AS recipient,
               marketplace_id, external_id, symbol, payable_account, in_flight, amount,
               amount - credited AS carry_change,
               CASE WHEN amount > 0 THEN nextval('payouts_id_seq') END AS payout_id,
               carry_account IS NULL AND amount <> credited AS new_carry, no_balance,
               CASE WHEN carry_account IS NOT NULL OR amount = credited THEN carry_account
                    ELSE nextval('accounts_id_seq') END AS carry_account
          FROM paid ORDER BY asset_id, creator_id
    )"""

# The whole run after its claim, in one statement: the carry accounts still missing, the
# payouts with their payout.created events and one audit row each (both written from the
# candidates, which hold all they say), one journal (per creator:
# Dr payable what was credited = Cr in flight what is paid + Cr carry what the carried balance
# grows by, negative when a payout takes carried dust out; in flight one leg per asset), the
# carried balances, the run's counts. A carry account created meanwhile by another
# transaction makes the insert fail on its unique key, and the retried run finds it.
_ROLLUP = f"""
    WITH {_CANDIDATES}, journal AS (
        INSERT INTO journals (kind, cause)
        SELECT 'rollup', :cause WHERE EXISTS (SELECT FROM candidates)
        RETURNING id
    ), carry_accounts AS (
        INSERT INTO accounts (id, kind, owner_id, asset_id)
        SELECT carry_account, 'creator_dust', creator_id, asset_id FROM candidates
         WHERE new_carry
    ), created AS (
        INSERT INTO payouts (id, creator_id, asset_id, amount, recipient, window_start,
                             rollup_run_id)
        SELECT payout_id, creator_id, asset_id, amount, recipient, :start, :run
          FROM candidates WHERE amount > 0
    ), evented AS ({
    events.created_payouts_sql(source="candidates", where="m.amount > 0", cause="'rolled up'")
}), audited AS ({
    lifecycle.created_sql(
        lifecycle.PAYOUT,
        source="(SELECT payout_id AS id FROM candidates WHERE amount > 0) n",
        cause="'rolled up in run ' || CAST(:run AS text)",
    )
}), legs AS (
        SELECT payable_account AS account_id, credited AS amount, payout_id
          FROM candidates WHERE credits > 0
        UNION ALL
        SELECT carry_account, carry_change, payout_id FROM candidates WHERE carry_change <> 0
        UNION ALL
        SELECT in_flight, -sum(amount), CAST(NULL AS bigint) FROM candidates
         WHERE amount > 0 GROUP BY in_flight
    ), posted AS (
        INSERT INTO entries (journal_id, account_id, amount, payout_id)
        SELECT (SELECT id FROM journal), account_id, amount, payout_id FROM legs
    ), carried AS (
        INSERT INTO account_balances (account_id, balance)
        SELECT carry_account, carry_change FROM candidates
         WHERE carry_change <> 0 AND NOT no_balance
        ON CONFLICT (account_id)
        DO UPDATE SET balance = account_balances.balance + EXCLUDED.balance
    ), first_carried AS (
        -- A carry account without a balance yet (created above, or with the payable one
        -- at ingest): a plain insert, which skips the upsert's probe and speculative
        -- insertion (a tenth of the statement). A balance another transaction wrote
        -- meanwhile fails it on the unique key, and the retried run upserts.
        INSERT INTO account_balances (account_id, balance)
        SELECT carry_account, carry_change FROM candidates
         WHERE carry_change <> 0 AND no_balance
    ), totals AS (
        SELECT count(*) FILTER (WHERE amount > 0) AS payouts,
               coalesce(sum(credits) FILTER (WHERE amount > 0), 0) AS credits,
               coalesce(sum(amount), 0) AS total
          FROM candidates
    ), counted AS (
        UPDATE rollup_runs r SET payout_count = t.payouts, credit_count = t.credits
          FROM totals t WHERE r.id = :run
    )
    SELECT payouts, credits, total FROM totals
"""
