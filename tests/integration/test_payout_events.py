"""Every state a marketplace cares about becomes an event, in the transaction of the change.

A payout tells its marketplace created, batched, submitted (its transaction), confirmed
(technical) and finalized (business finality, never earlier), in that order; a reorg says
unconfirmed and the confirmations come again; a failed batch says failed with its cause; a
refused transfer says failed, and the hold, the creator's hold and the exception it opens and
closes are events too. A rolled-back change leaves no event, and every audited move of a
payout has its event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from eth_account import Account
from sqlalchemy import text

from payouts import exception_queue, lifecycle
from payouts.catalog import ensure_marketplace, set_payout_addresses
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.settlement.handlers import HoldTarget
from payouts.states import PayoutState
from payouts.submission.moves import fail_batch
from tests.chainkit import (
    MARKETPLACE,
    block_recipient,
    mine,
    roll_up_now,
    scalar,
    seed,
    settle_and_submit,
    value,
)
from tests.eventkit import listed, written
from tests.integration.test_refusals_and_finality import settle_fully
from tests.integration.test_status_after_reorgs import GWEI, reorg_then_replace

PAYOUT_LIFE = [
    "payout.created",
    "payout.batched",
    "payout.submitted",
    "payout.confirmed",
    "payout.finalized",
]


def shop(rt: Runtime) -> int:
    return int(value(rt, f"SELECT id FROM marketplaces WHERE name = '{MARKETPLACE}'"))


def by_payout(events: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """The payout events of each payout, in the order given."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["type"].startswith("payout."):
            out[e["data"]["payout_id"]].append(e)
    return dict(out)


def written_messages(rt: Runtime, sql_filter: str = "true") -> list[dict[str, Any]]:
    """Events as written (in a savepoint test nothing is numbered), in write order."""
    return [{"type": r.type, "data": r.payload} for r in written(rt, sql_filter)]


def payout_events_count_equals_its_moves(rt: Runtime) -> None:
    moves = scalar(
        rt,
        "SELECT count(*) FROM transitions WHERE entity = 'payout' AND from_state IS NOT NULL",
    )
    events = scalar(
        rt, "SELECT count(*) FROM events WHERE type LIKE 'payout.%' AND type <> 'payout.created'"
    )
    assert moves == events
    created = scalar(rt, "SELECT count(*) FROM events WHERE type = 'payout.created'")
    assert created == scalar(rt, "SELECT count(*) FROM payouts")


