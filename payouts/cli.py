"""The ``payouts`` command: operators' entry point over the same services as the workers.

Exit codes: 0 success, 1 a check or comparison failed (or not found), 2 bad input,
3 configuration, 4 a service does not answer (see ``payouts.terminal.errors``).
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from config.settings import get_settings
from payouts.ingest import handlers as ingest
from payouts.money import format_units
from payouts.notify import handlers as webhooks
from payouts.ops import handlers as ops
from payouts.reconcile.handlers import reconcile as reconcile_chain
from payouts.rollup.handlers import rollup as roll_up
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.settlement.handlers import HoldTarget
from payouts.submission.handlers import replay
from payouts.submission.handlers import submit as submit_batch
from payouts.terminal import earnings_csv, render
from payouts.terminal import errors as failures
from payouts.terminal.progress import progress
from payouts.tracking import handlers as tracking
from payouts.tracking.reports import CHECKS

DEBUG = "payouts.debug"


class _Commands(TyperGroup):
    """Every command's configuration and connection errors as one line and an exit code."""

    # Typer's Context is the vendored click's, which it does not export under a public name.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            failure = failures.explain(exc, rpc_url=_rpc_url())
            if failure is None:
                raise
            if ctx.meta.get(DEBUG):
                traceback.print_exc(file=sys.stderr)
            typer.echo(failure.line(), err=True)
            raise typer.Exit(failure.code) from None


def _rpc_url() -> str | None:
    try:
        return get_settings().rpc_url
    except Exception:  # noqa: BLE001 - the settings' own error is reported instead
        return None


app = typer.Typer(
    cls=_Commands,
    help="Creator payouts: ledger, roll-ups, batches, chain, reconciliation.\n\n"
    "Exit codes: 0 done, 1 a check failed or not found, 2 bad input, 3 configuration,"
    " 4 PostgreSQL, Redis or the node does not answer.",
    no_args_is_help=True,
    # Locals could hold the signer key or a database password.
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _options(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an error.")
    ] = False,
) -> None:
    ctx.meta[DEBUG] = debug


