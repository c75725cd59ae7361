"""The ops page over HTTP, without a browser: who gets in and how, what a POST must carry,
and that neither the page nor /docs names any host but the app itself."""

from __future__ import annotations

import filecmp
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from payouts.api.app import create_app
from payouts.api.ops_page import STATIC
from payouts.exception_queue import record_exception
from payouts.ops import handlers as ops
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.settlement.handlers import HoldTarget
from tests.apikit import ADMIN_KEY, api_settings
from tests.chainkit import roll_up_now, seed

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("pipeline", "batches", "exceptions", "review")


class _Links(HTMLParser):
    """Every address a page makes the browser load or go to."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "action", "hx-get", "hx-post") and value:
                self.urls.append(value)


def links(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


@pytest.fixture
def ops_runtime(db_url: str, redis_url: str, state_dir: Path) -> Runtime:
    rt = Runtime(api_settings(db_url, redis_url, state_dir))
    rt.asset_ids()
    return rt


@pytest.fixture
def client(ops_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(ops_runtime), follow_redirects=False) as c:
        yield c


def sign_in(client: TestClient) -> str:
    """Signs in; returns the CSRF token the page carries."""
    answer = client.post("/ops/login", data={"key": ADMIN_KEY})
    assert answer.status_code == 303, answer.text
    page = client.get("/ops").text
    return page.split('"X-CSRF-Token": "')[1].split('"')[0]


def test_every_ops_page_needs_the_session(client: TestClient) -> None:
    assert client.get("/ops").headers["location"] == "/ops/login"
    assert client.get("/ops/data/throughput").status_code == 401
    fragment = client.get("/ops/sections/pipeline", headers={"HX-Request": "true"})
    assert (fragment.status_code, fragment.headers["hx-redirect"]) == (401, "/ops/login")
    client.cookies.set("payouts_ops", "e30.forged.sig")
    assert client.get("/ops").headers["location"] == "/ops/login"


def test_the_key_signs_in_with_a_strict_httponly_cookie_and_signs_out(
    client: TestClient,
) -> None:
    wrong = client.post("/ops/login", data={"key": "not-it"})
    assert wrong.status_code == 401
    assert "not the admin key" in wrong.text
    right = client.post("/ops/login", data={"key": ADMIN_KEY})
    assert (right.status_code, right.headers["location"]) == (303, "/ops")
    cookie = right.headers["set-cookie"]
    assert ADMIN_KEY not in cookie
    for flag in ("HttpOnly", "SameSite=strict", "Path=/ops", "Max-Age=28800"):
        assert flag.lower() in cookie.lower()
    page = client.get("/ops")
    assert page.status_code == 200
    assert ADMIN_KEY not in page.text
    csrf = page.text.split('"X-CSRF-Token": "')[1].split('"')[0]
    out = client.post("/ops/logout", data={"csrf": csrf})
    assert out.headers["location"] == "/ops/login"
    assert client.get("/ops").headers["location"] == "/ops/login"


def test_a_post_without_the_csrf_token_or_from_another_site_is_refused(
    client: TestClient, ops_runtime: Runtime
) -> None:
    with ops_runtime.uow() as session:
        record_exception(session, "transfer_failed", "t-1", {"reason": "blocked"})
        session.commit()
    csrf = sign_in(client)
    form = {"resolution": "paid by hand", "dry_run": "false"}
    assert client.post("/ops/exceptions/1/resolve", data=form).status_code == 403
    elsewhere = {"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    assert client.post("/ops/exceptions/1/resolve", data=form, headers=elsewhere).status_code == 403
    assert client.post("/ops/login", data={"key": ADMIN_KEY}, headers=elsewhere).status_code == 403
    token = {"X-CSRF-Token": csrf}
    dry = client.post("/ops/exceptions/1/resolve", data={**form, "dry_run": "true"}, headers=token)
    assert 'data-outcome="dry-run"' in dry.text
    listed = client.get("/v1/ops/exceptions", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert listed.json()["data"][0]["status"] == "open"  # a dry run keeps nothing
    done = client.post("/ops/exceptions/1/resolve", data=form, headers={"X-CSRF-Token": csrf})
    assert 'data-outcome="done"' in done.text
    assert done.headers["hx-trigger"] == "queues-changed"
    again = client.post("/ops/exceptions/1/resolve", data=form, headers={"X-CSRF-Token": csrf})
    assert (again.status_code, 'data-outcome="error"' in again.text) == (409, True)


def test_without_an_admin_key_the_page_is_closed(
    db_url: str, redis_url: str, state_dir: Path
) -> None:
    rt = Runtime(api_settings(db_url, redis_url, state_dir, admin_api_key=None))
    with TestClient(create_app(rt), follow_redirects=False) as c:
        assert "is closed" in c.get("/ops/login").text
        assert c.post("/ops/login", data={"key": ""}).status_code == 401


def test_the_page_and_docs_load_nothing_from_another_host(client: TestClient) -> None:
    csrf = sign_in(client)
    assert csrf
    pages = ["/docs", "/ops/login", "/ops", *(f"/ops/sections/{s}" for s in SECTIONS)]
    for path in pages:
        answer = client.get(path)
        assert answer.status_code == 200, path
        urls = links(answer.text)
        assert urls or path.startswith("/ops/sections/"), path
        for url in urls:
            assert url.startswith(("/", "#")), f"{path} names {url}"
            if url.startswith("/static/"):
                assert client.get(url).status_code == 200, url
    docs = client.get("/docs").text
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs
    assert "cdn" not in docs.lower()


def test_the_vendored_assets_are_what_the_script_builds_from_node_modules(
    tmp_path: Path,
) -> None:
    subprocess.run(["node", str(ROOT / "scripts/vendor-assets"), str(tmp_path)], check=True)
    committed = STATIC / "vendor"
    compared = filecmp.dircmp(tmp_path, committed)
    pending = [compared]
    while pending:
        level = pending.pop()
        stale = f"{level.right} differs from scripts/vendor-assets' output: run it and commit"
        assert not level.left_only, stale
        assert not level.right_only, stale
        _, mismatch, errors = filecmp.cmpfiles(
            level.left, level.right, level.common_files, shallow=False
        )
        assert not mismatch, stale
        assert not errors, errors
        pending.extend(level.subdirs.values())


def _held_for_review(rt: Runtime, creators: int) -> list[int]:
    """Pending payouts (recorded and rolled up, no chain needed), each held by the deny-list
    rule as screening would; returns the holds' ids."""
    seed(rt, creators=creators)
    roll_up_now(rt)
    placed = []
    for payout_id in range(1, creators + 1):
        hold = settlement.place_hold(
            rt,
            HoldTarget(payout_id=payout_id),
            "address on the deny list",
            rule="deny_list",
            actor="screening",
        )
        placed.append(int(hold["id"]))
    return placed


