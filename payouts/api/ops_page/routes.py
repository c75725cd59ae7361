"""The ops page: the pipeline at a glance, charts, batches, the exception and review queues
with their actions, and a search box that traces anything end to end.

Every action posts to the same handlers as the CLI and the admin API (audited with the actor
``ops-page``), a dry run first: the answer shows what would happen, with a button that does
it. Sections refresh themselves (htmx polling); charts fetch their columns from
``/ops/data/{chart}`` (uPlot draws them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from payouts.api.errors import status_for
from payouts.api.ops_page import session as login
from payouts.api.ops_page.session import OpsSession
from payouts.api.routes.common import runtime
from payouts.errors import ChainError, NotFound, PayoutsError
from payouts.money import format_units
from payouts.ops import handlers as ops
from payouts.ops import measures
from payouts.ops.dashboard import TX_HASH
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.states import PayoutState
from payouts.submission.handlers import replay
from payouts.tracking import handlers as tracking

ACTOR = "ops-page"
SHOWN_DECIMALS = 6
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/ops", include_in_schema=False)

Signed = Annotated[OpsSession, Depends(login.current)]
Checked = Annotated[OpsSession, Depends(login.checked)]
DryRun = Annotated[bool, Form()]
Resolution = Annotated[str, Form(max_length=2000)]
# After an action the queues reload at once instead of at their next poll.
CHANGED = {"HX-Trigger": "queues-changed"}


def _decimals(rt: Runtime) -> dict[str, int]:
    return {a.symbol: a.decimals for a in rt.assets()} | {measures.NATIVE: 18}


def _amount(value: int | str | None, decimals: int) -> str:
    """Base units for people, cut (not rounded) to ``SHOWN_DECIMALS`` and without trailing
    zeros: 18 decimals of gas money read as noise at a glance."""
    if value is None:
        return ""
    whole, _, fraction = format_units(int(value), decimals).partition(".")
    fraction = fraction[:SHOWN_DECIMALS].rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


templates.env.filters["amount"] = _amount


def _page(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=code)


# --- login ----------------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return _page(request, "login.html", closed=login.admin_key(request) is None)


@router.post("/login", dependencies=[Depends(login.same_origin)])
def sign_in(request: Request, key: Annotated[str, Form(max_length=512)] = "") -> Response:
    if not login.key_matches(request, key):
        closed = login.admin_key(request) is None
        return _page(request, "login.html", 401, closed=closed, wrong=not closed)
    response = RedirectResponse("/ops", status_code=303)
    login.start(request, response)
    return response


@router.post("/logout")
def sign_out(_: Checked) -> Response:
    response = RedirectResponse("/ops/login", status_code=303)
    login.end(response)
    return response


# --- the page and its sections ----------------------------------------------------------------


@router.get("")
def dashboard(request: Request, session: Signed) -> HTMLResponse:
    return _page(request, "dashboard.html", csrf=session.csrf)


@router.get("/sections/pipeline")
def pipeline(request: Request, _: Signed) -> HTMLResponse:
    rt = runtime(request)
    by_asset: dict[str, list[measures.StateTotal]] = {}
    order = {state.value: i for i, state in enumerate(PayoutState)}  # pipeline order
    for total in sorted(measures.pipeline_by_state(rt), key=lambda t: order.get(t.state, 99)):
        by_asset.setdefault(total.asset, []).append(total)
    # Assets nothing was ever paid in (the native one, on a token-only system) stay out.
    paying = {a: t for a, t in by_asset.items() if any(x.count for x in t)}
    by_asset = paying or by_asset
    return _page(
        request, "_pipeline.html", by_asset=by_asset, tiles=ops.tiles(rt), decimals=_decimals(rt)
    )


@router.get("/sections/books")
def books(request: Request, _: Signed) -> HTMLResponse:
    """Ledger paid next to what the chain shows, per asset: ``payouts status``'s comparison,
    which reads the whole ledger, so it refreshes less often than the counts; and the claims
    escrow's balance on chain against what is claimable (the escrow-short alert's figures)."""
    rt = runtime(request)
    # The claims escrow's balance is read from the node: a node away costs this line only.
    try:
        escrow, escrow_error = measures.escrow_cover(rt), None
    except ChainError as exc:
        escrow, escrow_error = [], f"chain unavailable: {exc}"
    return _page(
        request,
        "_books.html",
        status=tracking.status(rt),
        escrow=escrow,
        escrow_error=escrow_error,
        decimals=_decimals(rt),
    )


@router.get("/sections/batches")
def batches(request: Request, _: Signed) -> HTMLResponse:
    return _page(request, "_batches.html", batches=ops.batch_timelines(runtime(request)))


@router.get("/sections/exceptions")
def exceptions(request: Request, _: Signed) -> HTMLResponse:
    rows, more = ops.list_exceptions(runtime(request), state="open", limit=50)
    return _page(request, "_exceptions.html", rows=rows, more=more)


@router.get("/sections/review")
def review(request: Request, _: Signed) -> HTMLResponse:
    rows, more = settlement.list_holds(runtime(request), review=True, limit=50)
    return _page(request, "_review.html", rows=rows, more=more)


# --- chart data -------------------------------------------------------------------------------


@router.get("/data/runway")
def runway(request: Request, _: Signed) -> JSONResponse:
    """Each asset's balance, burn and runway, and the balance projected as a percentage of
    today's over the next hours (the first to run dry sets the horizon)."""
    rt = runtime(request)
    try:
        runways = measures.wallet_runway(rt)
    except ChainError as exc:
        return JSONResponse({"error": f"chain unavailable: {exc}"}, status_code=503)
    decimals = _decimals(rt)
    finite = [r.hours for r in runways if r.hours is not None]
    horizon = max(24.0, min(168.0, 1.25 * min(finite))) if finite else 24.0
    now = int(time.time())
    steps = [horizon * i / 48 for i in range(49)]
    return JSONResponse(
        {
            "horizon_hours": horizon,
            "x": [now + int(h * 3600) for h in steps],
            "series": {
                r.asset: [
                    100.0 if r.hours is None else max(0.0, 100 - 100 * h / r.hours) for h in steps
                ]
                for r in runways
            },
            "assets": [
                {
                    "asset": r.asset,
                    "balance": _amount(r.balance, decimals.get(r.asset, 0)),
                    "burn_per_hour": _amount(r.burn_per_hour, decimals.get(r.asset, 0)),
                    "hours": r.hours,
                }
                for r in runways
            ],
        }
    )


