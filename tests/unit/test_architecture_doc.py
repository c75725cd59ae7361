"""docs/ARCHITECTURE.md stays true: its state tables are the lifecycles' moves, and every layer
of the import contract is on its picture of the house."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from payouts.lifecycle import LIFECYCLES

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
MOVE = re.compile(r"^- `([a-z_]+)` → (.+)$")


def _documented_moves() -> dict[str, dict[str, set[str]]]:
    moves: dict[str, dict[str, set[str]]] = {}
    entity = None
    for line in DOC.splitlines():
        if line.startswith("### "):
            entity = line[4:].strip()
            moves[entity] = {}
        elif entity and (m := MOVE.match(line)):
            moves[entity][m.group(1)] = set(re.findall(r"`([a-z_]+)`", m.group(2)))
        elif line.startswith("## "):
            entity = None
    return moves


def test_the_documented_moves_are_the_lifecycles() -> None:
    assert _documented_moves() == {
        lc.entity: {str(s): {str(t) for t in targets} for s, targets in lc.moves.items()}
        for lc in LIFECYCLES.values()
    }


def test_every_layer_of_the_import_contract_is_on_the_picture() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    [layers] = [
        c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"
    ]
    for layer in layers:
        for module in (m.strip() for m in layer.split("|")):
            path = module.replace(".", "/")
            assert path in DOC, f"{module} is missing from docs/ARCHITECTURE.md"
