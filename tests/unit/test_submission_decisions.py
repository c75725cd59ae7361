"""What a batch's transaction comes to, decided from facts alone.

Specified here: how a node's refusal of ``eth_sendRawTransaction`` is read from its message
(geth, anvil, erigon and the CamelCase names some nodes answer with), whatever its case; what
a send came to (a nonce spent by one of our own attempts is never a reason to fail the
batch); what the submitter does next (only a nonce spent by someone else fails the batch, only
an underpriced send is replaced); and what the watcher does with a batch that waits unmined
(mined, resent when dropped, replaced only once it has waited ``stuck_after`` blocks).
"""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from payouts.submission.decisions import (
    AfterSend,
    Refusal,
    SendOutcome,
    WatchAction,
    after_send,
    refusal_of,
    send_outcome,
    watch_action,
)

ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
TX_HASH = "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060"

# The phrases that say the node already has the transaction, that its nonce is spent, or that
# the fees are too low: the specification the classifier is held to, spelled out here.
ALREADY_KNOWN = ("already known", "known transaction", "already imported", "alreadyknown")
NONCE_USED = ("nonce too low", "nonce has already been used", "noncetoolow")
FEE_TOO_LOW = ("less than block base fee", "underpriced", "fee too low", "feecaptoolow")
SIBLING = "replacement"
PHRASES = (*ALREADY_KNOWN, *NONCE_USED, *FEE_TOO_LOW, SIBLING)


def _says_any(message: str, phrases: tuple[str, ...]) -> bool:
    text = message.lower()
    return any(p in text for p in phrases)


# --- refusal_of: reading the node's message -------------------------------------------------


@pytest.mark.parametrize(
    ("node", "message", "has_siblings", "expected"),
    [
        ("geth", "already known", False, Refusal.ALREADY_KNOWN),
        ("geth", "already known", True, Refusal.ALREADY_KNOWN),
        ("old geth", f"known transaction: {TX_HASH}", False, Refusal.ALREADY_KNOWN),
        ("anvil", "transaction already imported", False, Refusal.ALREADY_KNOWN),
        ("CamelCase name", "AlreadyKnown", True, Refusal.ALREADY_KNOWN),
        ("geth", f"nonce too low: address {ADDRESS}, tx: 7 state: 8", False, Refusal.NONCE_USED),
        ("geth", f"nonce too low: address {ADDRESS}, tx: 7 state: 8", True, Refusal.NONCE_USED),
        ("anvil", "nonce too low", False, Refusal.NONCE_USED),
        ("provider", "nonce has already been used", False, Refusal.NONCE_USED),
        ("CamelCase name", "NonceTooLow", False, Refusal.NONCE_USED),
        # our own replacement with higher fees sits in the pool: the nonce is ours
        ("geth", "replacement transaction underpriced", True, Refusal.SIBLING_PENDING),
        # no attempt of ours could be there: only higher fees can go now
        ("geth", "replacement transaction underpriced", False, Refusal.FEE_TOO_LOW),
        ("erigon", "replacement transaction underpriced", True, Refusal.SIBLING_PENDING),
        (
            "geth",
            f"max fee per gas less than block base fee: address {ADDRESS}, "
            "maxFeePerGas: 1000000000, baseFee: 2000000000",
            False,
            Refusal.FEE_TOO_LOW,
        ),
        ("anvil", "max fee per gas less than block base fee", True, Refusal.FEE_TOO_LOW),
        ("geth", "transaction underpriced", False, Refusal.FEE_TOO_LOW),
        # a full pool wants a higher tip, whatever siblings the batch has
        ("geth", "transaction underpriced", True, Refusal.FEE_TOO_LOW),
        ("erigon", "fee too low", False, Refusal.FEE_TOO_LOW),
        ("CamelCase name", "FeeCapTooLow", False, Refusal.FEE_TOO_LOW),
        ("any", "execution reverted", False, Refusal.OTHER),
        ("any", "execution reverted: ERC20: transfer amount exceeds balance", True, Refusal.OTHER),
        (
            "geth",
            f"insufficient funds for gas * price + value: address {ADDRESS} have 1 want 2",
            False,
            Refusal.OTHER,
        ),
        ("geth", "intrinsic gas too low", False, Refusal.OTHER),  # gas, not fee
        ("geth", "nonce too high", False, Refusal.OTHER),
        ("geth", "exceeds block gas limit", True, Refusal.OTHER),
        ("geth", "txpool is full", False, Refusal.OTHER),
        ("geth", "future transaction tries to replace pending", True, Refusal.OTHER),
        ("erigon", "replaced by transaction with higher tip", True, Refusal.OTHER),
        ("proxy", "", False, Refusal.OTHER),
    ],
)
def test_refusal_of_real_node_messages(
    node: str, message: str, has_siblings: bool, expected: Refusal
) -> None:
    assert refusal_of(message, has_siblings=has_siblings) is expected