def test_review_decisions_are_dry_run_first_then_made_by_the_review_handlers(
    client: TestClient, ops_runtime: Runtime
) -> None:
    approve, reject = _held_for_review(ops_runtime, 2)
    token = {"X-CSRF-Token": sign_in(client)}
    queue = client.get("/ops/sections/review").text
    assert f'data-hold="{approve}"' in queue
    assert f'data-hold="{reject}"' in queue
    why = {"resolution": "false positive", "dry_run": "true"}
    dry = client.post(f"/ops/review/{approve}/approve", data=why, headers=token)
    assert '"status": "released"' in dry.text
    assert ops.get_hold(ops_runtime, approve)["status"] == "active"
    client.post(f"/ops/review/{approve}/approve", data={**why, "dry_run": "false"}, headers=token)
    client.post(f"/ops/review/{reject}/reject", data={**why, "dry_run": "false"}, headers=token)
    assert ops.get_hold(ops_runtime, approve)["ended_by"] == "ops-page"
    assert ops.get_hold(ops_runtime, reject)["status"] == "rejected"
    assert "Nothing waits for review" in client.get("/ops/sections/review").text
    unknown = client.post(f"/ops/review/{approve}/ignore", data=why, headers=token)
    assert unknown.status_code == 404


def test_the_search_box_finds_an_earning_a_payout_and_a_creator(
    client: TestClient, ops_runtime: Runtime
) -> None:
    recipients = seed(ops_runtime, creators=2)
    roll_up_now(ops_runtime)
    sign_in(client)
    earning = client.get("/ops/search", params={"q": "1", "kind": "earning"}).text
    assert "Earning #1" in earning
    assert "Payout #" in earning  # rolled up: the trace goes on into its payout
    assert "Payout #2" in client.get("/ops/search", params={"q": "2"}).text
    creator, address = next(iter(recipients.items()))
    for needle in (creator, address.lower()):
        found = client.get("/ops/search", params={"q": needle}).text
        assert "pending" in found
        assert creator in found
    missing = client.get("/ops/search", params={"q": "0x" + "ab" * 32})
    assert missing.status_code == 404
    assert "not found: transaction 0xabab" in missing.text
