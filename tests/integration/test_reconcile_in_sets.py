"""The reconciler works in sets: batches in one block cost what one batch costs.

Specified here on a real chain: matching, confirming and finalizing four batches of one block
takes exactly the statements one batch takes (none per batch, none per payout); a batch whose
token refused a transfer takes the exact path beside batches that match in the set, and both
keep one row per position with the recipient as sealed and a unique (tx hash, log index);
the ledger takes two legs per batch in one journal, whatever the number of batches.
"""

from __future__ import annotations

from collections.abc import Callable

from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.submission import handlers as submission
from tests.chainkit import (
    assert_books_balance,
    assert_chain_pays_what_the_ledger_says,
    automine_off,
    block_recipient,
    mine,
    roll_up_now,
    scalar,
    seed,
)
from tests.integration.test_earnings import _statements as statements
from tests.integration.test_refusals_and_finality import rows


def send_in_one_block(rt: Runtime, batch_ids: list[int]) -> None:
    with automine_off(rt):
        for batch_id in batch_ids:
            submission.submit(rt, batch_id, actor="test")
        mine(rt, 1)
    mine(rt, rt.settings.finality_depth)


def sealed(rt: Runtime, creators: int) -> tuple[list[int], dict[str, str]]:
    """Payouts for ``creators`` fresh addresses, sealed by policy; returns the batches and
    the recipients."""
    recipients = seed(rt, creators=creators)
    roll_up_now(rt)
    return [b.batch_id for b in settlement.settle(rt, actor="test")["USDC"].sealed], recipients


def test_four_batches_in_a_block_take_the_statements_of_one(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime(max_batch_size=1, confirmation_depth=1, finality_depth=3)
    batches, recipients = sealed(rt, creators=5)
    assert len(batches) == 5

    send_in_one_block(rt, batches[:1])
    with statements(rt) as one:
        assert reconciler.reconcile(rt).advance.finalized == 1
    send_in_one_block(rt, batches[1:])
    with statements(rt) as four:
        assert reconciler.reconcile(rt).advance.finalized == 4

    assert len(four) == len(one)
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 5
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    assert_books_balance(rt)


def test_a_refused_transfer_takes_the_exact_path_beside_batches_matched_in_the_set(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime(max_batch_size=2, confirmation_depth=1, finality_depth=3)
    batches, recipients = sealed(rt, creators=6)
    assert len(batches) == 3
    refused = recipients["c1-3"]
    block_recipient(rt, refused)

    send_in_one_block(rt, batches)
    outcome = reconciler.reconcile(rt)

    assert (outcome.scan.included, outcome.advance.finalized) == (3, 3)
    transfers = rows(
        rt,
        "SELECT o.recipient, o.succeeded, i.recipient AS sealed FROM onchain_transfers o"
        " JOIN batch_items i ON i.batch_id = o.batch_id AND i.position = o.position",
    )
    assert len(transfers) == 6
    assert all(t.recipient == t.sealed for t in transfers)  # as sealed, checksummed
    assert [t.recipient for t in transfers if not t.succeeded] == [refused]
    assert scalar(rt, "SELECT count(DISTINCT (tx_hash, log_index)) FROM onchain_transfers") == 6
    ((detail,),) = rows(rt, "SELECT detail FROM exceptions WHERE kind = 'transfer_failed'")
    assert detail["recipient"] == refused
    assert rows(rt, "SELECT state, batch_id FROM payouts WHERE state <> 'finalized'") == [
        ("pending", None)
    ]
    # Two legs per batch in one journal, not a leg per payout nor a journal per batch.
    legs = rows(
        rt,
        "SELECT count(*) FROM entries e JOIN journals j ON j.id = e.journal_id"
        " WHERE j.kind = 'payout_settled' GROUP BY j.id",
    )
    assert [n for (n,) in legs] == [6]
    paid = {c: address for c, address in recipients.items() if address != refused}
    assert_chain_pays_what_the_ledger_says(rt, paid)
    assert_books_balance(rt)
