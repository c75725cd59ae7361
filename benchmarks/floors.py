"""Floors: the least work PostgreSQL or the node must do for what a scenario measures.

Each floor runs in the same run as the value it stands beside, on the same server and the
same data, so ``value ÷ floor`` says how far the pipeline is from what this machine allows:

- **Ingest**: the bulk path's earnings as credits and their entries (one payable entry per
  credit, one funding entry per 10,000, as the ledger writes them), already rendered in
  COPY's text format, COPYed in transactions of the bulk path's size. No request parsing,
  hashing, id look-ups or checks: ids are assigned by the client (COPY returns nothing).
- **Roll-up**: one statement: a bare GROUP BY of the same credits into a payouts look-alike
  (rounded down to the unit, below the minimum left out, as the roll-up rules say) plus one
  entry per payout on the creator's payable account. No runs, states, audit, dust or holds;
  the roll-up's ``work_mem``.
- **Reconciliation**: the hot wallet's Transfer logs of the same blocks, read with one raw
  ``eth_getLogs`` (an httpx POST and ``json.loads``), then decoded by slicing lowercase hex
  and parsing integers. No SQL at all: the ledger's writes are not in this floor.

Look-alike tables are ``CREATE TABLE floor_t (LIKE t INCLUDING ALL)``: the ledger table's
columns, defaults, checks and indexes (so they follow its migrations), none of its foreign
keys or triggers. They are ordinary logged tables, as the ledger's are: the WAL is part of
what a durable write costs, so an unlogged or temporary table would set a floor no ledger
could reach.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from payouts.chain import codec
from payouts.chain.client import collector_off
from payouts.rollup.runs import WORK_MEM


@dataclass(frozen=True)
class EarningRow:
    """One earning with its ledger ids already resolved."""

    creator_id: int
    account_id: int  # the creator's payable account
    amount: int
    key: str


@dataclass(frozen=True)
class RollupFloor:
    seconds: float
    payouts: int
    total: int


@dataclass(frozen=True)
class LogsFloor:
    fetch_seconds: float  # the POST and json.loads
    decode_seconds: float
    transfers: int
    total: int
    response_bytes: int

    @property
    def seconds(self) -> float:
        return self.fetch_seconds + self.decode_seconds


def _connect(url: str) -> psycopg.Connection[Any]:
    plain = make_url(url).set(drivername="postgresql")
    return psycopg.connect(plain.render_as_string(hide_password=False))


def _look_alike(conn: psycopg.Connection[Any], tables: Sequence[str]) -> None:
    for table in tables:
        conn.execute(f"CREATE TABLE floor_{table} (LIKE {table} INCLUDING ALL)")
    conn.commit()


_CREDIT_COLUMNS = (
    "id, marketplace_id, creator_id, asset_id, amount, idempotency_key, request_hash,"
    " occurred_at, journal_id"
)
_ENTRY_COLUMNS = "id, journal_id, account_id, amount, credit_id"


def _copy_chunks(
    rows: Sequence[EarningRow], marketplace_id: int, asset_id: int, funding: int, chunk: int
) -> list[tuple[bytes, bytes]]:
    """The COPY input of each transaction: its credits, then its entries."""
    occurred = datetime.now(UTC).isoformat()
    chunks = []
    entry_id = 0
    for journal, low in enumerate(range(0, len(rows), chunk), start=1):
        part = rows[low : low + chunk]
        credits, entries = [], []
        for credit_id, row in enumerate(part, start=low + 1):
            digest = hashlib.sha256(row.key.encode()).hexdigest()
            credits.append(
                f"{credit_id}\t{marketplace_id}\t{row.creator_id}\t{asset_id}\t{row.amount}\t"
                f"{row.key}\t{digest}\t{occurred}\t{journal}\n"
            )
            entry_id += 1
            entries.append(f"{entry_id}\t{journal}\t{row.account_id}\t{-row.amount}\t{credit_id}\n")
        entry_id += 1
        entries.append(f"{entry_id}\t{journal}\t{funding}\t{sum(r.amount for r in part)}\t\\N\n")
        chunks.append(("".join(credits).encode(), "".join(entries).encode()))
    return chunks


def copy_earnings(
    url: str,
    rows: Sequence[EarningRow],
    *,
    marketplace_id: int,
    asset_id: int,
    funding_account: int,
    chunk: int,
) -> float:
    """Seconds to COPY ``rows`` as credits and entries, ``chunk`` earnings per commit."""
    chunks = _copy_chunks(rows, marketplace_id, asset_id, funding_account, chunk)
    with _connect(url) as conn:
        _look_alike(conn, ("credits", "entries"))
        started = time.perf_counter()
        for credits, entries in chunks:
            with conn.cursor() as cursor:
                with cursor.copy(f"COPY floor_credits ({_CREDIT_COLUMNS}) FROM STDIN") as copy:
                    copy.write(credits)
                with cursor.copy(f"COPY floor_entries ({_ENTRY_COLUMNS}) FROM STDIN") as copy:
                    copy.write(entries)
            conn.commit()
        return time.perf_counter() - started


_GROUP_BY = """
    WITH sums AS (
        SELECT creator_id, asset_id, div(sum(amount), %(unit)s) * %(unit)s AS amount
          FROM credits GROUP BY creator_id, asset_id
    ), paid AS (
        INSERT INTO floor_payouts (creator_id, asset_id, amount, recipient, window_start,
                                   rollup_run_id)
        SELECT s.creator_id, s.asset_id, s.amount, c.payout_address, %(start)s, 0
          FROM sums s JOIN creators c ON c.id = s.creator_id
         WHERE s.amount >= %(minimum)s AND c.payout_address IS NOT NULL
        RETURNING id, creator_id, asset_id, amount
    ), legs AS (
        INSERT INTO floor_entries (journal_id, account_id, amount, payout_id)
        SELECT 0, a.id, p.amount, p.id
          FROM paid p JOIN accounts a ON a.kind = 'creator_payable'
           AND a.owner_id = p.creator_id AND a.asset_id = p.asset_id
        RETURNING amount
    )
    SELECT count(*), coalesce(sum(amount), 0) FROM legs
