"""Errors the domain raises, one tree so callers (CLI, API, tasks) can map them once.

PayoutsError                    ``recoverable``: retrying the same work later may succeed
├── InvalidInput                bad data from a caller; ``code`` and ``field`` say which
│   └── InvalidAmount
├── IdempotencyConflict         a key reused with a different body
├── IdempotencyInFlight         a key whose first request has not finished yet (recoverable)
├── NotFound
├── IllegalTransition           a state change the lifecycle does not allow
├── InvariantViolation          the ledger disagrees with itself
├── DatabaseError               what PostgreSQL said (psycopg / SQLAlchemy, mapped in payouts.db)
│   ├── DatabaseUnavailable     recoverable: connection lost or refused, pool exhausted,
│   │                           serialization failure, deadlock, server shutting down
│   └── DatabaseRefused         a constraint or a ledger guard refused the write: a bug, or a
│                               race the caller must handle; retrying the same write won't help
├── BrokerUnavailable           recoverable: Redis did not answer (mapped where it is called)
└── ChainError                  anything the chain or its RPC node said (payouts.chain.client)
    ├── TransientChainError     recoverable: retry later
    │   └── CircuitOpen         the node failed too often lately: not even tried
    └── PermanentChainError     not recoverable by retrying the same call

Upstream exceptions (psycopg, SQLAlchemy, redis, requests, web3) are mapped at the boundary
where they are raised, always ``raise ... from exc`` so the cause stays on the traceback; a
test proves that none leaks unmapped out of a handler.
"""

from __future__ import annotations


class PayoutsError(Exception):
    code = "payouts_error"
    recoverable = False


class InvalidInput(PayoutsError):
    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        if code is not None:
            self.code = code


class InvalidAmount(InvalidInput):
    code = "invalid_amount"


class IdempotencyConflict(PayoutsError):
    code = "idempotency_key_reused"

    def __init__(self, keys: list[str]) -> None:
        shown = ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")
        super().__init__(f"idempotency key reused with a different body: {shown}")
        self.keys = keys


class IdempotencyInFlight(PayoutsError):
    code = "idempotency_key_in_flight"
    recoverable = True

    def __init__(self, key: str) -> None:
        super().__init__(f"a request with idempotency key {key!r} is still being processed")
        self.key = key


class NotFound(PayoutsError):
    code = "not_found"


class IllegalTransition(PayoutsError):
    code = "illegal_transition"


class InvariantViolation(PayoutsError):
    code = "invariant_violation"


class EscrowChanged(IllegalTransition):
    """The configured claims escrow is not the one the ledger's claims are for: its vouchers
    would pay again what the other one paid."""

    code = "claims_escrow_changed"


class DatabaseError(PayoutsError):
    code = "database_error"


class DatabaseUnavailable(DatabaseError):
    code = "database_unavailable"
    recoverable = True


class DatabaseRefused(DatabaseError):
    code = "database_refused"


class BrokerUnavailable(PayoutsError):
    code = "broker_unavailable"
    recoverable = True


class ChainError(PayoutsError):
    code = "chain_error"


class TransientChainError(ChainError):
    code = "chain_unavailable"
    recoverable = True


class CircuitOpen(TransientChainError):
    code = "chain_circuit_open"


class PermanentChainError(ChainError):
    code = "chain_rejected"
