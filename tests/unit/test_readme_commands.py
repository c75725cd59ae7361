"""Every ``payouts`` command the README shows exists, with the options it is shown with: each
is parsed by the real CLI (``--help`` stops it before it would connect to anything)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from payouts.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"
# A command at the start of a line, after `&&`, or inside `$(...)`; up to a comment or `)`.
COMMAND = re.compile(r"(?:^|&& |\$\()payouts ([^#)\n]*)", re.MULTILINE)


def _shown() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    found = [m.strip() for block in blocks for m in COMMAND.findall(block)]
    # The reference list writes alternatives as a|b: each is parsed on its own line instead.
    return [c.replace("[", "").replace("]", "") for c in found if "|" not in c]


def test_the_readme_shows_the_walkthrough_commands() -> None:
    shown = _shown()
    for expected in ("rollup --now", "reconcile", "creators set-address creator-42"):
        assert any(c.startswith(expected) for c in shown), expected


@pytest.mark.parametrize("command", _shown())
def test_each_command_in_the_readme_parses(command: str) -> None:
    result = CliRunner().invoke(app, [*shlex.split(command), "--help"])
    assert result.exit_code == 0, f"payouts {command}: {result.output}"
