"""Settlement chooses push or claim per payout, on real PostgreSQL and anvil.

A creator on push is always pushed and one on claim always made claimable; on auto a payout
worth less than the configured multiple of its gas is made claimable, a large one pushed, and
between the two thresholds the recipient's holding of the token decides. What is claimable
leaves payouts in flight for the creator's claimable account in one balanced journal, never
enters a batch, and its event carries a voucher the claim signer signed for the address's
whole cumulative, across creators and runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

import devstack
from payouts.catalog import ensure_marketplace, set_payout_addresses
from payouts.chain.vouchers import SignedVoucher, Voucher
from payouts.claims import handlers as claims
from payouts.claims import vouchers
from payouts.db.models import Creator, Payout
from payouts.errors import DatabaseRefused, EscrowChanged
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.settlement.policy import SettleBy, claim_policy_for
from tests.chainkit import assert_books_balance, block_recipient, roll_up_now
from tests.conftest import chain_settings
from tests.integration.test_app_role import app_url  # noqa: F401 - the fixture, by name
from tests.waiting import wait_until

pytestmark = pytest.mark.chain

# The native coin at 3,000 dollars for a 6-decimals dollar token; twenty times a payout's
# gas at anvil's 1-2 gwei is then about a dollar (existing holder) to three (fresh).
USDC_PER_NATIVE = 3_000 * 10**6
TINY = 20_000  # two cents: claim on auto
LARGE = 50_000_000  # fifty dollars: push on auto


@pytest.fixture
def rt(make_chain_runtime: Callable[..., Runtime]) -> Runtime:
    plain = make_chain_runtime()
    asset = plain.settings.assets[0].model_dump(mode="json", exclude_unset=True)
    return make_chain_runtime(assets=[{**asset, "units_per_native": USDC_PER_NATIVE}])


def _creators(rt: Runtime, marketplace: str, modes: dict[str, str], **addresses: str) -> int:
    """Creators of ``marketplace`` in ``modes``, each at a fresh address unless named."""
    with rt.uow() as session:
        rt.sync_assets(session)
        market = ensure_marketplace(session, marketplace)
        set_payout_addresses(
            session, market, {c: addresses.get(c) or Account.create().address for c in modes}
        )
        session.commit()
    for creator, mode in modes.items():
        claims.set_settle_mode(rt, market, creator, mode, actor="test")
    return market


def _marketplace(rt: Runtime, name: str) -> int:
    with rt.uow() as session:
        return ensure_marketplace(session, name)


def _earn(rt: Runtime, marketplace: str, amounts: dict[str, int], tag: str = "") -> None:
    ingest.record(
        rt,
        marketplace,
        [Earning(f"{tag}{c}", c, amount, "USDC") for c, amount in amounts.items()],
    )


def _payouts(rt: Runtime) -> dict[str, Payout]:
    """The payouts by their creator's id (the latest of each)."""
    with rt.uow() as session:
        found = session.execute(
            select(Creator.external_id, Payout).join(Creator, Creator.id == Payout.creator_id)
        )
        by_creator = dict(sorted(((c, p) for c, p in found), key=lambda cp: cp[1].id))
        session.expunge_all()
    return by_creator


def _claimable_events(rt: Runtime) -> list[dict[str, Any]]:
    with rt.uow() as session:
        return list(
            session.execute(
                text("SELECT payload FROM events WHERE type = 'payout.claimable' ORDER BY id")
            ).scalars()
        )


def _mint(rt: Runtime, token: str, to: str, amount: int) -> None:
    """The test token's open mint: ``to`` becomes a holder."""
    data = "0x40c10f19" + to[2:].lower().rjust(64, "0") + hex(amount)[2:].rjust(64, "0")
    tx = {"from": devstack.DEV_ADDRESSES[0], "to": token, "data": data}
    tx_hash = rt.chain.rpc("eth_sendTransaction", [tx])
    receipt = wait_until(lambda: rt.chain.receipt(tx_hash), timeout=30, what="the mint mined")
    assert receipt["status"] == "0x1"