@pytest.mark.parametrize("message", ["unknown transaction type", "Unknown transaction 0x01"])
def test_a_message_that_says_the_node_does_not_know_the_transaction_is_not_already_known(
    message: str,
) -> None:
    assert refusal_of(message, has_siblings=False) is Refusal.OTHER


def _recased(text: str, flips: list[bool]) -> str:
    """``text`` with the case of each letter flipped where ``flips`` says so."""
    padded = (flips + [False] * len(text))[: len(text)]
    return "".join(c.swapcase() if flip else c for c, flip in zip(text, padded, strict=True))


# Node messages are ASCII: printable text around one of the phrases (or none).
_text = st.text(alphabet=string.printable, max_size=40)
_messages = st.builds(
    lambda before, phrase, after: before + phrase + after,
    _text,
    st.sampled_from(("", *PHRASES)),
    _text,
)


@given(
    message=_messages,
    flips=st.lists(st.booleans(), max_size=100),
    has_siblings=st.booleans(),
)
def test_a_message_is_read_the_same_whatever_its_case(
    message: str, flips: list[bool], has_siblings: bool
) -> None:
    expected = refusal_of(message, has_siblings=has_siblings)
    for variant in (message.upper(), message.lower(), _recased(message, flips)):
        assert refusal_of(variant, has_siblings=has_siblings) is expected


@given(message=_messages)
def test_siblings_only_ever_turn_a_replacement_refusal_into_a_pending_sibling(
    message: str,
) -> None:
    alone = refusal_of(message, has_siblings=False)
    with_siblings = refusal_of(message, has_siblings=True)
    assert alone is not Refusal.SIBLING_PENDING
    if with_siblings is not alone:
        assert with_siblings is Refusal.SIBLING_PENDING
        assert _says_any(message, (SIBLING,))


@given(before=_text, phrase=st.sampled_from(NONCE_USED), after=_text, has_siblings=st.booleans())
def test_a_spent_nonce_is_read_wherever_the_phrase_stands_in_the_message(
    before: str, phrase: str, after: str, has_siblings: bool
) -> None:
    message = before + phrase.upper() + after
    assume(not _says_any(message, ALREADY_KNOWN))
    assert refusal_of(message, has_siblings=has_siblings) is Refusal.NONCE_USED


@given(message=_text, has_siblings=st.booleans())
def test_a_message_with_none_of_the_phrases_is_not_understood(
    message: str, has_siblings: bool
) -> None:
    assume(not _says_any(message, PHRASES))
    assert refusal_of(message, has_siblings=has_siblings) is Refusal.OTHER


_groups = st.sampled_from([ALREADY_KNOWN, NONCE_USED, FEE_TOO_LOW])


@given(
    phrases=st.lists(_groups, min_size=1, max_size=3, unique=True)
    .flatmap(lambda groups: st.tuples(*(st.sampled_from(g) for g in groups)))
    .flatmap(st.permutations),
    has_siblings=st.booleans(),
)
def test_the_stronger_fact_wins_when_a_message_says_several_things(
    phrases: list[str], has_siblings: bool
) -> None:
    """The node has it: nothing else matters. A spent nonce: no fee can help."""
    refusal = refusal_of("; ".join(phrases), has_siblings=has_siblings)
    if any(p in ALREADY_KNOWN for p in phrases):
        assert refusal is Refusal.ALREADY_KNOWN
    elif any(p in NONCE_USED for p in phrases):
        assert refusal is Refusal.NONCE_USED
    else:
        assert refusal is Refusal.FEE_TOO_LOW


# --- send_outcome and after_send: what a send came to, and what comes next ------------------