"""


def group_by_rollup(
    url: str, *, window_start: datetime, rounding_unit: int, min_payout: int
) -> RollupFloor:
    """One GROUP BY of every credit into payouts and their entries, committed."""
    with _connect(url) as conn:
        _look_alike(conn, ("payouts", "entries"))
        # The memory the roll-up gives its aggregate, so the floor is not slowed by spills
        # the roll-up is spared.
        conn.execute(f"SET work_mem = '{WORK_MEM}'")
        params = {"unit": rounding_unit, "start": window_start, "minimum": min_payout}
        started = time.perf_counter()
        row = conn.execute(_GROUP_BY, params).fetchone()
        conn.commit()
        seconds = time.perf_counter() - started
    assert row is not None
    return RollupFloor(seconds, int(row[0]), int(row[1]))


def raw_transfer_logs(rpc_url: str, token: str, payer: str, to_block: int) -> LogsFloor:
    """Fetch and decode the Transfer logs from ``payer`` in blocks 0..``to_block``."""
    request = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_getLogs",
            "params": [
                {
                    "address": token,
                    "topics": [codec.TRANSFER, codec.address_topic(payer)],
                    "fromBlock": "0x0",
                    "toBlock": hex(to_block),
                }
            ],
        }
    ).encode()
    headers = {"content-type": "application/json"}
    # The collector off while the answer is decoded, as the reconciler's client has it: the
    # floor is the least a process must do, and a collection finds no cycle in parsed JSON.
    with httpx.Client(timeout=300) as client, collector_off():
        started = time.perf_counter()
        response = client.post(rpc_url, content=request, headers=headers)
        logs = json.loads(response.content)["result"]
        fetched = time.perf_counter()
        transfers = [
            (
                log["transactionHash"],
                int(log["logIndex"], 16),
                "0x" + log["topics"][2][-40:].lower(),
                int(log["data"], 16),
            )
            for log in logs
        ]
        decoded = time.perf_counter()
    return LogsFloor(
        fetch_seconds=fetched - started,
        decode_seconds=decoded - fetched,
        transfers=len(transfers),
        total=sum(t[3] for t in transfers),
        response_bytes=len(response.content),
    )
