"""Reading the CLI's Rich tables back in tests: the body rows, cells stripped."""

from __future__ import annotations


def table_rows(output: str) -> list[list[str]]:
    """Every body row of the tables in ``output`` (the header row is drawn with ┃)."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]
