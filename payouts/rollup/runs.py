"""The hourly roll-up: accrued credits become one payout per creator and asset.

Exactly once per window: the window's row in ``rollup_runs`` is inserted first, and its
unique key makes a second run (a retried task, a second beat) wait for the first to commit
and then do nothing. The credits of the window are copied once into a temporary table and
every later step (sums, links, ledger) reads that copy, so the credits summed are exactly
the credits linked; a credit that changed state meanwhile aborts the run instead.

Amounts are rounded down to the asset's ``rounding_unit``; the remainder stays in the
creator's dust account and is added to the next payout, never lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import events, lifecycle
from payouts.ledger.accounts import AccountKind, ensure_accounts
from payouts.ledger.journals import open_journal
from payouts.rollup.windows import PayoutRule, RollupResult
from payouts.states import CreditState


def roll_up(
    session: Session,
    window_start: datetime,
    window_end: datetime,
    rules: Mapping[int, PayoutRule],
    *,
    actor: str = "beat",
) -> RollupResult:
    """Roll up one window. The caller commits."""
    run_id = session.execute(
        text(
            """
            INSERT INTO rollup_runs (window_start, window_end) VALUES (:start, :end)
            ON CONFLICT (window_start) DO NOTHING RETURNING id
            """
        ),
        {"start": window_start, "end": window_end},
    ).scalar()
    if run_id is None:
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

    asset_list = sorted(rules)
    # Dropped at commit; dropped here too, so a unit of work may roll up more than one window.
    session.execute(text("DROP TABLE IF EXISTS pg_temp.rollup_credits, pg_temp.rollup_candidates"))
    session.execute(
        text(
            f"""
            CREATE TEMP TABLE rollup_credits ON COMMIT DROP AS
            SELECT id, creator_id, asset_id, amount FROM credits
             WHERE state = {CreditState.ACCRUED.sql} AND created_at < :end
               AND asset_id = ANY(:assets)
            """
        ),
        {"end": window_end, "assets": asset_list},
    )
    session.execute(
        text(
            """
            CREATE TEMP TABLE rollup_candidates ON COMMIT DROP AS
            WITH sums AS (
                SELECT creator_id, asset_id, sum(amount) AS credited, count(*) AS credits
                  FROM rollup_credits GROUP BY creator_id, asset_id
            ), carried AS (
                SELECT a.owner_id AS creator_id, a.asset_id, -sum(e.amount) AS carried
                  FROM accounts a JOIN entries e ON e.account_id = a.id
                 WHERE a.kind = 'creator_dust'
                 GROUP BY a.owner_id, a.asset_id
            ), rules AS (
                SELECT * FROM unnest(CAST(:assets AS bigint[]), CAST(:mins AS numeric[]),
                                     CAST(:units AS numeric[])) AS r(asset_id, min_payout, unit)
            ), owed AS (
                SELECT s.creator_id, s.asset_id, s.credited, s.credits,
                       coalesce(d.carried, 0) AS carried, c.payout_address,
                       div(s.credited + coalesce(d.carried, 0), r.unit) * r.unit AS amount,
                       r.min_payout
                  FROM sums s
                  JOIN creators c ON c.id = s.creator_id
                  JOIN rules r ON r.asset_id = s.asset_id
                  LEFT JOIN carried d ON d.creator_id = s.creator_id AND d.asset_id = s.asset_id
                 WHERE c.payout_address IS NOT NULL
                   AND (c.hold_until IS NULL OR c.hold_until <= now())
            )
            SELECT creator_id, asset_id, credited, credits, carried, payout_address, amount,
                   credited + carried - amount AS dust
              FROM owed WHERE amount >= min_payout AND amount > 0
            """
        ),
        {
            "end": window_end,
            "assets": asset_list,
            "mins": [rules[a].min_payout for a in asset_list],
            "units": [rules[a].rounding_unit for a in asset_list],
        },
    )
    counts = session.execute(
        text(
            "SELECT count(*) AS payouts, coalesce(sum(credits), 0) AS credits,"
            " coalesce(sum(amount), 0) AS total FROM rollup_candidates"
        )
    ).one()
    if counts.payouts == 0:
        return RollupResult(window_start, window_end, True, 0, 0, 0)

    _ensure_rollup_accounts(session, asset_list)
    # The payouts and their payout.created events, in one statement.
    created = events.insert_sql("payout", "'payout.created'", source="created", cause="'rolled up'")
    session.execute(
        text(
            f"""
            WITH created AS (
                INSERT INTO payouts (creator_id, asset_id, amount, recipient, window_start,
                                     rollup_run_id)
                SELECT creator_id, asset_id, amount, payout_address, :start, :run
                  FROM rollup_candidates ORDER BY asset_id, creator_id
                RETURNING *, CAST(NULL AS text) AS from_state
            ), evented AS ({created})
            SELECT 1
            """
        ),
        {"start": window_start, "run": run_id, "_event": "{}"},
    )
    linked = _link_credits(session, run_id, actor)
    if linked != counts.credits:
        raise RuntimeError(
            f"window {window_start.isoformat()}: {counts.credits} credits summed but {linked} "
            "linked (a credit changed state meanwhile); nothing is kept, run it again"
        )
    _post_rollup_journal(session, run_id, window_start)
    session.execute(
        text("UPDATE rollup_runs SET payout_count = :p, credit_count = :c WHERE id = :run"),
        {"p": counts.payouts, "c": counts.credits, "run": run_id},
    )
    return RollupResult(
        window_start, window_end, True, counts.payouts, int(counts.credits), int(counts.total)
    )


def _ensure_rollup_accounts(session: Session, asset_list: list[int]) -> None:
    rows = session.execute(
        text("SELECT creator_id, asset_id FROM rollup_candidates WHERE carried <> 0 OR dust <> 0")
    ).all()
    ensure_accounts(
        session,
        [(AccountKind.PAYOUTS_IN_FLIGHT, None, a) for a in asset_list]
        + [(AccountKind.CREATOR_DUST, r.creator_id, r.asset_id) for r in rows],
    )


def _link_credits(session: Session, run_id: int, actor: str) -> int:
    return lifecycle.move_rows(
        session,
        lifecycle.CREDIT,
        CreditState.ACCRUED,
        CreditState.ROLLED_UP,
        rows="""
            SELECT rc.id, p.id AS payout_id FROM rollup_credits rc JOIN payouts p
                ON p.creator_id = rc.creator_id AND p.asset_id = rc.asset_id
             WHERE p.rollup_run_id = :run
        """,
        params={"run": run_id},
        columns=["payout_id"],
        cause="'rolled into payout ' || src.payout_id",
        actor=actor,
    )


def _post_rollup_journal(session: Session, run_id: int, window_start: datetime) -> None:
    journal_id = open_journal(session, "rollup", f"roll-up of window {window_start.isoformat()}")
    # Per payout: Dr payable (credited) + Dr dust (carried in) = Cr in flight (amount)
    # + Cr dust (new remainder). Owned accounts are joined on owner_id equality and the
    # ownerless in-flight account on its own: IS NOT DISTINCT FROM cannot use the unique
    # index, and compared every leg with every account (19 s for 10,000 payouts).
    session.execute(
        text(
            """
            WITH legs AS (
                SELECT p.id AS payout_id, 'creator_payable' AS kind, p.creator_id AS owner,
                       p.asset_id, rc.credited AS amount
                  FROM payouts p JOIN rollup_candidates rc USING (creator_id, asset_id)
                 WHERE p.rollup_run_id = :run
                UNION ALL
                SELECT p.id, 'creator_dust', p.creator_id, p.asset_id, rc.carried - rc.dust
                  FROM payouts p JOIN rollup_candidates rc USING (creator_id, asset_id)
                 WHERE p.rollup_run_id = :run AND rc.carried - rc.dust <> 0
            )
            INSERT INTO entries (journal_id, account_id, amount, payout_id)
            SELECT :journal, a.id, legs.amount, legs.payout_id
              FROM legs JOIN accounts a ON a.kind = legs.kind
               AND a.owner_id = legs.owner AND a.asset_id = legs.asset_id
            UNION ALL
            SELECT :journal, a.id, -p.amount, p.id
              FROM payouts p JOIN accounts a ON a.kind = 'payouts_in_flight'
               AND a.owner_id IS NULL AND a.asset_id = p.asset_id
             WHERE p.rollup_run_id = :run
            """
        ),
        {"run": run_id, "journal": journal_id},
    )
