"""Earnings from a CSV file, for ``payouts earnings import``.

A header names the columns: ``idempotency_key`` (or ``reference`` alone, which is then the
key too), ``creator_id``, ``amount`` (integer base units, written as the API takes them) and
``asset``; ``reference`` and ``occurred_at`` (ISO 8601 with a UTC offset) are optional. Each
row keeps its line number, so a refusal says where to look.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from payouts.errors import InvalidInput
from payouts.ingest.earnings import Earning
from payouts.money import parse_amount

REQUIRED = ("creator_id", "amount", "asset")


@dataclass(frozen=True)
class Row:
    line: int
    earning: Earning | None
    error: str | None = None


def read(lines: Iterable[str]) -> list[Row]:
    """Every data row, parsed; a row that does not parse carries its error instead."""
    reader = csv.DictReader(lines)
    columns = set(reader.fieldnames or ())
    missing = [c for c in REQUIRED if c not in columns]
    if not {"idempotency_key", "reference"} & columns:
        missing.insert(0, "idempotency_key")
    if missing:
        raise InvalidInput(
            f"the header lacks {', '.join(missing)}; columns are idempotency_key (or"
            " reference), creator_id, amount, asset and optionally reference, occurred_at",
            field="header",
        )
    rows = []
    for record in reader:
        try:
            rows.append(Row(reader.line_num, _earning(record)))
        except InvalidInput as exc:
            rows.append(Row(reader.line_num, None, f"{exc.field}: {exc}"))
    return rows


def _earning(record: dict[str, str | None]) -> Earning:
    def cell(name: str) -> str:
        return (record.get(name) or "").strip()

    reference = cell("reference") or None
    return Earning(
        idempotency_key=cell("idempotency_key") or reference or "",
        creator_id=cell("creator_id"),
        amount=parse_amount(cell("amount")),
        asset=cell("asset"),
        occurred_at=_occurred_at(cell("occurred_at")),
        reference=reference,
    )


def _occurred_at(value: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            "occurred_at must be ISO 8601 with a UTC offset, e.g. 2026-01-31T12:00:00Z",
            field="occurred_at",
        ) from None
