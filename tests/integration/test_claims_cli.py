"""The operator's claims commands on a real anvil: top the escrow up, claim for a creator,
sweep what sat unclaimed, and see it all in ``payouts reconcile`` and ``payouts check``."""

from __future__ import annotations

import json
from collections.abc import Callable

from click.testing import Result
from eth_account import Account
from sqlalchemy import text

import devstack
from payouts.claims import rotation
from payouts.ops import measures
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from tests.chainkit import MARKETPLACE, mine, roll_up_now, scalar, seed, token_balance

Operator = Callable[..., Result]


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def _claimable(rt: Runtime, creators: int) -> dict[str, str]:
    recipients = seed(rt, creators=creators)
    with rt.uow() as session:
        session.execute(text("UPDATE creators SET settle_mode = 'claim'"))
        session.commit()
    assert roll_up_now(rt) == creators
    assert settlement.settle(rt, actor="test")["USDC"].claimable == creators
    return recipients


def test_an_operator_tops_up_claims_for_a_creator_and_sweeps_the_rest(
    make_runtime: Callable[..., Runtime], operator: Operator
) -> None:
    rt = make_runtime()
    token = str(rt.settings.assets[0].address)
    recipients = _claimable(rt, creators=3)
    first, *others = sorted(recipients)

    [top_up] = json.loads(_ok(operator(rt, "claims", "top-up", "--json")).stdout)["top_ups"]
    assert json.loads(_ok(operator(rt, "claims", "top-up", "--json")).stdout)["top_ups"] == []
    mine(rt, 1)
    _ok(operator(rt, "reconcile"))
    claimed = _ok(operator(rt, "claim", first, "--marketplace", MARKETPLACE, "--json"))
    [sent] = json.loads(claimed.stdout)["submitted"]
    again = _ok(operator(rt, "claim", first, "--marketplace", MARKETPLACE))
    assert "nothing to claim" in again.stdout
    swept = json.loads(_ok(operator(rt, "claims", "sweep", "--older-than", "0", "--json")).stdout)
    mine(rt, 3)
    reconciled = json.loads(_ok(operator(rt, "reconcile", "--json")).stdout)
    _ok(operator(rt, "reconcile"))

    assert int(top_up["amount"]) > 0
    assert {s["recipient"] for s in swept["swept"]} == {recipients[c] for c in others}
    assert reconciled["claims"]["claimed_payouts"] == 3
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 3
    assert token_balance(rt, token, recipients[first]) == int(sent["paying"])
    for creator in others:
        paid = scalar(
            rt,
            "SELECT sum(p.amount) FROM payouts p JOIN creators c ON c.id = p.creator_id"
            f" WHERE c.external_id = '{creator}'",
        )
        assert token_balance(rt, token, recipients[creator]) == paid
    checked = _ok(operator(rt, "check"))
    assert "FAIL" not in checked.output
    # Their earnings reach the time-to-final histogram as a batch's do (the worker observes
    # the payouts a reconcile finalized by claim).
    with rt.uow() as session:
        final = list(session.execute(text("SELECT id FROM payouts")).scalars())
    ages = measures.earning_ages(rt, [], [86_400.0], final)
    assert sum(n for _, n, _ in ages) == scalar(rt, "SELECT count(*) FROM credits")


def test_a_claim_paid_by_another_key_leaves_the_hot_wallets_lane_alone(
    make_runtime: Callable[..., Runtime], operator: Operator
) -> None:
    rt = make_runtime()
    recipients = _claimable(rt, creators=1)
    [creator] = recipients
    _ok(operator(rt, "claims", "top-up"))
    mine(rt, 1)
    _ok(operator(rt, "reconcile"))
    lane = scalar(rt, "SELECT next_nonce FROM nonce_lanes")

    _ok(
        operator(
            rt, "claim", creator, "--marketplace", MARKETPLACE, "--payer-key", devstack.DEV_KEYS[2]
        )
    )

    assert scalar(rt, "SELECT next_nonce FROM nonce_lanes") == lane
    assert scalar(rt, "SELECT count(*) FROM wallet_transactions WHERE purpose = 'claim'") == 0
    mine(rt, 3)
    _ok(operator(rt, "reconcile"))
    _ok(operator(rt, "reconcile"))
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 1


def test_an_operator_rotates_the_claim_signer(
    make_runtime: Callable[..., Runtime], operator: Operator
) -> None:
    rt = make_runtime()
    new_signer = Account.create().address

    rotated = _ok(operator(rt, "claims", "rotate-signer", new_signer))
    again = _ok(operator(rt, "claims", "rotate-signer", new_signer))
    mine(rt, 1)
    _ok(operator(rt, "reconcile"))

    assert "rotated in 0x" in rotated.stdout
    assert "already pays that signer" in again.stdout
    assert rotation.current_signer(rt) == new_signer
    # Its gas is booked like any of the hot wallet's transactions.
    assert scalar(rt, "SELECT count(*) FROM wallet_transactions WHERE journal_id IS NOT NULL") == 1
