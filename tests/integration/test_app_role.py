"""The role the API and the workers connect as: it runs the pipeline, and PostgreSQL refuses it
every way of rewriting the ledger (migration 0012, ``payouts.db.migrate``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

import devstack
from payouts import events
from payouts.db import engine_for
from payouts.db.migrate import grant_app_login
from payouts.errors import InvalidInput
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.tracking import reports
from tests.chainkit import (
    assert_chain_pays_what_the_ledger_says,
    mine,
    roll_up_now,
    scalar,
    seed,
    settle_and_submit,
)
from tests.conftest import chain_settings

# Each is refused to the app role; the owner (the test's postgres) could do every one.
REFUSED = [
    "UPDATE entries SET amount = amount",
    "UPDATE journals SET cause = cause",
    "UPDATE transitions SET cause = cause",
    "UPDATE credits SET amount = amount",
    "UPDATE credits SET state = state",  # written once: its state is derived
    "UPDATE account_balances SET account_id = account_id",
    "UPDATE payouts SET amount = amount",
    "UPDATE batch_items SET amount = amount",
    "UPDATE onchain_transfers SET amount = amount",
    "DELETE FROM entries",
    "DELETE FROM credits",
    "DELETE FROM transitions",
    "TRUNCATE entries",
    "TRUNCATE journals CASCADE",
    "TRUNCATE credits CASCADE",
    "ALTER TABLE entries DISABLE TRIGGER entries_append_only",
    "ALTER TABLE journals DISABLE TRIGGER ALL",
    "ALTER TABLE credits DISABLE TRIGGER credits_immutable",
    "ALTER TABLE entries ADD COLUMN note text",
    "ALTER TABLE credits DROP CONSTRAINT credit_amount_positive",
    "DROP TRIGGER transitions_append_only ON transitions",
    # Replica mode skips ordinary triggers: the ledger's guards would sleep.
    "SET session_replication_role = replica",
    "UPDATE alembic_version SET version_num = '0001'",
]


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    args = make_url(url).translate_connect_args(username="user", database="dbname")
    return psycopg.connect(**args, autocommit=True)


@pytest.fixture
def app_url(db_url: str) -> Iterator[str]:
    """The test's database as the app connects to it: a login member of the app role."""
    role = f"payouts_app_test_{os.getpid()}"
    url = (
        make_url(db_url)
        .set(username=role, password="app secret %")
        .render_as_string(hide_password=False)
    )
    grant_app_login(db_url, url)
    grant_app_login(db_url, url)  # a second `payouts db upgrade` finds the role in place
    yield url
    engine_for(url).dispose()
    with _connect(db_url) as owner:
        owner.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_the_app_role_is_refused_every_rewrite_of_the_ledger(app_url: str) -> None:
    with _connect(app_url) as app:
        assert app.execute("SELECT current_user").fetchone() == (make_url(app_url).username,)
        allowed = []
        for statement in REFUSED:
            try:
                app.execute(statement)
            except psycopg.errors.InsufficientPrivilege:
                continue
            allowed.append(statement)
        assert allowed == []
        # What it may do: read everything, and move a state.
        assert app.execute("SELECT count(*) FROM entries").fetchone() == (0,)
        app.execute("UPDATE payouts SET state = state")


def test_the_pipeline_runs_as_the_app_role(
    app_url: str, anvil: devstack.Anvil, deployment: devstack.DevDeployment
) -> None:
    rt = Runtime(chain_settings(app_url, anvil.url, deployment))
    recipients = seed(rt, creators=3)
    assert roll_up_now(rt) == 3
    assert len(settle_and_submit(rt)) == 1
    reconciler.reconcile(rt)
    mine(rt, 3)

    assert reconciler.reconcile(rt).advance.finalized == 1
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state <> 'finalized'") == 0
    with rt.uow() as session:
        assert events.sequence(session) > 0
        session.commit()
    with rt.uow() as session:
        assert reports.check(session).ok
        assert session.execute(text("SELECT current_user")).scalar() != "postgres"


def test_an_administrative_role_is_not_made_the_app_role(db_url: str) -> None:
    role = f"payouts_admin_test_{os.getpid()}"
    with _connect(db_url) as owner:
        owner.execute(f'CREATE ROLE "{role}" CREATEDB')
        try:
            url = make_url(db_url).set(username=role).render_as_string(hide_password=False)
            with pytest.raises(InvalidInput, match="administrative"):
                grant_app_login(db_url, url)
            assert owner.execute(
                "SELECT pg_has_role(%s, 'payouts_app', 'MEMBER')", [role]
            ).fetchone() == (False,)
        finally:
            owner.execute(f'DROP ROLE "{role}"')


def test_a_long_transaction_in_another_database_holds_no_roll_up_back(
    app_url: str, pg_server_url: str, anvil: devstack.Anvil, deployment: devstack.DevDeployment
) -> None:
    # The roll-up claims credits below the first running transaction that could insert one.
    # The app role sees only part of other users' rows in pg_stat_activity (their database
    # and transaction id, not their backend type): enough to tell a transaction of another
    # database, which inserts none of our credits, from one of ours; otherwise one forgotten
    # psql session anywhere on the server would stall every run.
    rt = Runtime(chain_settings(app_url, anvil.url, deployment))
    with _connect(pg_server_url) as elsewhere:
        elsewhere.execute("BEGIN")
        elsewhere.execute("SELECT pg_current_xact_id()")  # it holds a transaction id, open
        seed(rt, creators=2)
        assert roll_up_now(rt) == 2
        elsewhere.execute("ROLLBACK")
