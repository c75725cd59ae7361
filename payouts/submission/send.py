"""Handing a stored transaction to the node, and reading what its answer means."""

from __future__ import annotations

from collections.abc import Sequence

from payouts.chain.client import ChainClient, RpcError
from payouts.db import models
from payouts.submission.decisions import Refusal, SendOutcome, refusal_of, send_outcome


def broadcast(
    chain: ChainClient, attempt: models.TxAttempt, siblings: Sequence[str] = ()
) -> SendOutcome:
    """Send the stored bytes and say what came of it; transient errors and refusals nobody
    understands raise.

    ``siblings`` are the hashes of the batch's other attempts (same nonce): if the nonce is
    spent by one of them, it is ours and known, never a reason to fail the batch.
    """
    try:
        chain.send_raw(attempt.raw)
    except RpcError as exc:
        refusal = refusal_of(exc.rpc_message, has_siblings=bool(siblings))
        # Ours, mined already? Then the reconciler will find it in the logs.
        ours = refusal is Refusal.NONCE_USED and any(
            chain.transaction(h) is not None for h in (attempt.tx_hash, *siblings)
        )
        outcome = send_outcome(refusal, ours_on_chain=ours)
        if outcome is None:
            raise
        return outcome
    return SendOutcome.SENT
