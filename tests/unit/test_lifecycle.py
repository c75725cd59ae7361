"""The state machines: one-way moves, final states with no way out, the table of legal moves."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy.orm import Session

from payouts.errors import IllegalTransition
from payouts.lifecycle import (
    BATCH,
    CREATOR,
    CREDIT,
    EXCEPTION,
    HOLD,
    LIFECYCLES,
    PAYOUT,
    TX_ATTEMPT,
    Lifecycle,
    move_rows,
    move_where,
)

ALL = [CREDIT, PAYOUT, BATCH, TX_ATTEMPT, CREATOR, EXCEPTION, HOLD]
INITIAL = {
    "credit": "accrued",
    "payout": "pending",
    "batch": "open",
    "tx_attempt": "signed",
    "creator": "active",
    "exception": "open",
    "hold": "active",
}
EXPECTED_FINAL = {
    "credit": {"paid", "carried"},
    "payout": {"finalized", "cancelled"},
    "batch": {"finalized", "failed"},
    "tx_attempt": {"replaced", "failed"},
    "creator": set(),  # a hold is lifted and may come again: no end
    "exception": {"resolved"},
    "hold": {"released", "rejected"},
}


def _states(lc: Lifecycle) -> set[str]:
    states = set(lc.moves) | set(lc.final)
    for targets in lc.moves.values():
        states |= targets
    return states


def _reachable(lc: Lifecycle, start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in lc.moves.get(todo.pop(), frozenset()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize("lc", ALL, ids=lambda lc: lc.entity)
def test_final_states_are_the_designed_ones(lc: Lifecycle) -> None:
    assert set(lc.final) == EXPECTED_FINAL[lc.entity]


@pytest.mark.parametrize("lc", ALL, ids=lambda lc: lc.entity)
def test_a_final_state_has_no_way_out(lc: Lifecycle) -> None:
    for final in lc.final:
        assert not lc.moves.get(final)
        for target in _states(lc):
            assert not lc.allows(final, target)
            with pytest.raises(IllegalTransition):
                lc.check(final, target)


@pytest.mark.parametrize("lc", ALL, ids=lambda lc: lc.entity)
def test_every_state_is_reachable_from_the_initial_state(lc: Lifecycle) -> None:
    assert _reachable(lc, INITIAL[lc.entity]) == _states(lc)


@pytest.mark.parametrize("lc", ALL, ids=lambda lc: lc.entity)
def test_every_state_can_still_reach_a_final_state(lc: Lifecycle) -> None:
    for state in _states(lc):
        if lc.final:
            assert _reachable(lc, state) & lc.final, f"{lc.entity}: {state} can never end"
        else:  # a cycle: every state leads back to the start (every hold can be lifted)
            assert lc.initial in _reachable(lc, state), f"{lc.entity}: {state} is a dead end"


@pytest.mark.parametrize("lc", ALL, ids=lambda lc: lc.entity)
def test_the_enum_the_initial_state_and_the_moves_name_the_same_states(lc: Lifecycle) -> None:
    assert lc.initial == INITIAL[lc.entity]
    assert _states(lc) | {lc.initial} == set(lc.states)


@pytest.mark.parametrize("lc", ALL, ids=lambda lc: lc.entity)
def test_no_state_moves_to_itself(lc: Lifecycle) -> None:
    for state in _states(lc):
        assert not lc.allows(state, state)


def test_lifecycles_are_registered_by_entity_and_table() -> None:
    assert LIFECYCLES == {
        "credit": CREDIT,
        "payout": PAYOUT,
        "batch": BATCH,
        "tx_attempt": TX_ATTEMPT,
        "creator": CREATOR,
        "exception": EXCEPTION,
        "hold": HOLD,
    }
    assert {lc.entity: lc.table for lc in ALL} == {
        "credit": "credit_states",  # derived: a view over credits, runs and payouts
        "payout": "payouts",
        "batch": "batches",
        "tx_attempt": "tx_attempts",
        "creator": "creators",
        "exception": "exceptions",
        "hold": "holds",
    }


MOVES = [
    # credit
    (CREDIT, "accrued", "rolled_up", True),
    (CREDIT, "accrued", "carried", True),  # its run paid its creator nothing
    (CREDIT, "rolled_up", "paid", True),
    (CREDIT, "rolled_up", "carried", True),  # its payout was cancelled into carry
    (CREDIT, "paid", "accrued", False),
    (CREDIT, "paid", "rolled_up", False),
    (CREDIT, "carried", "accrued", False),  # a run's claim is never undone
    (CREDIT, "carried", "rolled_up", False),
    (CREDIT, "accrued", "paid", False),  # never paid without a payout
    (CREDIT, "rolled_up", "accrued", False),
    # payout
    (PAYOUT, "pending", "batched", True),
    (PAYOUT, "batched", "submitted", True),
    (PAYOUT, "submitted", "confirmed", True),
    (PAYOUT, "confirmed", "finalized", True),
    (PAYOUT, "batched", "pending", True),  # its batch failed
    (PAYOUT, "submitted", "pending", True),  # its batch failed
    (PAYOUT, "pending", "cancelled", True),
    (PAYOUT, "confirmed", "submitted", True),  # reorg
    (PAYOUT, "finalized", "pending", False),
    (PAYOUT, "finalized", "confirmed", False),
    (PAYOUT, "cancelled", "pending", False),
    (PAYOUT, "pending", "finalized", False),
    (PAYOUT, "pending", "submitted", False),
    (PAYOUT, "batched", "cancelled", False),  # only a pending payout is cancelled
    (PAYOUT, "submitted", "cancelled", False),
    (PAYOUT, "confirmed", "pending", True),  # at finality, the token refused the transfer
    # batch
    (BATCH, "open", "sealed", True),
    (BATCH, "sealed", "broadcast", True),
    (BATCH, "broadcast", "included", True),
    (BATCH, "included", "confirmed", True),
    (BATCH, "confirmed", "finalized", True),
    (BATCH, "included", "broadcast", True),  # reorg
    (BATCH, "confirmed", "broadcast", True),  # reorg
    (BATCH, "broadcast", "failed", True),
    (BATCH, "finalized", "broadcast", False),
    (BATCH, "failed", "broadcast", False),
    (BATCH, "failed", "sealed", False),
    (BATCH, "open", "broadcast", False),
    (BATCH, "sealed", "included", False),
    (BATCH, "included", "failed", False),
    # tx attempt
    (TX_ATTEMPT, "signed", "broadcast", True),
    (TX_ATTEMPT, "broadcast", "mined", True),
    (TX_ATTEMPT, "broadcast", "replaced", True),  # a fee bump took its nonce
    (TX_ATTEMPT, "mined", "broadcast", True),  # reorged out
    (TX_ATTEMPT, "replaced", "broadcast", False),
    (TX_ATTEMPT, "failed", "signed", False),
    (TX_ATTEMPT, "mined", "replaced", False),
    (TX_ATTEMPT, "signed", "mined", False),
    # creator hold
    (CREATOR, "active", "held", True),
    (CREATOR, "held", "active", True),
    # exception
    (EXCEPTION, "open", "resolved", True),
    (EXCEPTION, "resolved", "open", False),
    # payout holds
    (PAYOUT, "pending", "held", True),
    (PAYOUT, "held", "pending", True),  # released
    (PAYOUT, "held", "cancelled", True),  # rejected in review
    (PAYOUT, "held", "batched", False),  # a held payout goes nowhere until released
    (PAYOUT, "batched", "held", False),  # a hold keeps new sealing away only
    # hold
    (HOLD, "active", "released", True),
    (HOLD, "active", "rejected", True),
    (HOLD, "released", "active", False),
    (HOLD, "rejected", "released", False),
]


@pytest.mark.parametrize(
    ("lc", "from_state", "to_state", "legal"),
    MOVES,
    ids=[f"{m[0].entity}:{m[1]}->{m[2]}:{'legal' if m[3] else 'illegal'}" for m in MOVES],
)
def test_the_table_of_legal_and_illegal_moves(
    lc: Lifecycle, from_state: str, to_state: str, legal: bool
) -> None:
    assert lc.allows(from_state, to_state) is legal
    if legal:
        lc.check(from_state, to_state)
    else:
        with pytest.raises(IllegalTransition, match=f"{from_state} -> {to_state}"):
            lc.check(from_state, to_state)


def test_unknown_states_allow_nothing() -> None:
    assert not PAYOUT.allows("nonsense", "pending")
    assert not PAYOUT.allows("pending", "nonsense")
    with pytest.raises(IllegalTransition):
        PAYOUT.check("nonsense", "pending")


def test_sources_lists_every_state_that_may_move_to_a_target() -> None:
    assert PAYOUT.sources("pending") == ["batched", "confirmed", "held", "submitted"]
    assert BATCH.sources("broadcast") == ["confirmed", "included", "sealed"]
    assert CREDIT.sources("carried") == ["accrued", "rolled_up"]
    assert PAYOUT.sources("batched") == ["pending"]
    for lc in ALL:
        assert lc.sources(INITIAL[lc.entity]) == sorted(
            s for s in lc.moves if INITIAL[lc.entity] in lc.moves[s]
        )


def test_a_final_state_is_never_a_source() -> None:
    for lc in ALL:
        for state in _states(lc):
            assert not set(lc.sources(state)) & lc.final


def _guards_migration() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "0002_ledger_guards.py"
    spec = importlib.util.spec_from_file_location("ledger_guards_0002", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_database_final_state_triggers_match_the_lifecycles() -> None:
    final_states = _guards_migration().FINAL_STATES
    later = (EXCEPTION, HOLD, CREDIT)
    stored = {lc.table: set(lc.final) for lc in ALL if lc.final and lc not in later}
    # exceptions' and holds' triggers came later, and 0013 dropped the credits' one (a credit is
    # never updated at all); the live schema is checked in integration
    assert {table: set(states) for table, states in final_states.items()} == {
        **stored,
        "credits": {"paid", "voided"},
    }
    assert CREDIT.derived


def test_a_derived_lifecycle_is_never_written() -> None:
    """A credit is written once; its state is read from its run and payout: a move of it
    writes nothing (not a statement: this session has no database), an illegal one is still
    refused."""
    nowhere = Session()
    assert move_rows(nowhere, CREDIT, "rolled_up", "paid", rows="", cause="", actor="t") == 0
    assert move_where(nowhere, CREDIT, "paid", where="true", cause="", actor="t") == []
    with pytest.raises(IllegalTransition):
        move_rows(nowhere, CREDIT, "paid", "accrued", rows="", cause="", actor="t")