def _signed(payload: dict[str, Any]) -> SignedVoucher:
    v = payload["voucher"]
    voucher = Voucher(
        v["chain_id"], v["contract"], v["token"], v["recipient"], int(v["cumulative"])
    )
    return SignedVoucher(voucher, bytes.fromhex(v["signature"][2:]))


def test_push_creators_push_claim_creators_claim_and_auto_weighs_the_gas(rt: Runtime) -> None:
    _creators(
        rt,
        "m",
        {"push-tiny": "push", "claim-large": "claim", "auto-tiny": "auto", "auto-large": "auto"},
    )
    _earn(
        rt, "m", {"push-tiny": TINY, "claim-large": LARGE, "auto-tiny": TINY, "auto-large": LARGE}
    )
    roll_up_now(rt)

    plan = settlement.settle(rt, actor="test")["USDC"]

    payouts = _payouts(rt)
    assert plan.claimable == 2
    assert {c: (p.state, p.settled_by) for c, p in payouts.items()} == {
        # too small for today's gas: it waits for a cheaper window, as ever, never claimable
        "push-tiny": ("pending", None),
        "claim-large": ("claimable", "claim"),
        "auto-tiny": ("claimable", "claim"),
        "auto-large": ("batched", "push"),
    }
    assert payouts["claim-large"].batch_id is None
    assert_books_balance(rt)
    with rt.uow() as session:
        legs = session.execute(
            text(
                "SELECT a.kind, sum(e.amount) AS total FROM entries e"
                " JOIN journals j ON j.id = e.journal_id JOIN accounts a ON a.id = e.account_id"
                " WHERE j.kind = 'claimable' GROUP BY a.kind"
            )
        ).all()
    assert {r.kind: int(r.total) for r in legs} == {
        "claimable": -(LARGE + TINY),
        "payouts_in_flight": LARGE + TINY,
    }


@pytest.mark.parametrize(
    ("who", "change", "refused_by"),
    [
        # Claim is for good: the mark never changes, so no later push can cover these cents.
        ("claimer", "settled_by = 'push'", "money-bearing columns never change"),
        ("claimer", "settled_by = NULL", "money-bearing columns never change"),
        ("claimer", "batch_id = (SELECT max(id) FROM batches)", "payouts_claim_never_batched"),
        # Only a payout settled by claim is ever claimable.
        ("pusher", "state = 'claimable'", "payouts_claim_states_by_claim"),
    ],
)
def test_postgresql_refuses_to_let_push_and_claim_cover_the_same_cents(
    rt: Runtime, who: str, change: str, refused_by: str
) -> None:
    _creators(rt, "m", {"claimer": "claim", "pusher": "push"})
    _earn(rt, "m", {"claimer": TINY, "pusher": LARGE})
    roll_up_now(rt)
    settlement.settle(rt, actor="test")
    payouts = _payouts(rt)
    assert (payouts["claimer"].state, payouts["pusher"].state) == ("claimable", "batched")

    # Units of work here are savepoints, which leave PostgreSQL's error unmapped.
    with pytest.raises((DatabaseRefused, DBAPIError), match=refused_by), rt.uow() as session:
        session.execute(
            text(f"UPDATE payouts SET {change} WHERE id = :id"), {"id": payouts[who].id}
        )


def test_the_claimable_event_carries_a_voucher_of_the_address_whole_cumulative(
    rt: Runtime,
) -> None:
    shared = Account.create().address
    _creators(rt, "one", {"alice": "claim"}, alice=shared)
    _creators(rt, "two", {"alias": "claim"}, alias=shared)  # the same person elsewhere
    _earn(rt, "one", {"alice": 30_000})
    _earn(rt, "two", {"alias": 40_000})
    roll_up_now(rt)
    settlement.settle(rt, actor="test")

    first = _claimable_events(rt)
    assert len(first) == 2
    for payload in first:
        signed = _signed(payload)
        assert signed.signer() == rt.claim_signer.address
        assert signed.voucher.recipient == shared
        assert signed.voucher.cumulative == 70_000
        assert signed.voucher.contract == rt.settings.claims_address
        assert payload["status"] == "claimable"

    _earn(rt, "one", {"alice": 50_000}, tag="later-")
    roll_up_now(rt)
    settlement.settle(rt, actor="test")

    latest = _claimable_events(rt)[-1]
    assert _signed(latest).voucher.cumulative == 120_000
    with rt.uow() as session:
        asset_id = rt.asset_ids()["USDC"]
        assert vouchers.cumulative(session, shared, asset_id) == 120_000
        # A claim of the first voucher covers the two first payouts, not the later one.
        assert sorted(vouchers.covered(session, shared, asset_id, 70_000)) == sorted(
            p["payout_id"] for p in first
        )
        # Never asked of a signed voucher (each counts whole runs), but a smaller cumulative
        # covers only what fits, in the order the run numbered them.
        [one] = vouchers.covered(session, shared, asset_id, 69_999)
        assert one in {p["payout_id"] for p in first}
        assert len(vouchers.covered(session, shared, asset_id, 120_000)) == 3


