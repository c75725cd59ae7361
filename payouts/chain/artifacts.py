"""Compiled contract artifacts, as written by ``node contracts/compile.js``.

The JSON files under ``contracts/artifacts/`` are committed; a test recompiles the sources with the
pinned solc-js and checks that they still match, so loading them here needs no compiler.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARTIFACTS_DIR = Path(__file__).resolve().parents[2] / "contracts" / "artifacts"


@dataclass(frozen=True)
class Artifact:
    """ABI and bytecode of one compiled contract."""

    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler: str


@functools.cache
def load_artifact(name: str) -> Artifact:
    """Load ``contracts/artifacts/{name}.json`` (e.g. ``"PayoutBatcher"``, ``"TestToken"``).

    Raises ``FileNotFoundError`` if there is no such artifact (see ``node contracts/compile.js``).
    """
    data = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return Artifact(
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        compiler=data["compiler"],
    )