@pytest.mark.parametrize(
    ("refusal", "ours_on_chain", "expected"),
    [
        (None, False, SendOutcome.SENT),
        (Refusal.ALREADY_KNOWN, False, SendOutcome.KNOWN),
        (Refusal.SIBLING_PENDING, False, SendOutcome.KNOWN),
        (Refusal.NONCE_USED, False, SendOutcome.NONCE_USED),
        (Refusal.NONCE_USED, True, SendOutcome.KNOWN),  # one of ours was mined with it
        (Refusal.FEE_TOO_LOW, False, SendOutcome.UNDERPRICED),
        (Refusal.OTHER, False, None),  # nobody understands it: the caller raises
        (Refusal.OTHER, True, None),
    ],
)
def test_send_outcome(
    refusal: Refusal | None, ours_on_chain: bool, expected: SendOutcome | None
) -> None:
    assert send_outcome(refusal, ours_on_chain=ours_on_chain) is expected


def test_a_send_the_node_took_needs_no_lookup() -> None:
    assert send_outcome(None) is SendOutcome.SENT


_refusals = st.one_of(st.none(), st.sampled_from(Refusal))


@given(refusal=_refusals)
def test_a_nonce_spent_by_one_of_our_attempts_never_fails_the_batch(
    refusal: Refusal | None,
) -> None:
    outcome = send_outcome(refusal, ours_on_chain=True)
    assert outcome is not SendOutcome.NONCE_USED
    assert outcome is None or after_send(outcome) is not AfterSend.FAIL_BATCH


@given(refusal=_refusals, ours_on_chain=st.booleans())
def test_only_a_refusal_nobody_understands_is_left_to_the_caller(
    refusal: Refusal | None, ours_on_chain: bool
) -> None:
    outcome = send_outcome(refusal, ours_on_chain=ours_on_chain)
    assert (outcome is None) == (refusal is Refusal.OTHER)


@given(refusal=st.sampled_from(Refusal).filter(lambda r: r is not Refusal.NONCE_USED))
def test_whether_our_attempt_is_on_chain_matters_only_for_a_spent_nonce(
    refusal: Refusal,
) -> None:
    assert send_outcome(refusal, ours_on_chain=True) is send_outcome(refusal, ours_on_chain=False)


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (SendOutcome.SENT, AfterSend.RECORD_OUT),
        (SendOutcome.KNOWN, AfterSend.RECORD_OUT),
        (SendOutcome.UNDERPRICED, AfterSend.REPLACE),
        (SendOutcome.NONCE_USED, AfterSend.FAIL_BATCH),
    ],
)
def test_after_send(outcome: SendOutcome, expected: AfterSend) -> None:
    assert after_send(outcome) is expected


@given(outcome=st.sampled_from(SendOutcome))
def test_only_a_foreign_spent_nonce_fails_the_batch_and_only_underpriced_is_replaced(
    outcome: SendOutcome,
) -> None:
    action = after_send(outcome)
    assert (action is AfterSend.FAIL_BATCH) == (outcome is SendOutcome.NONCE_USED)
    assert (action is AfterSend.REPLACE) == (outcome is SendOutcome.UNDERPRICED)


@given(message=_messages, has_siblings=st.booleans(), ours_on_chain=st.booleans())
def test_from_message_to_action_a_batch_fails_only_on_a_nonce_spent_by_someone_else(
    message: str, has_siblings: bool, ours_on_chain: bool
) -> None:
    refusal = refusal_of(message, has_siblings=has_siblings)
    outcome = send_outcome(refusal, ours_on_chain=ours_on_chain)
    if outcome is None:
        assert refusal is Refusal.OTHER
        return
    if after_send(outcome) is AfterSend.FAIL_BATCH:
        assert refusal is Refusal.NONCE_USED
        assert not ours_on_chain
        assert _says_any(message, NONCE_USED)
        assert not _says_any(message, ALREADY_KNOWN)


# --- watch_action: a batch that was sent and waits -------------------------------------------


@pytest.mark.parametrize(
    ("situation", "out", "mined", "in_pool", "blocks_waiting", "expected"),
    [
        ("not out (any more)", False, False, False, None, WatchAction.SKIP),
        ("not out, even if a receipt is seen", False, True, True, 100, WatchAction.SKIP),
        ("mined", True, True, False, None, WatchAction.MINED),
        ("mined while still listed in the pool", True, True, True, 100, WatchAction.MINED),
        ("dropped from the pool", True, False, False, None, WatchAction.RESEND),
        ("dropped from the pool long ago", True, False, False, 100, WatchAction.RESEND),
        ("in the pool, sent block never recorded", True, False, True, None, WatchAction.WAIT),
        ("in the pool, just sent", True, False, True, 0, WatchAction.WAIT),
        ("in the pool, one block short of stuck", True, False, True, 9, WatchAction.WAIT),
        ("in the pool, exactly stuck", True, False, True, 10, WatchAction.REPLACE),
        ("in the pool, long stuck", True, False, True, 1_000, WatchAction.REPLACE),
        ("the head went back (a reorg)", True, False, True, -3, WatchAction.WAIT),
    ],
)
def test_watch_action(
    situation: str,
    out: bool,
    mined: bool,
    in_pool: bool,
    blocks_waiting: int | None,
    expected: WatchAction,
) -> None:
    action = watch_action(
        out=out, mined=mined, in_pool=in_pool, blocks_waiting=blocks_waiting, stuck_after=10
    )
    assert action is expected


