"""The worker's metrics directory, settled before anything imports ``prometheus_client``.

A prefork worker's tasks run in child processes, each with its own memory; prometheus_client
adds them up through files in ``PROMETHEUS_MULTIPROC_DIR`` (its multiprocess mode), a choice
it makes once, when it is first imported. So ``workers/app.py`` imports this module before
anything else of the project, and this module imports nothing that could load it.

The directory is one per run: the one the launcher gives in ``PROMETHEUS_MULTIPROC_DIR``,
emptied here (files a previous run left would add its counts to this one's), or else a new
temporary directory, removed when the process that made it exits. A process that has
already loaded prometheus_client (a test importing the app) keeps in-process metrics.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def _remove(path: str, owner: int) -> None:
    # Pool processes are forks of the owner and inherit this hook: only the owner removes.
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def prepare() -> Path | None:
    """This run's metrics directory (set in the environment), or None for in-process."""
    given = os.environ.get(ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob("*.db"):
            leftover.unlink(missing_ok=True)
        return directory
    if "prometheus_client" in sys.modules:
        return None
    made = tempfile.mkdtemp(prefix="payouts-metrics-")
    os.environ[ENV] = made
    atexit.register(_remove, made, os.getpid())
    return Path(made)


DIRECTORY = prepare()
