"""The published OpenAPI document is the contract, both ways: schemathesis runs every one of its
checks over the whole API, in positive and negative modes.

Among them, ``positive_data_acceptance`` fails when a request valid by the document is refused
(a 400 or 422), and ``negative_data_rejection`` when one invalid by it is accepted; the others
hold the answers to the document (status, content type, headers, body), insist on 405 with an
``Allow`` header for undeclared methods, on a 4xx for a missing required header, on 401 without
a key, and on no server error at all.

The app runs in process over a real database (one marketplace, its earnings and a payout in it,
an exception in the queue, holds of every kind on a second creator and its payout, an address
on the deny list) and a real chain, so the settlement runs it triggers are real.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from sqlalchemy import text

from payouts import holds
from payouts.api.app import create_app
from payouts.exception_queue import record_exception
from payouts.holds import NewHold
from payouts.runtime import Runtime
from tests.apikit import ADMIN_KEY, make_tenant, post_earning
from tests.chainkit import roll_up_now

load_all_checks()
ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
HELD_ADDRESS = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
DENIED = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
ALL_CHECKS = list(CHECKS.get_all())
# What was run, by operation and by generation mode, and what came back, for the summary.
EXAMPLES: Counter[tuple[str, str]] = Counter()
ANSWERS: Counter[tuple[str, str, int]] = Counter()


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    operations = {operation for operation, _ in EXAMPLES}
    modes = Counter[str]()
    for (_, mode), n in EXAMPLES.items():
        modes[mode] += n
    print(
        f"\nschemathesis: {len(operations)} operations, {sum(EXAMPLES.values())} examples"
        f" ({', '.join(f'{n} {mode}' for mode, n in sorted(modes.items()))}),"
        f" {len(ALL_CHECKS)} checks"
    )
    statuses = Counter[str]()
    for (_, mode, status), n in ANSWERS.items():
        statuses[f"{mode} {status}"] += n
    print("answers: " + ", ".join(f"{k}: {n}" for k, n in sorted(statuses.items())))


@pytest.fixture
def contract_app(make_runtime: Callable[..., Runtime], redis_url: str) -> dict[str, Any]:
    rt = make_runtime(admin_api_key=ADMIN_KEY, redis_url=redis_url)
    shop = make_tenant(rt, "contract-shop")
    app = create_app(rt)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with TestClient(app) as api:
        for creator, address in [("creator-1", ADDRESS), ("creator-2", HELD_ADDRESS)]:
            api.put(f"/v1/creators/{creator}", json={"payout_address": address}, headers=shop.auth)
            for i in range(3):
                post_earning(
                    api,
                    shop,
                    f"seed-{creator}-{i}",
                    {"creator_id": creator, "amount": "20000", "asset": "USDC"},
                )
        roll_up_now(rt)
        with rt.uow() as session:
            record_exception(session, "transfer_failed", "seed", {"reason": "seeded"})
            # creator-2's payout held by a rule (the review queue), creator-2 by its
            # marketplace and by an operator; creator-1's payout stays pending for the runs.
            creator, payout = session.execute(
                text(
                    "SELECT p.creator_id, p.id FROM payouts p JOIN creators c"
                    " ON c.id = p.creator_id WHERE c.external_id = 'creator-2'"
                )
            ).one()
            figures = {"ceiling": "1", "used": "0", "with_this_payout": "60000"}
            holds.place(
                session,
                [NewHold(creator, "velocity:creator:hour:amount", "seeded", payout, figures)],
                actor="beat",
            )
            session.commit()
        for url, body, key in [
            ("/v1/creators/creator-2/holds", {"reason": "seeded"}, shop.auth),
            (
                "/v1/ops/holds",
                {"marketplace": shop.name, "creator_id": "creator-2", "reason": "seeded"},
                admin,
            ),
            (
                "/v1/ops/deny-list",
                {"entries": [{"address": DENIED, "reason": "seeded"}], "source": "seed"},
                admin,
            ),
        ]:
            assert api.post(url, json=body, headers=key).status_code in (200, 201)
    return {"app": app, "shop": shop}


@pytest.fixture
def contract_schema(contract_app: dict[str, Any]) -> Any:
    loaded = schemathesis.openapi.from_asgi("/openapi.json", contract_app["app"])
    shop_key = contract_app["shop"].key

    # Through schemathesis, not as headers of each call: a negative case that leaves the
    # Authorization header out must go out without it.
    @loaded.auth(refresh_interval=None)
    class Keys:
        def get(self, case: Any, context: Any) -> str:
            return ADMIN_KEY if case.path.startswith("/v1/ops") else shop_key

        def set(self, case: Any, data: str, context: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    return loaded


schema = schemathesis.pytest.from_fixture("contract_schema")


def test_every_check_is_on() -> None:
    names = {check.__name__ for check in ALL_CHECKS}
    assert {"positive_data_acceptance", "negative_data_rejection", "not_a_server_error"} <= names


@schema.parametrize()
@pytest.mark.timeout(600)  # every operation runs inside this one test
@settings(
    # 50 generated cases per operation and mode, beside the coverage phase's boundary cases:
    # with 40 operations, 100 took five minutes of a suite held to fifteen.
    max_examples=50,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_does_what_its_document_says(case: Any) -> None:
    mode = case.meta.generation.mode.value if case.meta is not None else "explicit"
    EXAMPLES[(case.operation.label, mode)] += 1
    response = case.call_and_validate(checks=ALL_CHECKS)
    ANSWERS[(case.operation.label, mode, response.status_code)] += 1