@router.get("/data/{chart}")
def chart(request: Request, chart: str, _: Signed) -> JSONResponse:
    try:
        drawn = ops.chart(runtime(request), chart)
    except NotFound:
        return JSONResponse({"error": f"no chart {chart!r}"}, status_code=404)
    return JSONResponse(drawn.as_json())


# --- search -------------------------------------------------------------------------------------


@router.get("/search")
def search(
    request: Request,
    _: Signed,
    q: Annotated[str, Query(max_length=255)] = "",
    kind: Annotated[str, Query(pattern="^(auto|payout|earning|creator|tx)$")] = "auto",
) -> HTMLResponse:
    """A payout or an earning by id, a creator by id or payout address, a transaction by hash:
    ``auto`` tells them apart by their shape (a number is a payout)."""
    rt = runtime(request)
    needle = q.strip()
    if kind == "auto":
        kind = _kind_of(needle)
    try:
        if kind in ("payout", "earning"):
            if not needle.isdigit():
                raise NotFound(f"{kind} ids are numbers, not {needle!r}")
            traced = tracking.trace(rt, kind, int(needle))
            return _page(request, "_trace.html", kind=kind, trace=traced, q=needle)
        found = ops.find_tx(rt, needle) if kind == "tx" else ops.find_creator(rt, needle)
    except PayoutsError as exc:
        error = f"not found: {exc}" if isinstance(exc, NotFound) else str(exc)
        return _page(request, "_trace.html", status_for(exc), error=error, q=needle)
    return _page(request, "_found.html", kind=kind, found=found, q=needle, decimals=_decimals(rt))


def _kind_of(needle: str) -> str:
    """A transaction hash, a payout id, or else a creator (by id or payout address)."""
    if TX_HASH.fullmatch(needle):
        return "tx"
    return "payout" if needle.isdigit() else "creator"


