"""Progress bars on stderr, drawn only for a person at a terminal: piped or under ``--json``,
stdout carries the result alone and stderr stays quiet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

# advance(n) moves the bar n steps; advance(n, total) also says how many there are in all,
# for work whose size is known only once it starts (blocks from a checkpoint to the head).
Advance = Callable[..., None]


@contextmanager
def progress(description: str, total: int | None, *, quiet: bool = False) -> Iterator[Advance]:
    """A bar of ``total`` steps (a spinner while None); yields ``advance``."""
    err = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    ) as bar:
        task = bar.add_task(description, total=total)

        def advance(steps: int, total: int | None = None) -> None:
            if total is not None:
                bar.update(task, total=total)
            bar.advance(task, steps)

        yield advance