db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
marketplaces_app = typer.Typer(help="Marketplaces and their API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
exceptions_app = typer.Typer(
    help="What the system could not settle by itself: see it, close it.", no_args_is_help=True
)
app.add_typer(marketplaces_app, name="marketplaces")
app.add_typer(exceptions_app, name="exceptions")
holds_app = typer.Typer(
    help="Holds on payouts and creators: place, release, list.", no_args_is_help=True
)
review_app = typer.Typer(
    help="The review queue: what a rule held, to approve or reject.", no_args_is_help=True
)
deny_app = typer.Typer(help="The deny list of payout addresses.", no_args_is_help=True)
app.add_typer(holds_app, name="holds")
app.add_typer(review_app, name="review")
app.add_typer(deny_app, name="denylist")
webhooks_app = typer.Typer(
    help="Webhook endpoints: where they stand, their attempts, redelivery.", no_args_is_help=True
)
events_app = typer.Typer(help="A marketplace's events, in sequence order.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(events_app, name="events")
earnings_app = typer.Typer(help="Earnings recorded by an operator.", no_args_is_help=True)
creators_app = typer.Typer(help="Creators and where they are paid.", no_args_is_help=True)
app.add_typer(earnings_app, name="earnings")
app.add_typer(creators_app, name="creators")
claims_app = typer.Typer(help="The claims escrow: vouchers, top-ups, sweeps.", no_args_is_help=True)
app.add_typer(claims_app, name="claims")

# --json on every command a script reads: the handlers' dictionaries, as the API shows them.
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _runtime() -> Runtime:
    return Runtime(get_settings())


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


_echo_json = render.echo_json


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the latest revision, as the owner
    (PAYOUTS_MIGRATION_DATABASE_URL, else PAYOUTS_DATABASE_URL), and let the app's user
    (PAYOUTS_DATABASE_URL) log in with the app role's rights."""
    from payouts.db.migrate import upgrade

    rt = _runtime()
    upgrade(rt.settings.migration_database_url or rt.database_url, app_database_url=rt.database_url)
    typer.echo("database is at the latest revision")


@marketplaces_app.command("create")
def marketplaces_create(
    name: str,
    key_only: Annotated[
        bool, typer.Option("--key-only", help="Print the key alone: KEY=$(payouts ...).")
    ] = False,
    as_json: Json = False,
) -> None:
    """Create a marketplace and print its API key (shown once, stored only as a hash)."""
    created = ops.create_marketplace(_runtime(), name)
    if key_only:
        typer.echo(created.api_key)
    elif as_json:
        _echo_json({"id": created.id, "name": created.name, "api_key": created.api_key})
    else:
        typer.echo(f"marketplace {created.id} {created.name}")
        typer.echo(f"api key (store it now, it is not shown again): {created.api_key}")


@exceptions_app.command("list")
def exceptions_list(
    state: Annotated[str, typer.Option(help="open, resolved or all.")] = "open",
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Json = False,
) -> None:
    """Exceptions, newest first."""
    rows, _ = ops.list_exceptions(_runtime(), state=None if state == "all" else state, limit=limit)
    if as_json:
        _echo_json(rows)
    else:
        render.exceptions(rows, state)


@exceptions_app.command("show")
def exceptions_show(exception_id: int, as_json: Json = False) -> None:
    """One exception with its evidence."""
    row = ops.get_exception(_runtime(), exception_id)
    if as_json:
        _echo_json(row)
    else:
        render.exception(row)


@exceptions_app.command("resolve")
def exceptions_resolve(
    exception_id: int,
    resolution: Annotated[str, typer.Option("--resolution", "-m", help="What was done.")],
    as_json: Json = False,
) -> None:
    """Close an exception once, saying how it was resolved (kept in the audit trail)."""
    closed = ops.resolve_exception(_runtime(), exception_id, resolution, actor="operator")
    if as_json:
        _echo_json(closed)
    else:
        typer.echo(f"exception {closed['id']} resolved: {closed['resolution']}")


@exceptions_app.command("replay")
def exceptions_replay(exception_id: int) -> None:
    """Send a batch whose retries ran out again, now. Exit 1 if the chain still refuses (the
    batch is parked again with the new error), 0 when it is out (the exception is resolved)."""
    from payouts.errors import ChainError

    try:
        replayed = replay(_runtime(), exception_id, actor="operator")
    except ChainError as exc:
        _fail(f"replay failed, batch parked again: {exc}", 1)
        raise
    result = replayed.result
    typer.echo(
        f"batch {result.batch_id}: {result.describe()} tx {result.tx_hash} nonce {result.nonce};"
        f" exception {exception_id} resolved"
    )


def _echo_hold(hold: dict[str, Any], verb: str, as_json: bool = False) -> None:
    if as_json:
        _echo_json(hold)
        return
    what = f"payout {hold['payout_id']}" if hold["payout_id"] else "all payouts"
    typer.echo(
        f"hold {hold['id']} {verb}: {what} of creator {hold['creator_id']},"
        f" rule {hold['rule']}: {hold['reason']}"
        + (f" (until {hold['expires_at']})" if hold["expires_at"] else "")
        + (f"; {hold['resolution']}" if hold["resolution"] else "")
    )


def _expiry(hours: float | None) -> datetime | None:
    return None if hours is None else datetime.now(UTC) + timedelta(hours=hours)


@holds_app.command("place")
def holds_place(
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why it is held.")],
    payout: Annotated[int | None, typer.Option(help="Hold this payout.")] = None,
    marketplace: Annotated[str | None, typer.Option(help="The creator's marketplace.")] = None,
    creator: Annotated[str | None, typer.Option(help="Hold all payouts of this creator.")] = None,
    hours: Annotated[float | None, typer.Option(min=0.01, help="Expires after.")] = None,
    as_json: Json = False,
) -> None:
    """Hold a payout (--payout) or a creator (--marketplace and --creator)."""
    if (payout is None) == (creator is None) or (creator is not None and marketplace is None):
        _fail("name either --payout ID, or --marketplace NAME with --creator ID")
    rt = _runtime()
    marketplace_id = None if marketplace is None else ops.marketplace_id(rt, marketplace)
    hold = settlement.place_hold(
        rt,
        HoldTarget(marketplace_id, creator, payout),
        reason,
        rule="operator",
        actor="operator",
        expires_at=_expiry(hours),
    )
    _echo_hold(hold, "placed", as_json)


@holds_app.command("release")
def holds_release(
    hold_id: int,
    resolution: Annotated[str, typer.Option("--resolution", "-m", help="Why.")] = "released",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show it, keep nothing.")] = False,
    as_json: Json = False,
) -> None:
    """End a hold; the payout or creator goes once no other hold keeps it."""
    hold = settlement.release_hold(
        _runtime(), hold_id, resolution, actor="operator", dry_run=dry_run
    )
    _echo_hold(hold, "would be released" if dry_run else "released", as_json)


@holds_app.command("list")
def holds_list(
    state: Annotated[str, typer.Option(help="active, released, rejected or all.")] = "active",
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Json = False,
) -> None:
    """Holds, newest first."""
    rows, _ = settlement.list_holds(
        _runtime(), state=None if state == "all" else state, limit=limit
    )
    _echo_holds(rows, as_json, f"no {state} holds")


def _echo_holds(rows: list[dict[str, Any]], as_json: bool, empty: str) -> None:
    if as_json:
        _echo_json(rows)
    else:
        render.holds(rows, empty)


@review_app.command("list")
def review_list(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Json = False,
) -> None:
    """What rules held, with the figures that tripped them, newest first."""
    rows, _ = settlement.list_holds(_runtime(), review=True, limit=limit)
    _echo_holds(rows, as_json, "nothing to review")


@review_app.command("approve")
def review_approve(
    hold_id: int,
    resolution: Annotated[str, typer.Option("--resolution", "-m")] = "approved in review",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show it, keep nothing.")] = False,
    as_json: Json = False,
) -> None:
    """Let a held payout go: the rule will not hold it again."""
    hold = settlement.release_hold(
        _runtime(), hold_id, resolution, actor="operator", dry_run=dry_run
    )
    _echo_hold(hold, "would be approved" if dry_run else "approved", as_json)


@review_app.command("reject")
def review_reject(
    hold_id: int,
    resolution: Annotated[str, typer.Option("--resolution", "-m", help="Why.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show it, keep nothing.")] = False,
    as_json: Json = False,
) -> None:
    """Cancel the held payout into the creator's carried balance and hold the creator."""
    hold = settlement.reject_hold(
        _runtime(), hold_id, resolution, actor="operator", dry_run=dry_run
    )
    _echo_hold(hold, "would be rejected" if dry_run else "rejected", as_json)


@deny_app.command("import")
def denylist_import(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    unlist: Annotated[bool, typer.Option("--unlist", help="Take these off the list.")] = False,
    as_json: Json = False,
) -> None:
    """Import ``address[,reason]`` lines (``#`` comments): who, when and which file is kept."""
    lines = path.read_text(encoding="utf-8").splitlines()
    changed = settlement.import_deny_list(
        _runtime(), lines, source=path.name, actor="operator", listed=not unlist
    )
    verb = "unlisted" if unlist else "listed"
    if as_json:
        _echo_json({verb: changed, "source": path.name})
    else:
        typer.echo(f"{changed} addresses {verb} from {path.name}")


@deny_app.command("list")
def denylist_list(as_json: Json = False) -> None:
    """The addresses denied now."""
    rows = settlement.deny_list(_runtime())
    if as_json:
        _echo_json(rows)
    else:
        render.deny_list(rows)


def _echo_endpoint(e: dict[str, Any], as_json: bool = False) -> None:
    if as_json:
        _echo_json(e)
    else:
        render.endpoints([e])


@webhooks_app.command("list")
def webhooks_list(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: Json = False,
) -> None:
    """Every marketplace's endpoints, newest first, and how far each has been delivered."""
    rows, _ = webhooks.list_endpoints(_runtime(), None, limit=limit)
    if as_json:
        _echo_json(rows)
    else:
        render.endpoints(rows)


@webhooks_app.command("attempts")
def webhooks_attempts(
    endpoint_id: int,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Json = False,
) -> None:
    """An endpoint's delivery attempts, newest first: status, latency, answer or error."""
    rows, _ = webhooks.list_attempts(_runtime(), endpoint_id, None, limit=limit)
    if as_json:
        _echo_json(rows)
    else:
        render.attempts(rows, endpoint_id)


@webhooks_app.command("redeliver")
def webhooks_redeliver(
    endpoint_id: int,
    event: Annotated[str | None, typer.Option("--event", help="One event: evt_...")] = None,
    after_seq: Annotated[
        int | None, typer.Option("--after-seq", min=0, help="Every event after this seq.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what; send nothing.")] = False,
    as_json: Json = False,
) -> None:
    """Send one event again (--event) or everything after a sequence number (--after-seq),
    before anything else, with the same ids."""
    if (event is None) == (after_seq is None):
        _fail("name either --event evt_... or --after-seq N")
    plan = webhooks.redeliver(
        _runtime(),
        endpoint_id,
        None,
        event_id=event,
        after_seq=after_seq,
        dry_run=dry_run,
        actor="operator",
    )
    if as_json:
        _echo_json(plan)
        return
    verb = "would redeliver" if dry_run else "redelivering"
    first = ", ".join(f"{e['id']} (seq {e['seq']}, {e['type']})" for e in plan["first"][:10])
    more = " ..." if plan["events"] > 10 else ""
    typer.echo(f"endpoint {endpoint_id}: {verb} {plan['events']} events: {first}{more}")


def _switch(endpoint_id: int, enabled: bool, as_json: bool) -> None:
    e = webhooks.update_endpoint(_runtime(), endpoint_id, None, enabled=enabled)
    _echo_endpoint(e, as_json)


@webhooks_app.command("disable")
def webhooks_disable(endpoint_id: int, as_json: Json = False) -> None:
    """Stop delivering to an endpoint (its events wait; enable sends them)."""
    _switch(endpoint_id, False, as_json)


@webhooks_app.command("enable")
def webhooks_enable(endpoint_id: int, as_json: Json = False) -> None:
    """Deliver again, starting with the event that was not delivered, at once."""
    _switch(endpoint_id, True, as_json)


@events_app.command("list")
def events_list(
    marketplace: Annotated[str, typer.Option(help="The marketplace, by name.")],
    after: Annotated[int, typer.Option(min=0, help="After this sequence number.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: Json = False,
) -> None:
    """A marketplace's events after a sequence number, oldest first."""
    rt = _runtime()
    rows, _ = tracking.events(rt, ops.marketplace_id(rt, marketplace), after=after, limit=limit)
    if as_json:
        _echo_json(rows)
    else:
        render.events(rows, after)


@earnings_app.command("import")
def earnings_import(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    marketplace: Annotated[str, typer.Option(help="Whose earnings, by name.")],
    chunk_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="Earnings per transaction.")
    ] = ingest.IMPORT_CHUNK,
    as_json: Json = False,
) -> None:
    """Record earnings from a CSV file, checked with the API's rules.

    Columns, named in a header: idempotency_key (or reference), creator_id, amount (integer
    base units), asset, and optionally reference, occurred_at. Every row is checked first;
    any bad row is listed with its line, and then nothing is recorded (exit 2). The rows go
    in chunks (--chunk-size), one set-based transaction each, like POST /v1/earnings/batch.
    Importing the same file again records nothing new: each row is a replay."""
    rt = _runtime()
    marketplace_id = ops.marketplace_id(rt, marketplace)
    with path.open(encoding="utf-8", newline="") as lines:
        rows = earnings_csv.read(lines)
    good = [r for r in rows if r.earning is not None]
    earnings = [r.earning for r in good if r.earning is not None]
    bad = [(r.line, str(r.error)) for r in rows if r.error is not None] + [
        (good[i].line, f"{exc.field}: {exc}") for i, exc in ingest.refused_earnings(rt, earnings)
    ]
    if bad:
        for line, why in sorted(bad)[:50]:
            typer.echo(f"{path.name}:{line}: {why}", err=True)
        more = " (the first 50 listed)" if len(bad) > 50 else ""
        _fail(f"{len(bad)} of {len(rows)} rows refused{more}; nothing was recorded")
    with progress(f"importing {path.name}", len(earnings), quiet=as_json) as advance:
        summary = ingest.import_earnings(
            rt, marketplace_id, earnings, chunk=chunk_size, on_chunk=advance
        )
    if as_json:
        _echo_json({"rows": len(rows), **asdict(summary)})
        return
    totals = ", ".join(f"{amount} {asset}" for asset, amount in sorted(summary.totals.items()))
    typer.echo(
        f"{path.name}: {summary.created} earnings recorded, {summary.replayed} already recorded"
        f" (replays), in {summary.chunks} transactions" + (f"; new: {totals}" if totals else "")
    )


@creators_app.command("set-address")
def creators_set_address(
    creator: str,
    address: str,
    marketplace: Annotated[str, typer.Option(help="The creator's marketplace, by name.")],
    as_json: Json = False,
) -> None:
    """Register or change where a creator is paid, as PUT /v1/creators/{id} does.

    A change of an existing address holds the next payout for
    PAYOUTS_PAYOUT_ADDRESS_COOL_DOWN_SECONDS."""
    rt = _runtime()
    change = ingest.set_payout_address(
        rt, ops.marketplace_id(rt, marketplace), creator, address, actor="operator"
    )
    if as_json:
        _echo_json({**change.creator, "changed": change.changed})
        return
    verb = "registered" if change.created else "changed" if change.changed else "unchanged"
    held = " (held for the cool-down)" if change.changed and not change.created else ""
    typer.echo(f"creator {creator}: payout address {verb}: {address}{held}")


@creators_app.command("set-mode")
def creators_set_mode(
    creator: str,
    mode: Annotated[str, typer.Argument(help="push, claim, or auto (by what the gas costs).")],
    marketplace: Annotated[str, typer.Option(help="The creator's marketplace, by name.")],
    as_json: Json = False,
) -> None:
    """How a creator's next payouts settle, as PUT /v1/creators/{id}/settle-mode does; what
    is claimable already stays claimable."""
    from payouts.claims import handlers as claims

    rt = _runtime()
    changed = claims.set_settle_mode(
        rt, ops.marketplace_id(rt, marketplace), creator, mode, actor="operator"
    )
    if as_json:
        _echo_json(changed)
        return
    typer.echo(f"creator {creator}: settles by {changed['settle_mode']}")


@app.command()
def rollup(
    now: Annotated[
        bool,
        typer.Option(
            "--now",
            help="Close a window now: roll up everything accrued until this moment, rather"
            " than until the end of the last full window (PAYOUTS_ROLLUP_WINDOW_SECONDS).",
        ),
    ] = False,
    as_json: Json = False,
) -> None:
    """Roll up the last closed window (a no-op if it was rolled up before).

    Windows are PAYOUTS_ROLLUP_WINDOW_SECONDS long (an hour) and end on the hour; a window
    takes what was accrued before its end. An earning recorded at 14:20 waits for the
    window ending at 15:00, unless --now closes one at once."""
    rt = _runtime()
    start = None
    if now:
        start = datetime.now(UTC) - timedelta(seconds=rt.settings.rollup_window_seconds)
    result = roll_up(rt, window_start=start, actor="operator")
    if as_json:
        _echo_json(asdict(result))
        return
    verb = "rolled up" if result.created else "already rolled up"
    typer.echo(
        f"window {result.window_start.isoformat()} .. {result.window_end.isoformat()}: {verb},"
        f" {result.payouts} payouts from {result.credits} credits, total {result.total}"
    )


@app.command()
def settle(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be batched.")] = False,
    submit: Annotated[bool, typer.Option(help="Sign and broadcast the sealed batches.")] = True,
    as_json: Json = False,
) -> None:
    """Seal pending payouts into batches and submit them (an ops-triggered settlement run)."""
    rt = _runtime()
    # Sealed first, then sent one batch at a time as settlement_run sends them, so the bar
    # moves per batch.
    run = ops.settlement_run(rt, dry_run=dry_run, submit_now=False, actor="operator")
    sealed = [b.batch_id for plan in run.plans.values() for b in plan.sealed]
    sent = []
    if submit and not dry_run:
        with progress("submitting batches", len(sealed), quiet=as_json) as advance:
            for batch_id in sealed:
                sent.append(submit_batch(rt, batch_id, actor="operator"))
                advance(1)
    if as_json:
        _echo_json(
            {
                "dry_run": dry_run,
                "plans": {symbol: asdict(plan) for symbol, plan in run.plans.items()},
                "submissions": [asdict(r) | {"outcome": r.describe()} for r in sent],
            }
        )
        return
    for symbol, plan in run.plans.items():
        prefix = "would seal" if dry_run else "sealed"
        typer.echo(
            f"{symbol}: {prefix} {len(plan.sealed)} batches; {plan.pending_left} payouts "
            f"left pending ({plan.reason}); wallet can still pay {plan.wallet_available}"
        )
        render.table(
            None,
            [">batch", ">payouts", ">total", ">gas estimate"],
            ((b.batch_id, b.size, b.total, b.gas_estimate) for b in plan.sealed),
            empty="",
        )
    render.table(
        None,
        [">batch", "outcome", ">nonce", "tx"],
        ((r.batch_id, r.describe(), r.nonce, r.tx_hash) for r in sent),
        empty="",
    )


@app.command()
def reconcile(as_json: Json = False) -> None:
    """Read the chain's logs since the checkpoint, match them, confirm and finalize.

    Then say what still waits, and for how many blocks: confirmations are blocks mined on
    top, so a chain that mines no blocks confirms nothing."""
    rt = _runtime()
    with progress("reading blocks", None, quiet=as_json) as advance:
        outcome = reconcile_chain(rt, actor="operator", on_blocks=advance)
    s, a = outcome.scan, outcome.advance
    waiting = tracking.awaiting_depth(rt, s.to_block)
    if as_json:
        claims = asdict(outcome.claims) if outcome.claims else None
        _echo_json({"scan": asdict(s), "advance": asdict(a), "claims": claims, "waiting": waiting})
        return
    typer.echo(
        f"blocks {s.from_block}..{s.to_block}: {s.included} batches included, "
        f"{a.confirmed} confirmed, {a.finalized} finalized, "
        f"{s.exceptions + a.reorged} exceptions"
    )
    if outcome.claims is not None:
        c = outcome.claims
        typer.echo(
            f"claims: {c.seen} seen, {c.claimed_payouts} payouts claimed,"
            f" {c.finalized_payouts} finalized by claim, {c.unwound} unwound by a reorg"
        )
    for b in waiting:
        if b["block_number"] is None:
            typer.echo(f"batch {b['id']} {b['state']}: sent, not in a block yet")
        else:
            typer.echo(
                f"batch {b['id']} {b['state']} in block {b['block_number']}: waiting for"
                f" {b['blocks_to_confirm']} more blocks to confirm,"
                f" {b['blocks_to_final']} to be final (head {s.to_block})"
            )


@app.command()
def status(as_json: Json = False) -> None:
    """Counts by state, totals by asset, ledger paid out vs seen on chain."""
    data = tracking.status(_runtime())
    if as_json:
        _echo_json(data)
    else:
        render.status(data)


@app.command()
def check(as_json: Json = False) -> None:
    """Recompute every balance from the entries and prove the ledger's invariants.

    Exit 1 if one does not hold."""
    with progress("checking the ledger", len(CHECKS), quiet=as_json) as advance:
        report = tracking.check(_runtime(), lambda _: advance(1))
    if as_json:
        _echo_json({"ok": report.ok, "results": [asdict(r) for r in report.results]})
    else:
        render.table(
            None,
            ["", "check", "offending rows"],
            (("ok" if r.ok else "FAIL", r.name, r.detail) for r in report.results),
            empty="no checks",
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def trace(
    item_id: int,
    payout: Annotated[
        bool, typer.Option("--payout", help="ID is a payout, not an earning.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Every transition of an earning (or payout) up to the block that carried it."""
    data = tracking.trace(_runtime(), "payout" if payout else "earning", item_id)
    if as_json:
        _echo_json(data)
    else:
        render.trace(data)


@app.command("settings")
def show_settings(as_json: Json = False) -> None:
    """The settings this command reads from the environment (secrets hidden)."""
    values = {
        # A URL's password is a secret too (SecretStr already hides the keys).
        name: re.sub(r"(://[^/:@]+:)[^/@]+@", r"\1***@", v) if isinstance(v, str) else v
        for name, v in get_settings().model_dump(mode="json").items()
    }
    if as_json:
        _echo_json(values)
    else:
        render.table(
            None,
            ["setting", "value"],
            ((f"PAYOUTS_{k.upper()}", json.dumps(v)) for k, v in values.items()),
            empty="",
        )


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address [PAYOUTS_API_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [PAYOUTS_API_PORT].")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Serve the HTTP API (uvicorn); OpenAPI at /openapi.json, docs at /docs."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "payouts.api.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )


@app.command()
def demo(
    creators: Annotated[int, typer.Option(help="How many creators earn.")] = 300,
    credits_per_creator: Annotated[int, typer.Option(help="Earnings per creator.")] = 5,
    window: Annotated[int, typer.Option(help="Roll-up window in seconds.")] = 5,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 240.0,
    serve: Annotated[
        bool, typer.Option(help="Then keep the stack and the ops page up until Ctrl-C.")
    ] = False,
) -> None:
    """Run the whole pipeline on embedded defaults and print what happened."""
    from devstack.demo import run_demo

    ok = run_demo(
        creators=creators,
        credits_per_creator=credits_per_creator,
        window_seconds=window,
        timeout=timeout,
        echo=typer.echo,
        serve=serve,
    )
    if not ok:
        raise typer.Exit(1)


@app.command()
def dev(
    seed: Annotated[int, typer.Option(min=0, max=10_000, help="Creators who earn.")] = 0,
    worker: Annotated[bool, typer.Option(help="Also run a Celery worker and beat.")] = False,
) -> None:
    """Keep a local stack up (PostgreSQL, anvil with the contracts) and write its settings to
    .state/dev.env, for trying the CLI and the API by hand; Ctrl-C stops it."""
    from devstack.up import run_dev_stack

    run_dev_stack(seed=seed, worker=worker, echo=typer.echo)


@app.command()
def claim(
    creator: Annotated[str, typer.Argument(help="The creator, by the marketplace's id.")],
    marketplace: Annotated[str, typer.Option(help="The creator's marketplace, by name.")],
    payer_key: Annotated[
        str | None,
        typer.Option(
            envvar="PAYOUTS_CLAIM_PAYER_KEY",
            help="Pays the gas (hex private key); unset, the hot wallet (dev chains only).",
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Submit the creator's current vouchers to the escrow (support, demos): each pays what
    the escrow has not paid that address yet; one that would pay nothing is not sent."""
    from pydantic import SecretStr

    from payouts.chain.signer import LocalKeySigner
    from payouts.claims import relay
    from payouts.ops.deploy import DEV_CHAIN_IDS

    rt = _runtime()
    if payer_key is None and rt.settings.chain_id not in DEV_CHAIN_IDS:
        _fail("name who pays the gas: --payer-key (the hot wallet pays only on a dev chain)")
    payer = LocalKeySigner(SecretStr(payer_key)) if payer_key else None
    sent = relay.claim_for_creator(rt, ops.marketplace_id(rt, marketplace), creator, payer=payer)
    if as_json:
        _echo_json({"submitted": _submitted(sent)})
        return
    if not sent:
        typer.echo(f"creator {creator}: nothing to claim")
    for s in sent:
        paying = format_units(s.paying, rt.settings.asset(s.asset).decimals)
        typer.echo(f"{s.recipient}: claiming {paying} {s.asset} in {s.tx_hash}")


def _submitted(sent: list[Any]) -> list[dict[str, Any]]:
    """Submitted vouchers as JSON: amounts as strings of base units, as the API shows them."""
    return [asdict(s) | {"cumulative": str(s.cumulative), "paying": str(s.paying)} for s in sent]


@claims_app.command("top-up")
def claims_top_up(as_json: Json = False) -> None:
    """Send the escrow, from the hot wallet, what is claimable beyond what it holds (plus the
    headroom); nothing while it holds enough."""
    from payouts.claims import topups

    done = topups.top_up(_runtime(), actor="operator")
    if as_json:
        _echo_json({"top_ups": [asdict(t) | {"amount": str(t.amount)} for t in done]})
        return
    if not done:
        typer.echo("the escrow holds what is claimable: nothing sent")
    for t in done:
        typer.echo(f"topped up {t.amount} {t.symbol} in {t.tx_hash}")


@claims_app.command("rotate-signer")
def claims_rotate_signer(
    signer: Annotated[
        str | None,
        typer.Argument(help="The new signer's address; unset, PAYOUTS_CLAIMS_SIGNER_KEY's."),
    ] = None,
) -> None:
    """Make the escrow pay the new claim signer's vouchers (sent by the hot wallet, its owner):
    every voucher of the old one stops paying, and the ledger issues fresh ones."""
    from payouts.claims import rotation

    sent = rotation.rotate_signer(_runtime(), signer)
    typer.echo("the escrow already pays that signer" if sent is None else f"rotated in {sent}")


@claims_app.command("sweep")
def claims_sweep(
    older_than: Annotated[
        float | None,
        typer.Option(min=0, help="Seconds claimable; unset, PAYOUTS_CLAIMS_SWEEP_AFTER_SECONDS."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Submit, from the hot wallet, the vouchers of every address with a payout claimable
    for longer than the sweep age: the escrow pays them as their own claims would."""
    from payouts.claims import relay

    sent = relay.sweep(_runtime(), older_than=older_than)
    if as_json:
        _echo_json({"swept": _submitted(sent)})
        return
    typer.echo(f"swept {len(sent)} addresses: {sum(s.paying for s in sent)} base units")


@claims_app.command("export")
def claims_export(
    file: Annotated[
        Path, typer.Argument(help="Where to write the vouchers (JSON).", dir_okay=False)
    ],
) -> None:
    """Write every address's current voucher, signed now, to FILE: each one claims from the
    escrow without this system, so claims survive the API being down."""
    from payouts.claims import handlers as claims

    exported = claims.export(_runtime())
    file.write_text(json.dumps(exported, indent=2) + "\n", encoding="utf-8")
    total = len(exported["vouchers"])
    typer.echo(f"{file}: {total} vouchers for escrow {exported['contract']}")


chain_app = typer.Typer(help="The contracts on chain.", no_args_is_help=True)
app.add_typer(chain_app, name="chain")


@chain_app.command("deploy")
def chain_deploy(
    env_file: Annotated[
        Path | None, typer.Option(help="Also write the settings to this file, for `.` in sh.")
    ] = None,
    mint: Annotated[
        int | None, typer.Option(min=1, help="Test token minted to the hot wallet (dev chain).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Deploy the PayoutBatcher and the PayoutClaims escrow (on a dev chain the test token
    too), approve the batcher from the hot wallet and print the settings to run with; run
    again, it finds them and sends nothing. The escrow is funded by `payouts claims top-up`."""
    import shlex

    from payouts.ops import deploy

    rt = _runtime()
    done = deploy.chain_deploy(rt) if mint is None else deploy.chain_deploy(rt, mint=mint)
    for step in done.done:
        typer.echo(step, err=True)
    if not done.done:
        typer.echo(f"chain {done.chain_id}: everything is in place, nothing sent", err=True)
    lines = "".join(f"{name}={shlex.quote(value)}\n" for name, value in done.settings().items())
    if env_file is not None:
        # Readers (the app containers) see the old file or the new one, never half of one.
        partial = env_file.with_name(env_file.name + ".partial")
        partial.write_text(lines, encoding="utf-8")
        partial.replace(env_file)
    if as_json:
        _echo_json(
            {
                "chain_id": done.chain_id,
                "dev_chain": done.dev,
                "hot_wallet": done.hot_wallet,
                "settings": done.settings(),
                "sent": list(done.done),
            }
        )
    else:
        typer.echo(lines, nl=False)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover - python -m payouts.cli
    main()
