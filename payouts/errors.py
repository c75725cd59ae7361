"""Errors the domain raises, one tree so callers (CLI, API, tasks) can map them once.

PayoutsError
├── InvalidInput            bad data from a caller; ``code`` and ``field`` say which
│   └── InvalidAmount
├── IdempotencyConflict     a key reused with a different body
├── IdempotencyInFlight     a key whose first request has not finished yet
├── NotFound
├── IllegalTransition       a state change the lifecycle does not allow
├── InvariantViolation      the ledger disagrees with itself
└── ChainError              anything the chain or its RPC node said (see payouts.chain.errors)
    ├── TransientChainError recoverable: retry later
    │   └── CircuitOpen     the node failed too often lately: not even tried
    └── PermanentChainError not recoverable by retrying the same call
"""

from __future__ import annotations


class PayoutsError(Exception):
    code = "payouts_error"


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

    def __init__(self, key: str) -> None:
        super().__init__(f"a request with idempotency key {key!r} is still being processed")
        self.key = key


class NotFound(PayoutsError):
    code = "not_found"


class IllegalTransition(PayoutsError):
    code = "illegal_transition"


class InvariantViolation(PayoutsError):
    code = "invariant_violation"


class ChainError(PayoutsError):
    code = "chain_error"


class TransientChainError(ChainError):
    code = "chain_unavailable"


class CircuitOpen(TransientChainError):
    code = "chain_circuit_open"


class PermanentChainError(ChainError):
    code = "chain_rejected"
