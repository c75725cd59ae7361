"""Configuration and connection problems as one line, a hint and an exit code.

An operator who mistypes ``PAYOUTS_DATABASE_URL`` or starts a command before PostgreSQL or the
node is up needs to read what to fix, not a traceback of the driver's internals; ``--debug``
still prints the traceback. Exit codes (documented in ``payouts --help``):

0  done
1  a check or comparison failed, or what was asked for does not exist
2  bad input (a usage error, a refused value, a bad file)
3  configuration: a setting is missing or malformed
4  a service does not answer: PostgreSQL, Redis or the chain's RPC node
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.exc import InterfaceError, OperationalError

from payouts.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    InvalidInput,
    NotFound,
    PayoutsError,
    TransientChainError,
)

FAILED = 1
BAD_INPUT = 2
CONFIGURATION = 3
UNAVAILABLE = 4

SETTINGS_HINT = "see the Settings table in README.md"
HINTS = {
    "database_url": "postgresql+psycopg://USER@HOST:5432/DATABASE, or unset for the embedded"
    " server",
    "assets": 'a JSON list such as [{"symbol": "USDC", "decimals": 6, "address": "0x..."}]',
    "submit_retry_delays_seconds": "a JSON list of seconds such as [15, 60, 300]",
    "webhook_retry_delays_seconds": "a JSON list of seconds such as [5, 300, 1800]",
}


# What psycopg raises outside SQLAlchemy (the dev tooling connects with it directly).
_PG_DOWN = psycopg.OperationalError | psycopg.InterfaceError


@dataclass(frozen=True)
class Failure:
    code: int
    message: str
    hint: str | None = None

    def line(self) -> str:
        return f"error: {self.message}" + (f" (hint: {self.hint})" if self.hint else "")


def explain(exc: BaseException, *, rpc_url: str | None = None) -> Failure | None:
    """The one line an operator reads for ``exc``, or None for a bug (keep its traceback)."""
    if isinstance(exc, ValidationError) and exc.title == "Settings":
        return _invalid_setting(exc)
    if isinstance(exc, SettingsError):
        return _unparsable_setting(exc)
    if isinstance(exc, DatabaseUnavailable | OperationalError | InterfaceError | _PG_DOWN):
        return Failure(
            UNAVAILABLE,
            f"cannot use PostgreSQL: {_root_cause(exc)}",
            "is the server running, and is PAYOUTS_DATABASE_URL right?",
        )
    if isinstance(exc, BrokerUnavailable):
        return Failure(UNAVAILABLE, str(exc), "is Redis running, and is PAYOUTS_REDIS_URL right?")
    if isinstance(exc, TransientChainError):
        where = f" at {rpc_url}" if rpc_url else ""
        return Failure(
            UNAVAILABLE,
            f"cannot reach the chain's node{where}: {exc}",
            "is the node running, and is PAYOUTS_RPC_URL right?",
        )
    if isinstance(exc, InvalidInput) and exc.code == "not_configured":
        return Failure(CONFIGURATION, str(exc), SETTINGS_HINT)
    if isinstance(exc, NotFound):
        return Failure(FAILED, f"not found: {exc}")
    if isinstance(exc, PayoutsError):
        return Failure(BAD_INPUT, str(exc))
    return None


def _invalid_setting(exc: ValidationError) -> Failure:
    first = exc.errors()[0]
    name, *inner = [str(part) for part in first["loc"]] or ["settings"]
    where = f"[{']['.join(inner)}]" if inner else ""
    more = len(exc.errors()) - 1
    others = f" (and {more} more)" if more else ""
    message = first["msg"].removeprefix("Value error, ")
    return Failure(
        CONFIGURATION,
        f"PAYOUTS_{name.upper()}{where}: {message}{others}",
        HINTS.get(name, SETTINGS_HINT),
    )


def _unparsable_setting(exc: SettingsError) -> Failure:
    found = re.search(r'field "([^"]+)"', str(exc))
    name = found.group(1) if found else "settings"
    cause = f": {_root_cause(exc)}" if exc.__cause__ else ""
    return Failure(
        CONFIGURATION,
        f"PAYOUTS_{name.upper()} is not valid JSON{cause}",
        HINTS.get(name, SETTINGS_HINT),
    )


def _root_cause(exc: BaseException) -> str:
    """The first line of what the innermost cause said: the driver's words, not ours."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