def test_between_the_thresholds_a_recipient_already_holding_the_token_is_pushed(
    rt: Runtime,
) -> None:
    holder, fresh = Account.create().address, Account.create().address
    token = rt.settings.assets[0].address
    assert token is not None
    _mint(rt, token, holder, 1)
    head = rt.chain.block("latest")
    assert head is not None
    fee = head.base_fee_per_gas + rt.settings.priority_fee_per_gas
    existing_from, fresh_from = claim_policy_for(rt.settings, "USDC").thresholds(fee)
    between = (existing_from + fresh_from) // 2 // 100 * 100
    _creators(rt, "m", {"holder": "auto", "fresh": "auto"}, holder=holder, fresh=fresh)
    _earn(rt, "m", {"holder": between, "fresh": between})
    roll_up_now(rt)

    settlement.settle(rt, actor="test")

    # The holder's goes by push: left pending for a batch (this one waits for cheaper gas, as
    # the batch policy's own share of gas says), never claimable.
    settled = {c: (p.state, p.settled_by) for c, p in _payouts(rt).items()}
    assert settled == {"holder": ("pending", None), "fresh": ("claimable", SettleBy.CLAIM)}


def test_a_recipient_the_token_refuses_is_held_not_made_claimable(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    """A voucher the token would refuse to pay could never be claimed: the token's own deny
    check holds the payout for review, as it does before a batch."""
    plain = make_chain_runtime()
    asset = plain.settings.assets[0].model_dump(mode="json", exclude_unset=True)
    rt = make_chain_runtime(assets=[{**asset, "deny_check": "isBlocked(address)"}])
    blocked = Account.create().address
    _creators(rt, "m", {"blocked": "claim", "fine": "claim"}, blocked=blocked)
    _earn(rt, "m", {"blocked": TINY, "fine": TINY})
    roll_up_now(rt)
    block_recipient(rt, blocked)

    assert settlement.settle(rt, actor="test")["USDC"].claimable == 1

    states = {c: (p.state, p.settled_by) for c, p in _payouts(rt).items()}
    assert states == {"blocked": ("held", None), "fine": ("claimable", "claim")}
    [queued], _ = settlement.list_holds(rt, review=True)
    assert queued["rule"] == "token_deny"


def test_a_deny_listed_recipient_approved_in_review_is_still_paid_by_claim(rt: Runtime) -> None:
    """The deny list holds a claim creator's payout as it holds any; an operator who
    approves it in review changes who may be paid, not how the creator asked to be paid: the
    next run makes it claimable, it never enters a batch."""
    listed = Account.create().address
    _creators(rt, "m", {"listed": "claim"}, listed=listed)
    settlement.import_deny_list(rt, [f"{listed},sanctions screening"], source="t", actor="test")
    _earn(rt, "m", {"listed": LARGE})
    roll_up_now(rt)

    settlement.settle(rt, actor="test")
    assert _payouts(rt)["listed"].state == "held"
    [queued], _ = settlement.list_holds(rt, review=True)
    assert queued["rule"] == "deny_list"

    settlement.release_hold(rt, queued["id"], "cleared by compliance", actor="ops")
    plan = settlement.settle(rt, actor="test")["USDC"]
    assert (plan.claimable, plan.sealed) == (1, [])
    payout = _payouts(rt)["listed"]
    assert (payout.state, payout.settled_by, payout.batch_id) == ("claimable", "claim", None)
    assert_books_balance(rt)


def test_another_escrow_than_the_ledgers_signs_nothing_and_payouts_go_by_push(
    rt: Runtime, make_chain_runtime: Callable[..., Runtime]
) -> None:
    """A cumulative is all an address was ever made able to claim; a new escrow has paid it
    nothing, so its vouchers would pay everything again. The ledger is bound to the escrow
    its claims are for: pointed at another, it signs no voucher, settlement tells the
    operator and pushes what it would have made claimable, and nothing stalls."""
    market = _creators(rt, "m", {"claimer": "claim"})
    _earn(rt, "m", {"claimer": TINY})
    roll_up_now(rt)
    assert settlement.settle(rt, actor="test")["USDC"].claimable == 1
    other = Account.create().address
    moved = make_chain_runtime(
        claims_address=other,
        assets=[a.model_dump(mode="json", exclude_unset=True) for a in rt.settings.assets],
    )

    with pytest.raises(EscrowChanged) as refused:
        claims.creator_claim(moved, market, "claimer")
    assert str(rt.settings.claims_address) in str(refused.value)
    assert other in str(refused.value)
    assert claims.creator_claim(rt, market, "claimer")["claims"]  # the ledger's escrow still signs

    _earn(moved, "m", {"claimer": LARGE}, tag="later-")
    wait_until(lambda: roll_up_now(moved) == 1, timeout=10, what="a new window")
    plan = settlement.settle(moved, actor="test")["USDC"]
    assert plan.claimable == 0
    [sealed] = plan.sealed
    assert sealed.total == LARGE
    with rt.uow() as session:
        opened = session.execute(
            text("SELECT kind, detail FROM exceptions WHERE state = 'open'")
        ).all()
    assert [(kind, detail["configured"]) for kind, detail in opened] == [
        ("claims_escrow_changed", other)
    ]
    assert_books_balance(rt)


def test_claims_count_against_the_limits_as_batches_do(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    """A marketplace may put its creators on claim; that passes no velocity limit: what
    became claimable in the hour counts, and what would pass the ceiling is held."""
    plain = make_chain_runtime()
    asset = plain.settings.assets[0].model_dump(mode="json", exclude_unset=True)
    ceiling = {"per_hour_amount": TINY}
    rt = make_chain_runtime(assets=[{**asset, "marketplace_limits": ceiling}])
    _creators(rt, "m", {"first": "claim", "second": "claim"})
    _earn(rt, "m", {"first": TINY, "second": TINY})
    roll_up_now(rt)

    assert settlement.settle(rt, actor="test")["USDC"].claimable == 1

    states = sorted(p.state for p in _payouts(rt).values())
    assert states == ["claimable", "held"]
    [queued], _ = settlement.list_holds(rt, review=True)
    assert queued["rule"] == "velocity:marketplace:hour:amount"
    _earn(rt, "m", {"first": TINY}, tag="later-")
    roll_up_now(rt)
    settlement.settle(rt, actor="test")  # a later run counts the claimable one too
    assert sorted(p.state for p in _payouts(rt).values()) == ["held", "held"]


def test_without_an_escrow_every_payout_is_pushed(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime(claims_address=None)
    _creators(rt, "m", {"claimer": "claim"})
    _earn(rt, "m", {"claimer": TINY})
    roll_up_now(rt)

    settlement.settle(rt, actor="test")

    assert _payouts(rt)["claimer"].state == "batched"


def test_the_app_role_settles_by_claim(
    request: pytest.FixtureRequest, anvil: devstack.Anvil, deployment: devstack.DevDeployment
) -> None:
    """As the API and the workers connect: the role may set a creator's mode, mark payouts
    settled by claim and post their journal (migration 0016's grants)."""
    url = request.getfixturevalue("app_url")
    rt = Runtime(chain_settings(url, anvil.url, deployment))
    _creators(rt, "m", {"claimer": "claim"})
    _earn(rt, "m", {"claimer": TINY})
    roll_up_now(rt)

    assert settlement.settle(rt, actor="test")["USDC"].claimable == 1
    [claim] = claims.creator_claim(rt, _marketplace(rt, "m"), "claimer")["claims"]
    assert claim["voucher"]["cumulative"] == str(TINY)
