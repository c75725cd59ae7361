"""``scripts/demo --serve``: the demo pays everyone, then keeps the ops page up until Ctrl-C.

The real command in a process of its own (embedded nothing: the machine's PostgreSQL and
Redis, a real anvil), read line by line as a person would; the page is asked over HTTP and
the process is stopped the way a person stops it, with SIGINT.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from config.settings import REPO_ROOT
from devstack.spawning import free_port
from tests.waiting import wait_until


def _lines(stream: object, out: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        out.put(line.rstrip("\n"))


@pytest.mark.chain
@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_the_demo_ends_with_the_ops_page_and_serves_it_until_ctrl_c(
    pg_server_url: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PAYOUTS_DATABASE_URL": pg_server_url,
        "PAYOUTS_REDIS_URL": redis_url,
        "PAYOUTS_STATE_DIR": str(tmp_path),
        "PAYOUTS_API_PORT": str(port),
        "PAYOUTS_ADMIN_API_KEY": "demo-serve-test-key",
    }
    demo = subprocess.Popen(
        [str(REPO_ROOT / ".venv/bin/payouts"), "demo", "--creators", "4",
         "--credits-per-creator", "2", "--window", "2", "--serve"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(demo.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 150
        while not any(line.startswith("ops page: http") for line in seen):
            assert demo.poll() is None, "\n".join(seen)
            assert time.monotonic() < deadline, "\n".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        assert any(line.startswith("ledger == chain     yes") for line in seen), "\n".join(seen)
        # One creator in thirty asked for claims: the first of these four waits in the escrow.
        assert "  still claimable   1 payouts" in "\n".join(seen)
        assert any(line.startswith("escrow, on chain") for line in seen)
        assert any(line.startswith("finished in") and line.endswith("OK") for line in seen)
        address = f"http://127.0.0.1:{port}"
        assert f"ops page: {address}/ops  (sign in with the admin key: demo-serve-test-key)" in seen

        def login_page() -> httpx.Response | None:
            try:
                return httpx.get(f"{address}/ops/login", timeout=2)
            except httpx.TransportError:
                return None  # uvicorn binds a moment after the line is printed

        page = wait_until(login_page, timeout=10, what="the ops page to answer")
        assert page.status_code == 200, page.text
        signed_in = httpx.post(
            f"{address}/ops/login",
            data={"key": "demo-serve-test-key"},
            headers={"Origin": address},
            follow_redirects=False,
            timeout=5,
        )
        assert signed_in.status_code in (302, 303), signed_in.text
        dashboard = httpx.get(f"{address}/ops", cookies=signed_in.cookies, timeout=10)
        assert dashboard.status_code == 200
        assert "finalized" in dashboard.text

        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0, "\n".join(seen)
    finally:
        if demo.poll() is None:
            # Ctrl-C first: the demo stops the worker and beat it started (each in a session
            # of its own, so killing the demo alone would leave them consuming the tests'
            # queues); kill only what does not stop.
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=30)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
