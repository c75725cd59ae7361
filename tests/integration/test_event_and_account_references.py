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


@pytest.mark.parametrize("table", sorted(ORPHANS))
def test_a_row_naming_a_missing_row_is_refused(
    ledger_runtime: Runtime, uow: UnitOfWork, table: str
) -> None:
    marketplace_id, asset_id = _marketplace_and_asset(ledger_runtime)
    sql, match = ORPHANS[table]
    sqlstate = _refused(uow, sql.format(m=marketplace_id, a=asset_id), match)
    assert sqlstate == FOREIGN_KEY_VIOLATION
    with uow() as session:
        assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0


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
