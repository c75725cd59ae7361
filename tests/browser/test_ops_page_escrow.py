"""The ops page's books show the claims escrow: its balance on chain against what is
claimable, on a real chain and ledger, so an operator sees a shortfall where the
escrow-short alert would fire, and sees it close once a top-up is booked."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser

from fastapi.testclient import TestClient
from sqlalchemy import text

from payouts.api.app import create_app
from payouts.claims import topups
from payouts.ops import measures
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from tests.apikit import ADMIN_KEY
from tests.chainkit import mine, roll_up_now, seed


class _Escrow(HTMLParser):
    """The text of each ``p.escrow`` line, by its asset."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[str, str] = {}
        self._asset: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "p" and "escrow" in (found.get("class") or "").split():
            self._asset = found.get("data-asset") or "?"
            self.lines[self._asset] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._asset = None

    def handle_data(self, data: str) -> None:
        if self._asset is not None:
            self.lines[self._asset] += data


def escrow_lines(client: TestClient) -> dict[str, str]:
    answer = client.get("/ops/sections/books")
    assert answer.status_code == 200, answer.text
    parser = _Escrow()
    parser.feed(answer.text)
    return {asset: " ".join(line.split()) for asset, line in parser.lines.items()}


def test_the_books_show_the_escrow_short_then_covered(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime(admin_api_key=ADMIN_KEY)
    seed(rt, creators=2)
    with rt.uow() as session:
        session.execute(text("UPDATE creators SET settle_mode = 'claim'"))
        session.commit()
    roll_up_now(rt)
    assert settlement.settle(rt, actor="test")["USDC"].claimable == 2
    [cover] = measures.escrow_cover(rt)
    claimable = f"{cover.claimable / 10**6:.6f}".rstrip("0")

    with TestClient(create_app(rt), follow_redirects=False) as client:
        assert client.post("/ops/login", data={"key": ADMIN_KEY}).status_code == 303
        assert escrow_lines(client) == {
            "USDC": f"USDC claims escrow holds 0 on chain · claimable {claimable}"
            f" ✗ short by {claimable}"
        }
        topups.top_up(rt)
        mine(rt, 1)
        reconciler.reconcile(rt)
        [line] = escrow_lines(client).values()
        assert line.endswith("✓ covered"), line
        assert f"claimable {claimable}" in line
