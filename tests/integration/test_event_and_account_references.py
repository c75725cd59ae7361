"""Events and accounts check what they name once per statement (migration 0018), and the
database still refuses an orphan exactly as the foreign keys did."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from payouts.db import UnitOfWork
from payouts.runtime import Runtime

FOREIGN_KEY_VIOLATION = "23503"
RESTRICT_VIOLATION = "23001"


def _refused(uow: UnitOfWork, sql: str, match: str) -> str | None:
    with uow() as session:
        with pytest.raises(DBAPIError, match=match) as raised:
            session.execute(text(sql))
        session.rollback()
    return getattr(raised.value.orig, "sqlstate", None)


def _refused_whole(uow: UnitOfWork, table: str, sql: str, match: str) -> None:
    """Refused as the foreign key refused it, the statement's good rows with its orphan."""
    count = text(f"SELECT count(*) FROM {table}")
    with uow() as session:
        before = session.execute(count).scalar_one()
    assert _refused(uow, sql, match) == FOREIGN_KEY_VIOLATION
    with uow() as session:
        assert session.execute(count).scalar_one() == before


def _marketplace_and_asset(rt: Runtime) -> tuple[int, int]:
    with rt.uow() as session:
        asset_id = rt.sync_assets(session)["USDC"]
        marketplace_id = int(
            session.execute(
                text("INSERT INTO marketplaces (name) VALUES ('refs') RETURNING id")
            ).scalar_one()
        )
        session.commit()
    return marketplace_id, asset_id


# One good row beside the orphan: the whole statement goes, as it did with the key.
ORPHANS = {
    "events": (
        "INSERT INTO events (marketplace_id, type, subject, payload) VALUES"
        " ({m}, 'payout.created', 'payout:1', '{{}}'), ({m} + 1000, 'payout.created',"
        " 'payout:2', '{{}}')",
        r"events: marketplace_id \d+ names no row of marketplaces",
    ),
    "accounts": (
        "INSERT INTO accounts (kind, owner_id, asset_id) VALUES"
        " ('creator_dust', 1, {a}), ('creator_dust', 2, {a} + 1000)",
        r"accounts: asset_id \d+ names no row of assets",
    ),
}


def test_an_account_never_changes_its_asset(ledger_runtime: Runtime, uow: UnitOfWork) -> None:
    _, asset_id = _marketplace_and_asset(ledger_runtime)
    with uow() as session:
        account_id = session.execute(
            text(
                "INSERT INTO accounts (kind, owner_id, asset_id)"
                " VALUES ('creator_dust', 1, :a) RETURNING id"
            ),
            {"a": asset_id},
        ).scalar_one()
        session.commit()
    sqlstate = _refused(
        uow,
        f"UPDATE accounts SET asset_id = asset_id + 1000 WHERE id = {account_id}",
        "accounts: money-bearing columns never change",
    )
    assert sqlstate == RESTRICT_VIOLATION


# Above a thousand rows the check is planned for the statement's own size (migration 0021):
# one orphan among thousands is still refused. Each statement names one missing row last.
ORPHANS |= {
    "entries": (
        "WITH j AS (INSERT INTO journals (kind, cause) VALUES ('test', 'large') RETURNING id)"
        " INSERT INTO entries (journal_id, account_id, amount)"
        " SELECT j.id, CASE WHEN g < 3000 THEN {account} ELSE {account} + 1000 END, 1"
        " FROM j, generate_series(1, 3000) g",
        r"entries: account_id \d+ names no row of accounts",
    ),
    "payouts": (
        "INSERT INTO payouts (creator_id, asset_id, amount, recipient, window_start,"
        " rollup_run_id)"
        " SELECT CASE WHEN g < 3000 THEN {creator} ELSE {creator} + 1000 END, {a}, 1,"
        " '0x0000000000000000000000000000000000000001', now() + g * interval '1 hour', {run}"
        " FROM generate_series(1, 3000) g",
        r"payouts: creator_id \d+ names no row of creators",
    ),
}


@pytest.mark.parametrize("table", sorted(ORPHANS))
def test_a_statement_naming_a_missing_row_is_refused(
    ledger_runtime: Runtime, uow: UnitOfWork, table: str
) -> None:
    marketplace_id, asset_id = _marketplace_and_asset(ledger_runtime)
    with uow() as session:
        named = session.execute(
            text(
                """
                WITH c AS (
                    INSERT INTO creators (marketplace_id, external_id) VALUES (:m, 'big')
                    RETURNING id
                ), a AS (
                    INSERT INTO accounts (kind, owner_id, asset_id)
                    SELECT 'creator_payable', id, :a FROM c RETURNING id
                ), r AS (
                    INSERT INTO rollup_runs (window_start, window_end, actor, xid_from, xid_to)
                    VALUES (now(), now(), 'test', '1', '1') RETURNING id
                )
                SELECT c.id AS creator, a.id AS account, r.id AS run FROM c, a, r
                """
            ),
            {"m": marketplace_id, "a": asset_id},
        ).one()
        session.commit()
    sql, match = ORPHANS[table]
    names = {"account": named.account, "creator": named.creator, "run": named.run}
    _refused_whole(uow, table, sql.format(m=marketplace_id, a=asset_id, **names), match)
