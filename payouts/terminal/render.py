"""Tables for people and JSON for scripts, from the same dictionaries the handlers return.

Output goes through a Console made per call, so it writes to whatever ``sys.stdout`` is then
(a test runner swaps it). Piped, there are no colours, and lines are wide enough that a tx hash
is never wrapped: a script should read ``--json`` anyway.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from payouts.money import format_units

PIPED_WIDTH = 200


def console() -> Console:
    out = Console(file=sys.stdout, highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out.width = PIPED_WIDTH
    return out


def echo_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(
    title: str | None, columns: Sequence[str], rows: Iterable[Sequence[object]], *, empty: str
) -> None:
    """One table; where there are no rows, the line ``empty`` (nothing if it is empty)."""
    out = console()
    shown = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        # Numbers line up on the right, the way people compare them.
        shown.add_column(column.lstrip(">"), justify="right" if column.startswith(">") else "left")
    count = 0
    for row in rows:
        shown.add_row(*("" if v is None else str(v) for v in row))
        count += 1
    if count:
        out.print(shown)
    elif empty:
        out.print(empty)


def status(data: dict[str, Any]) -> None:
    table(
        "Pipeline",
        ["what", "state", ">count"],
        (
            (what, state, n)
            for what, counts in data["counts"].items()
            for state, n in sorted(counts.items())
        ),
        empty="nothing recorded yet",
    )
    rows = []
    for symbol, a in data["assets"].items():
        d = a["decimals"]
        agree = "yes" if a["ledger_paid"] == a["onchain_paid"] else "NO"
        rows.append(
            (
                symbol,
                *(format_units(int(a[k]), d) for k in ("earned", "in_flight", "ledger_paid")),
                format_units(int(a["onchain_paid"]), d),
                agree,
            )
        )
    table(
        "Assets",
        ["asset", ">earned", ">in flight", ">ledger paid", ">on chain", "ledger == chain"],
        rows,
        empty="no assets",
    )
    console().print(f"open exceptions: {data['open_exceptions']}")


def exceptions(rows: list[dict[str, Any]], state: str) -> None:
    table(
        None,
        [">id", "status", "kind", "about", "opened"],
        (
            (
                r["id"],
                r["status"],
                r["kind"],
                f"batch {r['batch_id']}" if r["batch_id"] else f"payout {r['payout_id']}",
                r["created_at"],
            )
            for r in rows
        ),
        empty=f"no {state} exceptions",
    )


def exception(row: dict[str, Any]) -> None:
    facts = {k: v for k, v in row.items() if k != "detail"}
    table(None, ["field", "value"], facts.items(), empty="")
    console().print("evidence:")
    echo_json(row.get("detail"))


def transitions(title: str, rows: list[dict[str, Any]]) -> None:
    table(
        title,
        ["at", "from", "to", "cause", "actor"],
        (
            (t["at"], t["from_state"] or "created", t["to_state"], t["cause"], t["actor"])
            for t in rows
        ),
        empty=f"{title}: no transitions",
    )


def trace(data: dict[str, Any]) -> None:
    """An earning, its payout and every batch that carried it, each with its transitions."""
    if "earning" in data:
        e = data["earning"]
        console().print(
            f"earning {e['id']} ({e['idempotency_key']}) of {e['creator']} at"
            f" {e['marketplace']}: {e['amount']} {e['symbol']}, {e['state']}"
        )
        transitions(f"earning {e['id']}", data["earning_transitions"])
    if "payout" not in data:
        console().print("not rolled up into a payout yet")
        return
    p = data["payout"]
    console().print(f"payout {p['id']} to {p['recipient']}: {p['amount']}, {p['state']}")
    transitions(f"payout {p['id']}", data["payout_transitions"])
    for b in data["batches"]:
        console().print(
            f"batch {b['id']} position {b['position']}: {b['state']}, nonce {b['nonce']},"
            f" tx {b['tx_hash']}, block {b['block_number']}"
        )
        transitions(f"batch {b['id']}", b["transitions"])
        for orphan in b["orphaned_inclusions"]:
            console().print(f"  orphaned by a reorg: {orphan}")


def holds(rows: list[dict[str, Any]], empty: str) -> None:
    def figures(h: dict[str, Any]) -> str:
        return " ".join(f"{k}={v}" for k, v in h["figures"].items() if k != "rule")

    table(
        None,
        [">id", "status", "rule", "creator", "payout", ">amount", "reason", "figures", "until"],
        (
            (
                h["id"],
                h["status"],
                h["rule"],
                h["creator_id"],
                h["payout_id"] or "all",
                h["amount"],
                h["reason"],
                figures(h),
                h["expires_at"],
            )
            for h in rows
        ),
        empty=empty,
    )


def deny_list(rows: list[dict[str, Any]]) -> None:
    table(
        None,
        ["address", "reason", "source", "imported by"],
        ((r["address"], r["reason"], r["source"], r["imported_by"]) for r in rows),
        empty="the deny list is empty",
    )


def endpoints(rows: list[dict[str, Any]]) -> None:
    def failing(e: dict[str, Any]) -> str:
        if not e["failures"]:
            return ""
        return f"{e['failures']} failures, next try {e['retry_at']}"

    table(
        None,
        [">id", "status", "marketplace", "url", "types", ">delivered", "failing", "why"],
        (
            (
                e["id"],
                e["status"],
                e["marketplace"],
                e["url"],
                ",".join(e["event_types"]) or "all",
                f"{e['delivered_seq']}/{e['last_seq']}",
                failing(e),
                e["disabled_reason"],
            )
            for e in rows
        ),
        empty="no webhook endpoints",
    )


def attempts(rows: list[dict[str, Any]], endpoint_id: int) -> None:
    table(
        None,
        ["at", "event", ">seq", ">try", ">ms", "outcome", "answer"],
        (
            (
                a["created_at"],
                a["event_id"],
                a["seq"],
                a["attempt"],
                a["latency_ms"],
                a["status"] if a["status"] is not None else f"no answer: {a['error']}",
                (a["response"] or "").replace("\n", " ")[:60],
            )
            for a in rows
        ),
        empty=f"no attempts for endpoint {endpoint_id}",
    )


def events(rows: list[dict[str, Any]], after: int) -> None:
    table(
        None,
        [">seq", "id", "at", "type", "data"],
        ((e["seq"], e["id"], e["timestamp"], e["type"], json.dumps(e["data"])) for e in rows),
        empty=f"no events after {after}",
    )
