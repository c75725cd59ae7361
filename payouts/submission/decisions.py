"""What to do with a batch's transaction, decided from facts alone: no I/O.

The handlers gather the facts (the node's answer to a send, whether an attempt was mined or
is still in the pool, how many blocks it has waited) and carry out what these functions say:

- after a send: the node took it or has it (record it as out), it is underpriced (replace it
  with higher fees), or its nonce was spent by a transaction that is not ours (fail the batch);
- while it waits unmined: mined (the reconciler takes it), dropped from the pool (send the
  same bytes again), stuck for ``stuck_after`` blocks (replace it), or wait.
"""

from __future__ import annotations

import re
from enum import StrEnum

# Answers of a node that already has our transaction (or has mined it); "unknown transaction"
# is not one of them.
_ALREADY_KNOWN = re.compile(
    r"already known|(?<!un)known transaction|already imported|alreadyknown"
    r"|existing txn with same hash"
)
_NONCE_USED = ("nonce too low", "nonce has already been used", "noncetoolow")
# The node will not take it at these fees (the base fee rose past our max fee).
_FEE_TOO_LOW = ("less than block base fee", "underpriced", "fee too low", "feecaptoolow")


class Refusal(StrEnum):
    """Why a node refused ``eth_sendRawTransaction``, read from its error message."""

    ALREADY_KNOWN = "already-known"
    NONCE_USED = "nonce-used"
    SIBLING_PENDING = "sibling-pending"  # a replacement of ours with higher fees is in the pool
    FEE_TOO_LOW = "fee-too-low"
    OTHER = "other"


class SendOutcome(StrEnum):
    SENT = "sent"
    KNOWN = "known"  # the node or the chain already has it (or a sibling of it)
    NONCE_USED = "nonce-used"  # by a transaction that is not ours: it can never be mined
    UNDERPRICED = "underpriced"  # only a replacement with higher fees can go now


class AfterSend(StrEnum):
    RECORD_OUT = "record-out"
    REPLACE = "replace"
    FAIL_BATCH = "fail-batch"


class WatchAction(StrEnum):
    SKIP = "skip"  # not out (any more), or nothing to watch
    MINED = "mined"  # the reconciler takes it from here
    RESEND = "resend"  # dropped from the pool: the very same bytes again
    WAIT = "wait"
    REPLACE = "replace"  # stuck: same nonce, fees bumped


class SubmitOutcome(StrEnum):
    """What one submit, watch or replay did, as tasks, the CLI and the API report it."""

    BROADCAST = "broadcast"
    REBROADCAST = "rebroadcast"
    REPLACED = "replaced"
    NONCE_CONSUMED = "nonce-consumed"
    UNDERPRICED = "underpriced"
    FEE_CAP = "fee-cap"
    MINED = "mined"
    WAITING = "waiting"
    SKIPPED = "skipped"
    NATIVE = "native"  # a batch of the native currency: not batched yet


def refusal_of(message: str, *, has_siblings: bool) -> Refusal:
    """Classify a node's refusal; ``has_siblings``: the batch has other attempts (same nonce)."""
    text = message.lower()
    if _ALREADY_KNOWN.search(text):
        return Refusal.ALREADY_KNOWN
    if any(m in text for m in _NONCE_USED):
        return Refusal.NONCE_USED
    if has_siblings and "replacement" in text:
        return Refusal.SIBLING_PENDING
    if any(m in text for m in _FEE_TOO_LOW):
        return Refusal.FEE_TOO_LOW
    return Refusal.OTHER


def send_outcome(refusal: Refusal | None, *, ours_on_chain: bool = False) -> SendOutcome | None:
    """What a send came to: ``refusal`` None means the node took it; ``ours_on_chain``
    (looked up only for a spent nonce) whether one of the batch's attempts holds that nonce.
    None: a refusal nobody understands, for the caller to raise."""
    match refusal:
        case None:
            return SendOutcome.SENT
        case Refusal.ALREADY_KNOWN | Refusal.SIBLING_PENDING:
            return SendOutcome.KNOWN
        case Refusal.NONCE_USED:
            return SendOutcome.KNOWN if ours_on_chain else SendOutcome.NONCE_USED
        case Refusal.FEE_TOO_LOW:
            return SendOutcome.UNDERPRICED
        case _:
            return None


def after_send(outcome: SendOutcome) -> AfterSend:
    match outcome:
        case SendOutcome.UNDERPRICED:
            return AfterSend.REPLACE
        case SendOutcome.NONCE_USED:
            return AfterSend.FAIL_BATCH
        case _:
            return AfterSend.RECORD_OUT


def watch_action(
    *,
    out: bool,
    mined: bool,
    in_pool: bool,
    blocks_waiting: int | None,
    stuck_after: int,
) -> WatchAction:
    """What to do with a batch that was sent: ``out`` it is broadcast with a live attempt;
    ``mined`` one of its attempts has a receipt; ``in_pool`` the node still has the newest;
    ``blocks_waiting`` blocks since the newest was last sent (None: never recorded)."""
    if not out:
        return WatchAction.SKIP
    if mined:
        return WatchAction.MINED
    if not in_pool:
        return WatchAction.RESEND
    if blocks_waiting is None or blocks_waiting < stuck_after:
        return WatchAction.WAIT
    return WatchAction.REPLACE
