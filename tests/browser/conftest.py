"""A real browser on the real app: the API served by uvicorn on a loopback port, Playwright
driving Debian's chromium (Playwright's own browser download is not used; scripts/test
installs the package where it is missing).

``paid_stack`` runs the pipeline on the real chain through the same handlers beat runs:
earnings for a few creators, a roll-up, a settlement run sent at once, blocks mined, the
chain reconciled to finality. The token refuses one recipient, so one payout is back to
pending and one ``transfer_failed`` exception waits for an operator.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

import devstack
from payouts.api.app import create_app
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from tests.apikit import ADMIN_KEY
from tests.chainkit import block_recipient, mine, roll_up_now, seed, settle_and_submit
from tests.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@dataclass(frozen=True)
class PaidStack:
    rt: Runtime
    recipients: dict[str, str]
    refused: str  # the recipient the token refuses


@pytest.fixture
def paid_stack(make_runtime: Callable[..., Runtime]) -> PaidStack:
    rt = make_runtime(admin_api_key=ADMIN_KEY)
    recipients = seed(rt, creators=5)
    roll_up_now(rt)
    refused = recipients["c1-2"]
    block_recipient(rt, refused)
    settle_and_submit(rt)
    mine(rt, 3)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)
    return PaidStack(rt, recipients, refused)


@pytest.fixture
def served(paid_stack: PaidStack) -> Iterator[str]:
    """The app on a loopback port (uvicorn in a thread); yields its base URL."""
    port = devstack.free_port()
    config = uvicorn.Config(
        create_app(paid_stack.rt), host="127.0.0.1", port=port, log_level="warning", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=10, what="uvicorn to listen")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def chromium() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        pytest.fail("no chromium: scripts/test installs it (apt-get install chromium)")
    return found


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
