"""Recipient screening before a batch is sealed, so a denied address never reaches a batch.

Two sources: the operators' deny list (imported from a file, kept as history: the latest row
of an address says whether it is denied), and, where the token has one, the token's own deny
check (``isBlocked(address)``, ``isBlacklisted(address)``, ...) read for every recipient of a
candidate batch with one JSON-RPC batch of ``eth_call``. A payout to a denied address is
held (rule ``deny_list`` or ``token_deny``) with the evidence, for an operator's review;
before, the token refused it inside the batch and the creator was held afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eth_utils.crypto import keccak
from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.catalog import checked_address
from payouts.chain.client import ChainClient
from payouts.errors import InvalidInput

DENY_LIST = "deny_list"
TOKEN_DENY = "token_deny"  # noqa: S105 - a rule name, not a secret


@dataclass(frozen=True)
class Entry:
    address: str
    reason: str


def parse_deny_file(lines: Iterable[str]) -> list[Entry]:
    """``address[,reason]`` per line; blank lines and ``#`` comments are skipped. A bad line
    refuses the whole file, naming the line."""
    entries = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        address, _, reason = line.partition(",")
        try:
            checked = checked_address(address.strip(), field="address")
        except InvalidInput as exc:
            raise InvalidInput(f"line {number}: {exc}", field="file", code=exc.code) from exc
        entries.append(Entry(checked, reason.strip() or "imported"))
    return entries


def import_entries(
    session: Session, entries: Sequence[Entry], *, listed: bool, source: str, actor: str
) -> int:
    """Append the entries (one statement); returns how many addresses changed status."""
    if not entries:
        return 0
    changed = session.execute(
        text(
            """
            WITH incoming AS (
                SELECT DISTINCT ON (address) address, reason
                  FROM unnest(CAST(:addresses AS text[]), CAST(:reasons AS text[]))
                       AS v(address, reason)
            ), current AS (
                SELECT DISTINCT ON (address) address, listed FROM deny_list
                 WHERE address IN (SELECT address FROM incoming)
                 ORDER BY address, id DESC
            ), added AS (
                INSERT INTO deny_list (address, listed, reason, source, imported_by)
                SELECT i.address, :listed, i.reason, :source, :actor FROM incoming i
                  LEFT JOIN current c USING (address)
                 WHERE c.listed IS DISTINCT FROM :listed
                RETURNING 1
            )
            SELECT count(*) FROM added
            """
        ),
        {
            "addresses": [e.address for e in entries],
            "reasons": [e.reason for e in entries],
            "listed": listed,
            "source": source,
            "actor": actor,
        },
    ).scalar_one()
    return int(changed)


# The addresses denied now: the latest row of each, where it lists the address.
DENIED = """
    SELECT DISTINCT ON (address) id, address, reason, source FROM deny_list
     ORDER BY address, id DESC
"""


def denied(session: Session, addresses: Sequence[str]) -> dict[str, dict[str, str]]:
    """Which of ``addresses`` the deny list names now, with the entry's evidence."""
    rows = session.execute(
        text(
            f"""
            SELECT d.* FROM ({DENIED}) d
             WHERE d.address = ANY(:addresses)
               AND (SELECT listed FROM deny_list WHERE id = d.id)
            """
        ),
        {"addresses": list(addresses)},
    ).all()
    return {r.address: {"entry": str(r.id), "reason": r.reason, "source": r.source} for r in rows}


def listing(session: Session) -> list[dict[str, str]]:
    rows = session.execute(
        text(
            f"""
            SELECT d.address, d.reason, d.source, l.imported_by, l.imported_at
              FROM ({DENIED}) d JOIN deny_list l ON l.id = d.id
             WHERE l.listed ORDER BY d.address
            """
        )
    ).all()
    return [
        {
            "address": r.address,
            "reason": r.reason,
            "source": r.source,
            "imported_by": r.imported_by,
            "imported_at": r.imported_at.isoformat(),
        }
        for r in rows
    ]


def token_denied(chain: ChainClient, token: str, check: str, recipients: Sequence[str]) -> set[str]:
    """The recipients the token's own ``check`` (a ``f(address) returns (bool)`` signature)
    says it would refuse, read with one batch of ``eth_call``."""
    distinct = sorted(set(recipients))
    if not distinct:
        return set()
    selector = keccak(text=check)[:4].hex()
    answers = chain.call_many(
        [(token, "0x" + selector + a[2:].lower().rjust(64, "0")) for a in distinct]
    )
    return {a for a, answer in zip(distinct, answers, strict=True) if int(answer or "0x0", 16)}
