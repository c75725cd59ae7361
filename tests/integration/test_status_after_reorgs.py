"""Status that stays true after a reorg (issue 11, part 4).

A reorg takes away the block that carried a batch; the transaction that lands instead is a
fee-bumped replacement, another hash. The transfers of the orphaned block stay in
``onchain_transfers`` (append-only), so every report must tell the orphaned inclusion from the
canonical one: ``payouts check`` passes on a ledger that matches the chain to the unit, the
status shows on chain what the canonical chain paid, and a marketplace is not shown a
transaction the chain dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from click.testing import Result
from sqlalchemy import text

from config.settings import REPO_ROOT
from payouts.chain.client import Block
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.submission import handlers as submission
from payouts.tracking import payouts as payout_views
from payouts.tracking import reports
from tests.chainkit import (
    MARKETPLACE,
    assert_books_balance,
    assert_chain_pays_what_the_ledger_says,
    automine_off,
    mine,
    mine_at_base_fee,
    roll_up_now,
    scalar,
    seed,
    settle_and_submit,
)
from tests.clikit import table_rows

GWEI = 10**9


def rows(rt: Runtime, sql: str, **params: Any) -> list[Any]:
    with rt.uow() as session:
        return list(session.execute(text(sql), params).all())


def one(rt: Runtime, sql: str, **params: Any) -> Any:
    (row,) = rows(rt, sql, **params)
    return row


def payout_view(rt: Runtime, payout_id: int) -> dict[str, Any]:
    with rt.uow() as session:
        marketplace = session.execute(
            text("SELECT id FROM marketplaces WHERE name = :n"), {"n": MARKETPLACE}
        ).scalar_one()
        return payout_views.payout(session, marketplace, payout_id)


def status_of(rt: Runtime) -> dict[str, Any]:
    with rt.uow() as session:
        return reports.status(session)


def reorg_then_replace(rt: Runtime) -> tuple[Any, str, str]:
    """A batch is mined, confirmed, reorganised away, and paid by a fee-bumped replacement
    instead; reconciled to finality. Returns the orphaned inclusion (block number and hash),
    the first transaction and its replacement."""
    mine(rt, 8)  # the reorg must not reach back to the contracts' deployment
    (sent,) = settle_and_submit(rt)  # automine: in a block at once
    assert sent.tx_hash is not None
    mine(rt, 1)
    reconciler.reconcile(rt)
    batch = one(rt, "SELECT state, block_number, block_hash, tx_hash FROM batches")
    assert (batch.state, batch.tx_hash) == ("confirmed", sent.tx_hash)

    rt.chain.rpc("anvil_reorg", [3, []])  # the block and its transaction are gone
    assert rt.chain.receipt(sent.tx_hash) is None
    assert reconciler.reconcile(rt).advance.reorged == 1
    while_it_is_out(rt, batch, sent.tx_hash)

    with automine_off(rt):
        first_max_fee = int(scalar(rt, "SELECT max_fee_per_gas FROM tx_attempts"))
        mine_at_base_fee(rt, 4 * first_max_fee)  # the stored bytes can no longer be mined
        watched = submission.watch(rt, sent.batch_id)
        assert watched.outcome == "replaced"
        replacement = watched.tx_hash
        assert replacement is not None
        assert replacement != sent.tx_hash
        mine(rt, 1)
    mine(rt, 4)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)
    assert [(r.tx_hash, r.state) for r in rows(rt, "SELECT * FROM tx_attempts ORDER BY id")] == [
        (sent.tx_hash, "replaced"),
        (replacement, "mined"),
    ]
    # Both inclusions are kept (the table is append-only): the orphaned one and the canonical.
    assert scalar(rt, "SELECT count(DISTINCT tx_hash) FROM onchain_transfers") == 2
    return batch, sent.tx_hash, replacement


def while_it_is_out(rt: Runtime, orphaned: Any, tx_hash: str) -> None:
    """Between the reorg and the replacement: the batch is out, in no block."""
    some_payout = scalar(rt, "SELECT min(id) FROM payouts")
    view = payout_view(rt, some_payout)
    # Nobody is shown a transaction or a block the chain no longer has.
    assert (view["status"], view["tx_hash"], view["block_number"]) == ("submitted", None, None)
    assert status_of(rt)["assets"]["USDC"]["onchain_paid"] == "0"
    recorded = one(
        rt, "SELECT batch_id, block_number, block_hash, tx_hash FROM orphaned_inclusions"
    )
    assert (recorded.block_number, recorded.block_hash, recorded.tx_hash) == (
        orphaned.block_number,
        orphaned.block_hash,
        tx_hash,
    )


def test_a_reorged_batch_paid_by_a_fee_bumped_replacement_checks_clean(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime(confirmation_depth=2, finality_depth=3, max_fee_per_gas=100 * GWEI)
    recipients = seed(rt, creators=5)
    roll_up_now(rt)

    orphaned, first, replacement = reorg_then_replace(rt)

    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 5
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    with rt.uow() as session:
        check = reports.check(session)
    assert check.ok, [r for r in check.results if not r.ok]
    usdc = status_of(rt)["assets"]["USDC"]
    assert (usdc["onchain_paid"], usdc["in_flight"]) == (usdc["ledger_paid"], "0")
    some_payout = scalar(rt, "SELECT min(id) FROM payouts")
    view = payout_view(rt, some_payout)
    assert (view["status"], view["tx_hash"]) == ("finalized", replacement)
    with rt.uow() as session:
        traced = reports.trace(session, "payout", some_payout)
    (traced_batch,) = traced["batches"]
    assert traced_batch["tx_hash"] == replacement
    assert [(o["block_hash"], o["tx_hash"]) for o in traced_batch["orphaned_inclusions"]] == [
        (orphaned.block_hash, first)
    ]


def test_the_migration_records_what_reorgs_orphaned_before_it(
    make_runtime: Callable[..., Runtime], db_url: str, operator: Callable[..., Result]
) -> None:
    """A database the fault left behind (reorg, replacement, no record of the orphaned block)
    is healed by migration 0007: it finds the inclusions no batch stands in any more."""
    rt = make_runtime(confirmation_depth=2, finality_depth=3, max_fee_per_gas=100 * GWEI)
    seed(rt, creators=3)
    roll_up_now(rt)
    reorg_then_replace(rt)
    recorded = (
        "SELECT block_hash, tx_hash, batch_id, block_number, unwound_by FROM orphaned_inclusions"
    )
    by_the_unwind = [tuple(r) for r in rows(rt, recorded)]
    assert len(by_the_unwind) == 1
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))

    command.downgrade(config, "0006")
    # The fault, as it was: every payout has transfers of two transactions, nothing says which.
    assert scalar(rt, "SELECT count(DISTINCT (payout_id, tx_hash)) FROM onchain_transfers") == 6
    command.upgrade(config, "head")

    assert [tuple(r) for r in rows(rt, recorded)] == by_the_unwind
    checked = operator(rt, "check")
    assert checked.exit_code == 0, checked.output
    assert "FAIL" not in checked.output
    assert ["ok", "no finalized payout's paying transfer is in an orphaned inclusion"] in [
        row[:2] for row in table_rows(checked.output)
    ]


@pytest.mark.parametrize("blocks_hidden", [1, 2])
def test_a_block_a_lagging_node_hid_for_a_while_is_taken_back_and_checks_clean(
    make_chain_runtime: Callable[..., Runtime],
    monkeypatch: pytest.MonkeyPatch,
    blocks_hidden: int,
) -> None:
    """A node behind the others (one of a load-balanced pool) answers null for the block that
    carries the batch: the batch is unwound and its inclusion recorded orphaned. The block was
    never gone; the next scan finds the batch in the very same block, and the books must
    take it back: finalized, paid once, the check clean."""
    rt = make_chain_runtime(confirmation_depth=1, finality_depth=3)
    recipients = seed(rt, creators=3)
    roll_up_now(rt)
    (sent,) = settle_and_submit(rt)
    reconciler.reconcile(rt)
    carried = one(rt, "SELECT block_number, block_hash FROM batches")
    real_blocks = rt.chain.blocks
    misses = iter(range(blocks_hidden))

    def lagging(numbers: Iterable[int]) -> dict[int, Block | None]:
        found = real_blocks(numbers)
        if carried.block_number in found and next(misses, None) is not None:
            found[carried.block_number] = None
        return found

    monkeypatch.setattr(rt.chain, "blocks", lagging)
    for _ in range(blocks_hidden):
        assert reconciler.reconcile(rt).advance.reorged == 1
    assert scalar(rt, "SELECT count(*) FROM orphaned_inclusions") == 1

    mine(rt, 4)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)

    again = one(rt, "SELECT state, block_number, block_hash, tx_hash FROM batches")
    assert tuple(again) == ("finalized", carried.block_number, carried.block_hash, sent.tx_hash)
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 3
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    assert_books_balance(rt)
    usdc = status_of(rt)["assets"]["USDC"]
    assert usdc["onchain_paid"] == usdc["ledger_paid"]
