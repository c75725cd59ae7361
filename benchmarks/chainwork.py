"""Chain-side helpers the reconciliation and end-to-end scenarios share: RPC timing, the
state of the pipeline, and the ledger-versus-chain checks."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from benchmarks import stack
from benchmarks.checks import ledger_invariants_hold
from payouts.chain import codec
from payouts.chain.client import ChainClient
from payouts.db import unit_of_work
from payouts.runtime import Runtime


class RpcTimer:
    """Seconds and calls per JSON-RPC method of one client (wraps its ``rpc`` and
    ``rpc_batch`` until ``stop``; a batch counts once, as ``method (batched)``)."""

    def __init__(self, client: ChainClient) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._client = client
        inner: Callable[[str, list[Any]], Any] = client.rpc

        def timed(method: str, params: list[Any]) -> Any:
            started = time.perf_counter()
            try:
                return inner(method, params)
            finally:
                self.seconds[method] += time.perf_counter() - started
                self.calls[method] += 1

        client.rpc = timed  # type: ignore[method-assign]
        inner_batch: Callable[[str, list[list[Any]]], list[Any]] = client.rpc_batch

        def timed_batch(method: str, many_params: list[list[Any]]) -> list[Any]:
            started = time.perf_counter()
            try:
                return inner_batch(method, many_params)
            finally:
                self.seconds[f"{method} (batched)"] += time.perf_counter() - started
                self.calls[f"{method} (batched)"] += 1

        client.rpc_batch = timed_batch  # type: ignore[method-assign]

    def stop(self) -> None:
        # The instance attributes: the class's methods show again.
        del self._client.rpc
        del self._client.rpc_batch

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def summary(self) -> str:
        ranked = sorted(self.seconds.items(), key=lambda kv: kv[1], reverse=True)
        return ", ".join(f"{m} {self.calls[m]}x {s:.2f} s" for m, s in ranked)


def states(url: str, table: str) -> dict[str, int]:
    with unit_of_work(url) as session:
        rows = session.execute(text(f"SELECT state, count(*) FROM {table} GROUP BY state"))
        return {state: int(n) for state, n in rows}


def ledger_matches_chain(rt: Runtime, sample: int = 200) -> dict[str, bool]:
    """What the ledger says was paid, against what the chain holds.

    The hot wallet's token balance fell by exactly the finalized payouts (one call, every
    payout counted), and a sample of recipients holds exactly their finalized payouts.
    """
    token = rt.settings.assets[0].address
    assert token is not None
    with rt.uow() as session:
        paid = int(
            session.execute(
                text("SELECT coalesce(sum(amount), 0) FROM payouts WHERE state = 'finalized'")
            ).scalar_one()
        )
        by_recipient = session.execute(
            text(
                "SELECT recipient, sum(amount) FROM payouts WHERE state = 'finalized'"
                " GROUP BY recipient ORDER BY recipient LIMIT :n"
            ),
            {"n": sample},
        ).all()
        open_exceptions = session.execute(
            text("SELECT count(*) FROM exceptions WHERE state = 'open'")
        ).scalar_one()

    def balance(holder: str) -> int:
        return int(rt.chain.call(token, codec.balance_of_calldata(holder)), 16)

    wallet = balance(rt.signer.address)
    return {
        "hot wallet paid out exactly the finalized payouts": stack.TOKEN_SUPPLY - wallet == paid,
        f"{len(by_recipient)} sampled recipients hold exactly their payouts": all(
            balance(r) == int(amount) for r, amount in by_recipient
        ),
        "ledger invariants (payouts check)": ledger_invariants_hold(rt.database_url),
        "no open exceptions": open_exceptions == 0,
    }