def test_a_payout_tells_created_batched_submitted_confirmed_then_finalized_at_finality(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime(confirmation_depth=2, finality_depth=4)
    seed(rt, creators=3)
    roll_up_now(rt)
    (sent,) = settle_and_submit(rt)  # automine: in a block at once
    batch = "SELECT state FROM batches"

    # Block by block: finalized is written only once the batch is final, never before.
    while value(rt, batch) != "finalized":
        reconciler.reconcile(rt)
        final = value(rt, batch) == "finalized"
        finalized_events = scalar(rt, "SELECT count(*) FROM events WHERE type = 'payout.finalized'")
        assert finalized_events == (3 if final else 0)
        mine(rt, 1)

    feed = listed(rt, shop(rt))
    assert [e["seq"] for e in feed] == list(range(1, len(feed) + 1))
    assert feed[0]["type"] == "earnings.accepted"
    assert feed[0]["data"]["accepted"] == 6
    lives = by_payout(feed)
    assert len(lives) == 3
    row = lambda sql: value(rt, sql)  # noqa: E731
    public_id = str(row("SELECT public_id FROM batches"))
    block = row("SELECT block_number FROM batches")
    for payout_id, life in lives.items():
        assert [e["type"] for e in life] == PAYOUT_LIFE
        created, batched, submitted, confirmed, finalized = (e["data"] for e in life)
        amount = str(row(f"SELECT amount FROM payouts WHERE id = {payout_id}"))
        assert (created["status"], created["amount"], created["asset"]) == (
            "pending",
            amount,
            "USDC",
        )
        assert created["url"] == f"/v1/payouts/{payout_id}"
        assert created["creator_id"].startswith("c1-")  # the marketplace's own id
        # The roll-up writes a new payout's payload without the joins of the other moves:
        # the same keys, nothing yet of a batch.
        recipient = row(f"SELECT recipient FROM payouts WHERE id = {payout_id}")
        assert created == {
            "payout_id": int(payout_id), "status": "pending", "previous_status": None,
            "creator_id": created["creator_id"], "amount": amount, "asset": "USDC",
            "recipient": recipient, "batch_id": None, "tx_hash": None, "block_number": None,
            "cause": "rolled up", "url": f"/v1/payouts/{payout_id}",
        }  # fmt: skip
        assert set(created) <= set(batched)
        assert batched["batch_id"] == public_id
        assert (submitted["status"], submitted["tx_hash"]) == ("submitted", sent.tx_hash)
        assert (confirmed["block_number"], confirmed["confirmations"]) == (block, 2)
        assert finalized["status"] == "finalized"
        assert finalized["confirmations"] >= 4
        assert finalized["tx_hash"] == sent.tx_hash
    payout_events_count_equals_its_moves(rt)


def test_a_reorg_says_unconfirmed_and_the_payout_is_confirmed_again_where_it_lands(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime(confirmation_depth=2, finality_depth=3, max_fee_per_gas=100 * GWEI)
    seed(rt, creators=2)
    roll_up_now(rt)

    orphaned, first, replacement = reorg_then_replace(rt)

    lives = by_payout(written_messages(rt))
    assert len(lives) == 2
    for life in lives.values():
        assert [e["type"] for e in life] == [
            "payout.created",
            "payout.batched",
            "payout.submitted",
            "payout.confirmed",
            "payout.unconfirmed",
            "payout.confirmed",
            "payout.finalized",
        ]
        unconfirmed = life[4]["data"]
        assert unconfirmed["status"] == "submitted"
        assert unconfirmed["previous_status"] == "confirmed"
        assert unconfirmed["tx_hash"] == first
        assert unconfirmed["orphaned_block_number"] == orphaned.block_number
        assert unconfirmed["orphaned_block_hash"] == orphaned.block_hash
        assert "reorganised away" in unconfirmed["cause"]
        assert life[5]["data"]["tx_hash"] == replacement
        assert life[6]["data"]["tx_hash"] == replacement
    payout_events_count_equals_its_moves(rt)


def test_a_failed_batch_says_failed_with_its_cause_and_batched_again_later(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    seed(rt, creators=2)
    roll_up_now(rt)
    (sealed,) = settlement.settle(rt, actor="test")["USDC"].sealed
    with rt.uow() as session:
        fail_batch(session, sealed.batch_id, cause="nonce 7 was taken by 0xabc", actor="test")
        session.commit()
    settlement.settle(rt, actor="test")

    for life in by_payout(written_messages(rt)).values():
        assert [e["type"] for e in life] == [
            "payout.created",
            "payout.batched",
            "payout.failed",
            "payout.batched",
        ]
        failed = life[2]["data"]
        assert (failed["status"], failed["previous_status"]) == ("pending", "batched")
        assert failed["batch_id"] == str(sealed.public_id)
        assert failed["cause"] == f"batch {sealed.batch_id} failed: nonce 7 was taken by 0xabc"
        assert life[3]["data"]["batch_id"] != failed["batch_id"]
    payout_events_count_equals_its_moves(rt)


def test_a_refused_transfer_says_failed_held_and_the_exception_opens_and_closes(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    recipients = seed(rt, creators=2)
    roll_up_now(rt)
    refused = recipients["c1-1"]
    block_recipient(rt, refused)
    settle_fully(rt)
    exception_id = scalar(rt, "SELECT id FROM exceptions WHERE kind = 'transfer_failed'")
    with rt.uow() as session:
        exception_queue.resolve_exception(session, exception_id, "address cleared", actor="ops")
        session.commit()

    payout_id = scalar(rt, f"SELECT id FROM payouts WHERE recipient = '{refused}'")
    life = by_payout(written_messages(rt))[payout_id]
    assert [e["type"] for e in life] == [*PAYOUT_LIFE[:4], "payout.failed"]
    failed = life[4]["data"]
    assert (failed["previous_status"], failed["status"]) == ("confirmed", "pending")
    assert "the token refused the transfer" in failed["cause"]
    assert failed["tx_hash"] is not None  # the transaction that carried the refusal
    others = [
        (e["type"], e["data"])
        for e in written_messages(rt, "type NOT LIKE 'payout.%' AND type <> 'earnings.accepted'")
    ]
    # The scan opens the exception; finality sends the payout back and holds the creator.
    assert [t for t, _ in others] == [
        "exception.opened",
        "hold.placed",
        "creator.held",
        "exception.resolved",
        "hold.released",
        "creator.released",
    ]
    opened, placed, held, resolved, released, freed = (d for _, d in others)
    assert (placed["rule"], placed["creator_id"], placed["payout_id"]) == (
        "transfer_failed",
        "c1-1",
        None,
    )
    assert placed["reason"] == f"token refused a transfer to {refused}"
    assert held["reason"] == placed["reason"]
    assert (opened["kind"], opened["payout_id"]) == ("transfer_failed", payout_id)
    assert opened["url"] == f"/v1/payouts/{payout_id}"
    assert "detail" not in opened  # evidence stays with the operators
    assert (resolved["status"], resolved["resolution"]) == ("resolved", "address cleared")
    assert released["status"] == "released"
    assert (freed["creator_id"], freed["status"]) == ("c1-1", "active")


def test_holds_say_placed_released_and_rejected_with_their_reasons(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    seed(rt, creators=2)
    roll_up_now(rt)
    first, second = (
        int(p)
        for p in (
            value(rt, "SELECT min(id) FROM payouts"),
            value(rt, "SELECT max(id) FROM payouts"),
        )
    )
    kept = settlement.place_hold(
        rt, HoldTarget(payout_id=first), "looks odd", rule="operator", actor="ops"
    )
    settlement.release_hold(rt, kept["id"], "checked, fine", actor="ops")
    doubted = settlement.place_hold(
        rt, HoldTarget(payout_id=second), "stolen card", rule="operator", actor="ops"
    )
    settlement.reject_hold(rt, doubted["id"], "chargeback", actor="ops")

    types = [
        (e["type"], e["data"].get("payout_id"))
        for e in written_messages(rt, "type NOT IN ('payout.created', 'earnings.accepted')")
    ]
    assert types == [
        ("hold.placed", first),
        ("payout.held", first),
        ("hold.released", first),
        ("payout.released", first),
        ("hold.placed", second),
        ("payout.held", second),
        ("hold.rejected", second),
        ("payout.cancelled", second),
        ("hold.placed", None),  # the creator held after the rejection
        ("creator.held", None),
    ]
    events = written_messages(rt, "type LIKE 'hold.%'")
    assert [e["data"]["reason"] for e in events] == [
        "looks odd",
        "looks odd",
        "stolen card",
        "stolen card",
        f"hold {doubted['id']} rejected: chargeback",
    ]
    assert events[1]["data"]["resolution"] == "checked, fine"
    assert events[3]["data"]["resolution"] == "chargeback"
    payout_events_count_equals_its_moves(rt)


def test_a_move_rolled_back_leaves_no_event(committed_ledger_runtime: Runtime) -> None:
    rt = committed_ledger_runtime  # real transactions: a rollback is a rollback
    seed(rt, creators=2)
    roll_up_now(rt)
    before = scalar(rt, "SELECT count(*) FROM events")
    with rt.uow() as session:
        ids = list(session.execute(text("SELECT id FROM payouts ORDER BY id")).scalars())
        moved = lifecycle.move(
            session, lifecycle.PAYOUT, ids, PayoutState.HELD, cause="t", actor="t"
        )
        assert len(moved) == 2
        assert session.execute(text("SELECT count(*) FROM events")).scalar_one() == before + 2
        session.rollback()

    assert scalar(rt, "SELECT count(*) FROM events") == before
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'held'") == 0
    assert "payout.held" not in {e["type"] for e in listed(rt, shop(rt))}
    payout_events_count_equals_its_moves(rt)


def test_an_exception_about_a_batch_tells_each_marketplace_with_a_payout_in_it_once(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    seed(rt, creators=2)
    with rt.uow() as session:
        other = ensure_marketplace(session, "other-shop")
        set_payout_addresses(session, other, {"theirs": Account.create().address})
        lonely = ensure_marketplace(session, "lonely-shop")
        session.commit()
    ingest.record(rt, "other-shop", [Earning("o-1", "theirs", 50_000, "USDC")])
    roll_up_now(rt)
    (sealed,) = settlement.settle(rt, actor="test")["USDC"].sealed
    with rt.uow() as session:
        assert exception_queue.record_exception(
            session, "submission_exhausted", f"{sealed.batch_id}", {}, batch_id=sealed.batch_id
        )
        # A second report of the same fault is no new exception, and no new event.
        assert not exception_queue.record_exception(
            session, "submission_exhausted", f"{sealed.batch_id}", {}, batch_id=sealed.batch_id
        )
        session.commit()

    opened = written(rt, "type = 'exception.opened'")
    assert sorted(r.marketplace_id for r in opened) == sorted([shop(rt), other])
    assert lonely not in {r.marketplace_id for r in written(rt)}
    assert {r.payload["batch_id"] for r in opened} == {str(sealed.public_id)}
    assert {r.payload["payout_id"] for r in opened} == {None}


def test_a_set_moved_in_one_statement_writes_its_events_in_it(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    seed(rt, creators=3)
    roll_up_now(rt)
    with rt.uow() as session:
        moved = lifecycle.move_rows(
            session,
            lifecycle.PAYOUT,
            PayoutState.PENDING,
            PayoutState.HELD,
            rows="SELECT id FROM payouts",
            cause="'held in bulk: ' || src.id",
            actor="test",
            event={"note": "bulk"},
        )
        session.commit()

    assert moved == 3
    held = written_messages(rt, "type = 'payout.held'")
    assert [e["data"]["cause"] for e in held] == [
        f"held in bulk: {e['data']['payout_id']}" for e in held
    ]
    assert {(e["data"]["previous_status"], e["data"]["note"]) for e in held} == {
        ("pending", "bulk")
    }
    payout_events_count_equals_its_moves(rt)
