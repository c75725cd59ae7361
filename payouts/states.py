"""The states of everything that has a lifecycle, as enums shared by Python and SQL.

Python compares with the members (``PayoutState.PENDING``); SQL that filters on a state takes
the member's literal (``PayoutState.PENDING.sql`` is ``'pending'``) or a list of them
(``sql_in(...)``), so no state name is ever spelled twice. Literals, not bound parameters:
PostgreSQL proves a partial index's predicate (``WHERE state = 'accrued'``) only from
constants, and a prepared statement's generic plan would otherwise lose the index.

The lifecycles (which moves are allowed, which states are final) are in ``payouts.lifecycle``;
the database holds the same names in CHECK constraints and final-state triggers, and a test
proves the three agree.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    @property
    def sql(self) -> str:
        """The state as an SQL string literal."""
        return f"'{self.value}'"


def sql_in(*states: State) -> str:
    """``('a', 'b')``: the states as an SQL list, for ``state IN ...``."""
    return "(" + ", ".join(s.sql for s in states) + ")"


class CreditState(State):
    """Derived, never stored: a credit is written once, and its state follows from the roll-up
    run that claimed it and the payout that run made for its creator (``credit_states``)."""

    ACCRUED = "accrued"  # no run has claimed it yet
    ROLLED_UP = "rolled_up"  # in a payout not yet final
    CARRIED = "carried"  # its run paid its creator nothing (or the payout was cancelled):
    # the amount waits in the creator's carry account for a later payout
    PAID = "paid"  # its payout is final


class PayoutState(State):
    PENDING = "pending"
    HELD = "held"
    BATCHED = "batched"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FINALIZED = "finalized"
    CANCELLED = "cancelled"
    CLAIMABLE = "claimable"  # settled by claim: its amount waits in the escrow for a voucher
    CLAIMED = "claimed"  # a Claimed log on chain covers it, not yet deep enough


class BatchState(State):
    OPEN = "open"
    SEALED = "sealed"
    BROADCAST = "broadcast"
    INCLUDED = "included"
    CONFIRMED = "confirmed"
    FINALIZED = "finalized"
    FAILED = "failed"


class TxAttemptState(State):
    SIGNED = "signed"
    BROADCAST = "broadcast"
    MINED = "mined"
    REPLACED = "replaced"
    FAILED = "failed"


class CreatorState(State):
    """Whether a creator's payouts may go into batches: held while an operator must look."""

    ACTIVE = "active"
    HELD = "held"


class ExceptionState(State):
    OPEN = "open"
    RESOLVED = "resolved"


class HoldState(State):
    ACTIVE = "active"
    RELEASED = "released"
    REJECTED = "rejected"


# Credits whose amount is still owed to the creator outside any payout or carry.
CREDIT_UNROLLED = (CreditState.ACCRUED,)
# Payouts whose money has left the creator's balance but is not paid for good.
PAYOUT_IN_FLIGHT = (
    PayoutState.PENDING,
    PayoutState.HELD,
    PayoutState.BATCHED,
    PayoutState.SUBMITTED,
    PayoutState.CONFIRMED,
)
# Payouts settled by claim and not final: waiting for a voucher, or claimed not deep enough.
PAYOUT_BY_CLAIM = (PayoutState.CLAIMABLE, PayoutState.CLAIMED)
# Batches whose total the hot wallet has promised but not yet paid on chain.
BATCH_UNMINED = (BatchState.OPEN, BatchState.SEALED, BatchState.BROADCAST)
# Batches seen in a block, not yet final.
BATCH_ON_CHAIN = (BatchState.INCLUDED, BatchState.CONFIRMED)
# Batches the chain has shown, final or not.
BATCH_SEEN = (BatchState.INCLUDED, BatchState.CONFIRMED, BatchState.FINALIZED)
# Attempts that may still be mined.
ATTEMPT_LIVE = (TxAttemptState.SIGNED, TxAttemptState.BROADCAST)
