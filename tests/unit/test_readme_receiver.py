"""The README's webhook receiver runs as written: it takes a delivery signed as the server
signs it, acts on an event once per id, and refuses one that is not signed by its secret."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from payouts.notify.delivery import sign
from payouts.notify.endpoints import new_secret

README = Path(__file__).resolve().parents[2] / "README.md"


def _receiver_source() -> str:
    section = README.read_text(encoding="utf-8").split("### Webhooks", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the Webhooks section has no python block"
    return found.group(1)


def _delivery(secret: str, event_id: str, seq: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "id": event_id,
            "seq": seq,
            "type": "payout.finalized",
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {"payout_id": 12, "tx_hash": "0xabc"},
        }
    )
    headers = sign([secret], event_id, datetime.now(UTC), body)
    return body.encode(), {**headers, "content-type": "application/json"}


def test_the_readme_receiver_verifies_and_deduplicates() -> None:
    secret = new_secret()
    paid: list[tuple[Any, Any]] = []
    namespace: dict[str, Any] = {
        "SECRET": secret,
        "mark_paid": lambda payout, tx: paid.append((payout, tx)),
    }
    exec(compile(_receiver_source(), "README.md", "exec"), namespace)  # noqa: S102
    client = TestClient(namespace["app"])
    body, headers = _delivery(secret, "evt_7", 3)
    for _ in range(2):  # a retry of the same event
        assert client.post("/hooks/payouts", content=body, headers=headers).status_code == 200
    assert paid == [(12, "0xabc")]
    forged_body, forged = _delivery(new_secret(), "evt_8", 4)
    assert client.post("/hooks/payouts", content=forged_body, headers=forged).status_code == 400
    assert paid == [(12, "0xabc")]
