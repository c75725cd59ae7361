"""Transactions that sit unmined or vanish from the node's pool, on anvil with automine off.

A stuck transaction is replaced with the same nonce and fees raised by the bump; a dropped one
is sent again from its stored bytes. Whichever attempt is mined is the one reconciled; every
creator is paid exactly once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from sqlalchemy import text

from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.submission import handlers as submission
from tests.chainkit import (
    assert_books_balance,
    assert_chain_pays_what_the_ledger_says,
    automine_off,
    mine,
    mine_at_base_fee,
    pool_hashes,
    roll_up_now,
    scalar,
    seed,
    settle_and_submit,
)

GWEI = 10**9


@contextlib.contextmanager
def full_blocks(rt: Runtime) -> Iterator[None]:
    """Blocks too small for a batch transaction: it waits in the pool, unmined."""
    limit = rt.chain.block("latest").gas_limit
    rt.chain.rpc("anvil_setBlockGasLimit", [hex(100_000)])
    try:
        yield
    finally:
        rt.chain.rpc("anvil_setBlockGasLimit", [hex(limit)])


def attempts(rt: Runtime) -> list[tuple[str, str, int, int]]:
    with rt.uow() as session:
        rows = session.execute(
            text("SELECT tx_hash, state, nonce, max_fee_per_gas FROM tx_attempts ORDER BY id")
        ).all()
    return [(r.tx_hash, r.state, r.nonce, int(r.max_fee_per_gas)) for r in rows]


def finish(rt: Runtime) -> None:
    """Mine past finality and reconcile (twice: the second must change nothing)."""
    mine(rt, 4)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)


def test_a_stuck_transaction_is_replaced_with_higher_fees_and_paid_once(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    """Blocks are full (their gas limit is below our transaction's): it sits in the pool."""
    rt = make_chain_runtime(stuck_after_blocks=3)
    recipients = seed(rt, creators=4)
    roll_up_now(rt)
    with automine_off(rt):
        (sent,) = settle_and_submit(rt)
        (first,) = attempts(rt)
        with full_blocks(rt):
            mine(rt, 2)
            assert submission.watch(rt, sent.batch_id).outcome == "waiting"  # 2 blocks < 3
            mine(rt, 1)
            assert rt.chain.receipt(sent.tx_hash) is None
        # (anvil refuses new transactions larger than the current block, real nodes do not:
        # the blocks get room again before the replacement is sent, not mined.)

        watched = submission.watch(rt, sent.batch_id)

        assert watched.outcome == "replaced"
        old, new = attempts(rt)
        assert old[0] == first[0]
        assert new[2] == old[2]  # the same nonce
        assert new[3] * 10_000 >= old[3] * 11_250  # at least +12.5%
        assert [old[1], new[1]] == ["broadcast", "broadcast"]  # both live: either may land
        assert submission.watch(rt, sent.batch_id).outcome == "waiting"  # counted from the new one
        mine(rt, 1)

    finish(rt)
    assert [(a[0], a[1]) for a in attempts(rt)] == [(old[0], "replaced"), (new[0], "mined")]
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 4
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    assert_books_balance(rt)


def test_a_fee_spike_that_evicts_the_transaction_gets_a_replacement_that_pays_it(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    """anvil drops a transaction whose max fee is below the base fee; sending the same bytes
    again is refused, so a replacement with fees above the new base fee goes instead."""
    rt = make_chain_runtime(max_fee_per_gas=100 * GWEI)
    recipients = seed(rt, creators=3)
    roll_up_now(rt)
    with automine_off(rt):
        (sent,) = settle_and_submit(rt)
        (first,) = attempts(rt)
        mine_at_base_fee(rt, 4 * first[3])
        assert sent.tx_hash not in pool_hashes(rt)

        watched = submission.watch(rt, sent.batch_id)

        assert watched.outcome == "replaced"
        assert attempts(rt)[1][3] > 2 * 4 * first[3] * 7 // 8  # above the base fee now
        mine(rt, 1)

    finish(rt)
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 3
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    assert_books_balance(rt)


def test_no_replacement_above_the_fee_cap_an_operator_is_told(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime(
        stuck_after_blocks=1, max_fee_per_gas=2 * GWEI, priority_fee_per_gas=GWEI
    )
    recipients = seed(rt, creators=2)
    roll_up_now(rt)
    with automine_off(rt):
        (sent,) = settle_and_submit(rt)
        (first,) = attempts(rt)
        with full_blocks(rt):
            assert first[3] * 11_250 > 2 * GWEI * 10_000  # a bump would pass the cap
            mine(rt, 2)

            assert submission.watch(rt, sent.batch_id).outcome == "fee-cap"
            assert submission.watch(rt, sent.batch_id).outcome == "fee-cap"  # told once
            assert scalar(rt, "SELECT count(*) FROM exceptions WHERE kind = 'fee_cap_reached'") == 1
            assert len(attempts(rt)) == 1
        mine(rt, 1)
    # The blocks have room again: the first attempt lands.

    finish(rt)
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 2
    assert_chain_pays_what_the_ledger_says(rt, recipients)


def test_a_dropped_transaction_is_sent_again_from_its_stored_bytes(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    recipients = seed(rt, creators=3)
    roll_up_now(rt)
    with automine_off(rt):
        (sent,) = settle_and_submit(rt)
        rt.chain.rpc("anvil_dropTransaction", [sent.tx_hash])
        assert sent.tx_hash not in pool_hashes(rt)

        watched = submission.watch(rt, sent.batch_id)

        assert (watched.outcome, watched.tx_hash) == ("rebroadcast", sent.tx_hash)
        assert sent.tx_hash in pool_hashes(rt)
        mine(rt, 1)

    finish(rt)
    assert len(attempts(rt)) == 1
    assert scalar(rt, "SELECT broadcasts FROM tx_attempts") == 2
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    assert_books_balance(rt)


def test_a_nonce_gap_left_by_a_dropped_transaction_is_filled_by_resending_it(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    """Batch 1 (nonce n) is dropped; batch 2 (nonce n+1) cannot be mined until n is."""
    rt = make_chain_runtime(max_batch_size=3)
    recipients = seed(rt, creators=6)
    roll_up_now(rt)
    with automine_off(rt):
        first, second = settle_and_submit(rt)
        assert second.nonce == first.nonce + 1
        rt.chain.rpc("anvil_dropTransaction", [first.tx_hash])
        mine(rt, 3)
        assert rt.chain.receipt(second.tx_hash) is None  # waiting behind the gap

        outcomes = [submission.watch(rt, b).outcome for b in submission.watchlist(rt).unmined]

        assert outcomes[0] == "rebroadcast"
        assert outcomes[1] in {"waiting", "rebroadcast"}  # anvil may drop the gapped one too
        mine(rt, 1)

    finish(rt)
    assert scalar(rt, "SELECT count(*) FROM batches WHERE state = 'finalized'") == 2
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    assert_books_balance(rt)