# --- actions: a dry run first, then the same call for real ---------------------------------------


def _form(request: Request, template: str, load: Callable[[], dict[str, Any]]) -> HTMLResponse:
    """The form of an action on one item, in the action panel (its dry run is the first POST)."""
    try:
        item = load()
    except PayoutsError as exc:
        return _page(request, "_action.html", status_for(exc), what="show it", error=str(exc))
    return _page(request, template, item=item)


@router.get("/exceptions/{exception_id:int}")
def exception_form(request: Request, _: Signed, exception_id: int) -> HTMLResponse:
    return _form(
        request, "_exception_form.html", lambda: ops.get_exception(runtime(request), exception_id)
    )


@router.get("/review/{hold_id:int}")
def review_form(request: Request, _: Signed, hold_id: int) -> HTMLResponse:
    return _form(request, "_review_form.html", lambda: ops.get_hold(runtime(request), hold_id))


async def _act(
    request: Request,
    what: str,
    act: Callable[[], dict[str, Any]],
    *,
    dry_run: bool,
    confirm: dict[str, str],
) -> HTMLResponse:
    """Run one action in the thread pool and show its outcome in the action panel: as it
    would be (with a button that confirms it) or as it is now."""
    try:
        outcome = await run_in_threadpool(act)
    except PayoutsError as exc:
        return _page(request, "_action.html", status_for(exc), what=what, error=str(exc))
    response = _page(
        request,
        "_action.html",
        what=what,
        outcome=outcome,
        dry_run=dry_run,
        confirm=confirm,
    )
    if not dry_run:
        response.headers.update(CHANGED)
    return response


@router.post("/exceptions/{exception_id:int}/resolve")
async def resolve(
    request: Request,
    _: Checked,
    exception_id: int,
    resolution: Resolution,
    dry_run: DryRun = True,
) -> HTMLResponse:
    def act() -> dict[str, Any]:
        return ops.resolve_exception(
            runtime(request), exception_id, resolution, actor=ACTOR, dry_run=dry_run
        )

    return await _act(
        request,
        f"resolve exception {exception_id}",
        act,
        dry_run=dry_run,
        confirm={"action": f"/ops/exceptions/{exception_id}/resolve", "resolution": resolution},
    )


@router.post("/exceptions/{exception_id:int}/replay")
async def replay_exception(
    request: Request, _: Checked, exception_id: int, dry_run: DryRun = True
) -> HTMLResponse:
    """A replay sends a transaction, so its dry run cannot try it: it shows the exception and
    the batch that would be sent again, and the real run is ``payouts exceptions replay``'s."""
    rt = runtime(request)

    def act() -> dict[str, Any]:
        if dry_run:
            found = ops.get_exception(rt, exception_id)
            return {**found, "would": f"send batch {found['batch_id']} again now"}
        done = replay(rt, exception_id, actor=ACTOR)
        result = done.result
        return {
            **done.exception,
            "sent": f"{result.describe()} tx {result.tx_hash} nonce {result.nonce}",
        }

    return await _act(
        request,
        f"replay exception {exception_id}",
        act,
        dry_run=dry_run,
        confirm={"action": f"/ops/exceptions/{exception_id}/replay"},
    )


@router.post("/review/{hold_id:int}/{decision:str}")
async def decide(
    request: Request,
    _: Checked,
    hold_id: int,
    decision: str,
    resolution: Resolution,
    dry_run: DryRun = True,
) -> HTMLResponse:
    """Approve (release) or reject a hold in review, as ``payouts review approve|reject``."""
    decide_with = {"approve": settlement.release_hold, "reject": settlement.reject_hold}.get(
        decision
    )
    if decide_with is None:
        return _page(request, "_action.html", 404, what=decision, error="no such decision")
    chosen = decide_with

    def act() -> dict[str, Any]:
        return chosen(runtime(request), hold_id, resolution, actor=ACTOR, dry_run=dry_run)

    return await _act(
        request,
        f"{decision} hold {hold_id}",
        act,
        dry_run=dry_run,
        confirm={"action": f"/ops/review/{hold_id}/{decision}", "resolution": resolution},
    )
