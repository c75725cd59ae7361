"""A batch already deep enough for finality when the reconciler first sees it confirmed: its
payouts go submitted -> confirmed -> finalized with one UPDATE, and nothing of the record is
skipped. Each payout keeps both audit rows in order with their causes, and both events, every
confirmed event written (and numbered) before any finalized one, with the status, previous
status and depth of its own move; a marketplace reads the same life as one confirmed and
finalized in two calls. A node that answers the batch's log but not yet its receipt costs the
scan a read of the range's logs, and finality a read of the block's receipts for the gas.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from payouts import lifecycle
from payouts.chain.client import ChainClient
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.states import PayoutState
from tests import chainkit as kit
from tests.eventkit import listed
from tests.integration.test_payout_events import PAYOUT_LIFE, by_payout, shop
from tests.integration.test_refusals_and_finality import rows


def test_a_batch_final_when_first_confirmed_records_both_moves_in_order(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime(confirmation_depth=2, finality_depth=4)
    kit.seed(rt, creators=3)
    kit.roll_up_now(rt)
    kit.settle_and_submit(rt)  # automine: in a block at once
    kit.mine(rt, 4)

    outcome = reconciler.reconcile(rt)

    assert (outcome.advance.confirmed, outcome.advance.finalized) == (1, 1)
    batch_id, block = rows(rt, "SELECT id, block_number FROM batches")[0]
    depth = rt.chain.block_number() - block + 1
    assert kit.scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 3
    audited = rows(
        rt,
        "SELECT entity_id, from_state, to_state, cause FROM transitions"
        " WHERE entity = 'payout' AND to_state IN ('confirmed', 'finalized') ORDER BY id",
    )
    for payout_id in {r.entity_id for r in audited}:
        assert [tuple(r)[1:] for r in audited if r.entity_id == payout_id] == [
            ("submitted", "confirmed", f"batch {batch_id} {depth} blocks deep"),
            ("confirmed", "finalized", f"batch {batch_id} final at {depth} blocks"),
        ]
    assert len(audited) == 6
    kinds = [
        r.type
        for r in rows(
            rt,
            "SELECT type FROM events WHERE type IN ('payout.confirmed', 'payout.finalized')"
            " ORDER BY id",
        )
    ]
    assert kinds == ["payout.confirmed"] * 3 + ["payout.finalized"] * 3
    lives = by_payout(listed(rt, shop(rt)))
    assert len(lives) == 3
    for life in lives.values():
        assert [e["type"] for e in life] == PAYOUT_LIFE
        submitted, confirmed, finalized = (e["data"] for e in life[-3:])
        # The same payload as a move of its own writes, plus what the reconciler adds.
        assert set(confirmed) == set(finalized) == set(submitted) | {"confirmations"}
        assert {k: confirmed[k] for k in ("payout_id", "creator_id", "amount", "asset")} == {
            k: submitted[k] for k in ("payout_id", "creator_id", "amount", "asset")
        }
        assert (confirmed["status"], confirmed["previous_status"]) == ("confirmed", "submitted")
        assert (finalized["status"], finalized["previous_status"]) == ("finalized", "confirmed")
        assert confirmed["confirmations"] == finalized["confirmations"] == depth
        assert confirmed["cause"] == f"batch {batch_id} {depth} blocks deep"
        assert confirmed["block_number"] == finalized["block_number"] == block
    assert kit.value(rt, "SELECT state FROM batches") == "finalized"


def test_a_path_moves_only_the_rows_still_in_its_first_state(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime()
    kit.seed(rt, creators=2)
    kit.roll_up_now(rt)
    first, second = (r.id for r in rows(rt, "SELECT id FROM payouts ORDER BY id"))
    with rt.uow() as session:
        lifecycle.move(session, lifecycle.PAYOUT, [second], PayoutState.HELD, cause="x", actor="t")
        moved = lifecycle.move_path(
            session,
            lifecycle.PAYOUT,
            [PayoutState.PENDING, PayoutState.HELD, PayoutState.CANCELLED],
            rows="SELECT id, 'review' AS why FROM payouts",
            causes=["src.why || ' opened'", "src.why || ' rejected'"],
            actor="path",
        )
        session.commit()

    assert moved == 1
    states = rows(rt, "SELECT id, state FROM payouts ORDER BY id")
    assert [tuple(r) for r in states] == [(first, "cancelled"), (second, "held")]
    trail = rows(
        rt,
        "SELECT entity_id, from_state, to_state, cause FROM transitions"
        " WHERE actor = 'path' ORDER BY id",
    )
    assert [tuple(r) for r in trail] == [
        (first, "pending", "held", "review opened"),
        (first, "held", "cancelled", "review rejected"),
    ]
    kinds = rows(rt, f"SELECT type FROM events WHERE subject = 'payout:{first}' ORDER BY id")
    assert [k.type for k in kinds][-2:] == ["payout.held", "payout.cancelled"]


class ReceiptsNotYet(ChainClient):
    """The real node, but answering no receipt yet (one behind a balancer, still indexing)."""

    def receipts(self, tx_hashes: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        return dict.fromkeys(tx_hashes)


def test_a_node_without_the_receipts_yet_still_gets_the_batch_matched_and_its_gas_booked(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime(max_batch_size=2, confirmation_depth=1, finality_depth=3)
    rt.__dict__["chain"] = ReceiptsNotYet(rt.settings.rpc_url)
    recipients = kit.seed(rt, creators=4)
    kit.roll_up_now(rt)
    assert len(kit.settle_and_submit(rt)) == 2
    kit.mine(rt, 3)

    outcome = reconciler.reconcile(rt)

    assert (outcome.scan.included, outcome.advance.finalized) == (2, 2)
    assert kit.scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 4
    assert kit.scalar(rt, "SELECT count(*) FROM batches WHERE gas_used > 0") == 2
    assert kit.scalar(rt, "SELECT count(*) FROM exceptions") == 0
    kit.assert_chain_pays_what_the_ledger_says(rt, recipients)
    kit.assert_books_balance(rt)
