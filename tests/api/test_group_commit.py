"""Single earnings are committed in groups, yet every request is answered on its own."""

from __future__ import annotations

import asyncio

from payouts.api.group_commit import EarningWriter
from payouts.errors import IdempotencyConflict, IdempotencyInFlight
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.runtime import Runtime
from tests.apikit import Tenant, count


def test_one_request_of_a_group_reusing_a_key_is_refused_alone(
    api_runtime: Runtime, alice_shop: Tenant, bob_shop: Tenant
) -> None:
    ingest.record_for(api_runtime, alice_shop.id, [Earning("k-1", "c-1", 100, "USDC")])

    outcomes = ingest.record_each(
        api_runtime,
        [
            (alice_shop.id, Earning("k-2", "c-1", 200, "USDC")),
            (alice_shop.id, Earning("k-1", "c-1", 999, "USDC")),  # k-1 was 100
            (bob_shop.id, Earning("k-1", "c-9", 300, "USDC")),  # bob's own k-1
            (alice_shop.id, Earning("k-3", "c-2", 400, "USDC")),
        ],
    )

    assert [type(o).__name__ for o in outcomes] == [
        "tuple",
        "IdempotencyConflict",
        "tuple",
        "tuple",
    ]
    assert isinstance(outcomes[1], IdempotencyConflict)
    assert [o[0]["amount"] for o in outcomes if isinstance(o, tuple)] == ["200", "300", "400"]
    assert count(api_runtime, "SELECT count(*) FROM credits") == 4
    assert count(api_runtime, "SELECT count(DISTINCT journal_id) FROM credits") == 2 + 1


def test_concurrent_requests_share_commits_and_the_same_key_twice_is_in_flight(
    api_runtime: Runtime, alice_shop: Tenant
) -> None:
    writer = EarningWriter(api_runtime)

    async def send() -> list[object]:
        requests = [Earning(f"k-{i}", f"c-{i % 5}", 10 + i, "USDC") for i in range(200)]
        requests.append(Earning("k-7", "c-2", 17, "USDC"))  # k-7 again while k-7 waits
        return await asyncio.gather(
            *(writer.record(alice_shop.id, e) for e in requests), return_exceptions=True
        )

    outcomes = asyncio.run(send())

    assert isinstance(outcomes[-1], IdempotencyInFlight)
    assert all(isinstance(o, tuple) and o[1] is False for o in outcomes[:-1])
    assert count(api_runtime, "SELECT count(*) FROM credits") == 200
    assert count(api_runtime, "SELECT sum(amount) FROM credits") == sum(10 + i for i in range(200))
    # Far fewer transactions than requests: the group commit at work.
    assert count(api_runtime, "SELECT count(*) FROM journals") < 50
