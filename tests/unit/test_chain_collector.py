"""The chain client pauses Python's collector while it decodes a batch, and only then."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from payouts.chain.client import collector_off


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was_on = gc.isenabled()
    yield
    if was_on:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_off_inside_and_on_again_after() -> None:
    gc.enable()
    with collector_off():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_failed_decode_turns_the_collector_back_on() -> None:
    gc.enable()
    with pytest.raises(ValueError), collector_off():
        raise ValueError("the node answered garbage")
    assert gc.isenabled()


def test_a_collector_someone_else_turned_off_stays_off() -> None:
    gc.disable()
    with collector_off():
        pass
    assert not gc.isenabled()


def test_nested_pauses_turn_it_on_once_the_outer_one_ends() -> None:
    gc.enable()
    with collector_off():
        with collector_off():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