_waiting = st.one_of(st.none(), st.integers(min_value=-10, max_value=10**7))
_stuck_after = st.integers(min_value=0, max_value=10**6)


@given(
    out=st.booleans(),
    mined=st.booleans(),
    in_pool=st.booleans(),
    blocks_waiting=_waiting,
    stuck_after=_stuck_after,
)
def test_the_watcher_acts_only_on_a_batch_that_is_out(
    out: bool, mined: bool, in_pool: bool, blocks_waiting: int | None, stuck_after: int
) -> None:
    action = watch_action(
        out=out,
        mined=mined,
        in_pool=in_pool,
        blocks_waiting=blocks_waiting,
        stuck_after=stuck_after,
    )
    assert (action is WatchAction.SKIP) == (not out)


@given(in_pool=st.booleans(), blocks_waiting=_waiting, stuck_after=_stuck_after)
def test_a_mined_batch_that_is_out_is_always_left_to_the_reconciler(
    in_pool: bool, blocks_waiting: int | None, stuck_after: int
) -> None:
    action = watch_action(
        out=True,
        mined=True,
        in_pool=in_pool,
        blocks_waiting=blocks_waiting,
        stuck_after=stuck_after,
    )
    assert action is WatchAction.MINED


@given(blocks_waiting=_waiting, stuck_after=_stuck_after)
def test_a_batch_out_unmined_and_gone_from_the_pool_is_always_resent(
    blocks_waiting: int | None, stuck_after: int
) -> None:
    action = watch_action(
        out=True,
        mined=False,
        in_pool=False,
        blocks_waiting=blocks_waiting,
        stuck_after=stuck_after,
    )
    assert action is WatchAction.RESEND


@given(
    out=st.booleans(),
    mined=st.booleans(),
    in_pool=st.booleans(),
    stuck_after=st.integers(min_value=1, max_value=10**6),
    data=st.data(),
)
def test_never_replaced_before_stuck_after_blocks(
    out: bool, mined: bool, in_pool: bool, stuck_after: int, data: st.DataObject
) -> None:
    blocks_waiting = data.draw(
        st.one_of(st.none(), st.integers(min_value=-10, max_value=stuck_after - 1))
    )
    action = watch_action(
        out=out,
        mined=mined,
        in_pool=in_pool,
        blocks_waiting=blocks_waiting,
        stuck_after=stuck_after,
    )
    assert action is not WatchAction.REPLACE


@given(stuck_after=_stuck_after, extra=st.integers(min_value=0, max_value=10**6))
def test_a_batch_waiting_in_the_pool_for_stuck_after_blocks_or_more_is_replaced(
    stuck_after: int, extra: int
) -> None:
    action = watch_action(
        out=True,
        mined=False,
        in_pool=True,
        blocks_waiting=stuck_after + extra,
        stuck_after=stuck_after,
    )
    assert action is WatchAction.REPLACE


@given(
    out=st.booleans(),
    mined=st.booleans(),
    in_pool=st.booleans(),
    blocks_waiting=_waiting,
    stuck_after=_stuck_after,
)
def test_replace_and_wait_are_only_for_a_batch_out_unmined_and_in_the_pool(
    out: bool, mined: bool, in_pool: bool, blocks_waiting: int | None, stuck_after: int
) -> None:
    action = watch_action(
        out=out,
        mined=mined,
        in_pool=in_pool,
        blocks_waiting=blocks_waiting,
        stuck_after=stuck_after,
    )
    if action in (WatchAction.REPLACE, WatchAction.WAIT):
        assert out
        assert not mined
        assert in_pool
    if action is WatchAction.REPLACE:
        assert blocks_waiting is not None
        assert blocks_waiting >= stuck_after
