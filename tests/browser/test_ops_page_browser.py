"""The ops page in a real browser, on data from a real run: sign in, the charts draw, the
state counts are the database's, a payout traced from the search box, an exception resolved
(dry run, then for real) and gone from the open queue. Every request the page and /docs make
goes to the app itself."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Page, expect, sync_playwright
from sqlalchemy import text

from tests.apikit import ADMIN_KEY
from tests.browser.conftest import PaidStack
from tests.chainkit import scalar

CHARTS = ("throughput", "success", "finality", "gas", "runway")
POSITIVE = re.compile(r"^[1-9][0-9]*$")

# Pixels of the finalized series' stroke (#1f8a5b), give or take antialiasing.
COUNT_STROKE = """(el) => {
  const canvas = el.querySelector("canvas");
  const {data} = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - 31) < 30 && Math.abs(data[i + 1] - 138) < 30
        && Math.abs(data[i + 2] - 91) < 30 && data[i + 3] > 200) n++;
  }
  return n;
}"""


def _states(stack: PaidStack) -> dict[str, int]:
    with stack.rt.uow() as session:
        rows = session.execute(text("SELECT state, count(*) FROM payouts GROUP BY state"))
        return {state: int(n) for state, n in rows}


def scalar_text(stack: PaidStack, sql: str) -> str:
    with stack.rt.uow() as session:
        return str(session.execute(text(sql)).scalar_one())


def _sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/ops")
    expect(page).to_have_url(f"{base}/ops/login")
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/ops")


def _see_the_pipeline_and_charts(page: Page, stack: PaidStack, artifacts: Path) -> None:
    states = _states(stack)
    assert states == {"finalized": 4, "pending": 1}
    for state in ("pending", "held", "batched", "submitted", "confirmed", "finalized"):
        cell = page.locator(f"table.states tr[data-asset=USDC] td[data-state={state}] .count")
        expect(cell).to_have_text(str(states.get(state, 0)))
    expect(page.get_by_test_id("open-exceptions")).to_have_text("1")
    expect(page.locator("#books .books[data-asset=USDC]")).to_contain_text("✓ equal")
    for name in CHARTS:
        chart = page.locator(f"[data-chart={name}]")
        expect(chart.locator("canvas")).to_have_count(1)
        expect(chart).to_have_attribute("data-points", POSITIVE)
    assert page.locator("[data-chart=throughput]").evaluate(COUNT_STROKE) > 20
    expect(page.locator("#batches tr[data-batch] .badge").first).to_have_text("finalized")
    page.screenshot(path=str(artifacts / "ops-dashboard.png"), full_page=True)


def _trace_a_payout(page: Page, stack: PaidStack) -> None:
    payout_id = scalar(stack.rt, "SELECT min(id) FROM payouts WHERE state = 'finalized'")
    tx_hash = scalar_text(
        stack,
        "SELECT b.tx_hash FROM payouts p JOIN batches b ON b.id = p.batch_id"
        f" WHERE p.id = {payout_id}",
    )
    page.fill("form.search input[name=q]", str(payout_id))
    page.click("form.search button")
    traced = page.get_by_test_id("traced-payout")
    expect(traced).to_contain_text(f"Payout #{payout_id}")
    expect(traced).to_contain_text("finalized")
    expect(page.locator("#trace code.hash").first).to_have_attribute("title", tx_hash)
    # The transaction the other way round: its batch and every payout it carried.
    page.fill("form.search input[name=q]", tx_hash)
    page.click("form.search button")
    expect(page.locator("#trace table.found tbody tr")).to_have_count(5)


def _resolve_the_exception(page: Page, stack: PaidStack) -> None:
    exception_id = scalar(stack.rt, "SELECT id FROM exceptions WHERE state = 'open'")
    row = page.locator(f"#exception-queue tr[data-exception='{exception_id}']")
    expect(row).to_contain_text("transfer_failed")
    row.get_by_role("button", name="Resolve…").click()
    page.fill("#action input[name=resolution]", "address cleared by the token issuer")
    page.click("#action button.primary")
    expect(page.locator("#action [data-outcome=dry-run]")).to_contain_text('"status": "resolved"')
    assert scalar(stack.rt, "SELECT count(*) FROM exceptions WHERE state = 'open'") == 1
    page.click("#action button.primary")
    expect(page.locator("#action [data-outcome=done]")).to_be_visible()
    expect(row).to_have_count(0)
    expect(page.locator("#exception-queue")).to_contain_text("Nothing open")
    actor = scalar_text(
        stack,
        f"SELECT actor FROM transitions WHERE entity = 'exception' AND entity_id = {exception_id}",
    )
    assert actor == "ops-page"


def test_an_operator_signs_in_reads_the_dashboard_traces_and_resolves(
    paid_stack: PaidStack, served: str, chromium: str, artifacts: Path
) -> None:
    requested: list[str] = []
    expect.set_options(timeout=15_000)  # a loaded CI machine, not a slow page: waits end early
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda r: requested.append(r.url))
            _sign_in(page, served)
            _see_the_pipeline_and_charts(page, paid_stack, artifacts)
            _trace_a_payout(page, paid_stack)
            _resolve_the_exception(page, paid_stack)
            page.goto(f"{served}/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("payouts")
        finally:
            browser.close()
    hosts = {urlsplit(url).netloc for url in requested if not url.startswith("data:")}
    assert hosts == {urlsplit(served).netloc}
