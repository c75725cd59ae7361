"""Claims on a real anvil, in-process: payouts made claimable by settlement, the escrow topped
up from the hot wallet through its nonce lane, vouchers submitted, the Claimed logs read back
by the reconciler, and the ledger following the chain to the base unit, reorgs included."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest
from eth_abi import encode
from pydantic import SecretStr
from sqlalchemy import text

import devstack
from payouts.chain import codec
from payouts.chain.signer import LocalKeySigner
from payouts.chain.vouchers import Voucher, sign_voucher
from payouts.claims import relay, rotation, topups
from payouts.claims.onchain import CLAIM_REORGED_AFTER_FINALITY, CLAIM_UNMATCHED
from payouts.errors import ChainError
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.ops import measures, metrics
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.submission import handlers as submission
from payouts.tracking import handlers as tracking
from tests.chainkit import (
    MARKETPLACE,
    automine_off,
    mine,
    own_anvil,
    roll_up_now,
    scalar,
    seed,
    settle_and_submit,
    token_balance,
    value,
)
from tests.waiting import wait_until

anvil = own_anvil  # this module's chain, not the session's (see own_anvil)


SETTLED_BY_CLAIM = "SELECT count(*) FROM payouts WHERE settled_by = 'claim'"


def _claiming(rt: Runtime, creators: list[str]) -> None:
    with rt.uow() as session:
        session.execute(
            text("UPDATE creators SET settle_mode = 'claim' WHERE external_id = ANY(:c)"),
            {"c": creators},
        )
        session.commit()


def _marketplace(rt: Runtime) -> int:
    return scalar(rt, f"SELECT id FROM marketplaces WHERE name = '{MARKETPLACE}'")


def _payouts(rt: Runtime, creator: str) -> dict[str, int]:
    with rt.uow() as session:
        rows = session.execute(
            text(
                "SELECT p.state, sum(p.amount) AS total FROM payouts p"
                " JOIN creators c ON c.id = p.creator_id WHERE c.external_id = :c"
                " GROUP BY p.state"
            ),
            {"c": creator},
        ).all()
    return {r.state: int(r.total) for r in rows}


def _escrow_ledger(rt: Runtime) -> int:
    return scalar(
        rt,
        "SELECT coalesce(sum(e.amount), 0) FROM entries e JOIN accounts a ON a.id = e.account_id"
        " WHERE a.kind = 'claims_escrow'",
    )


def _claimable_ready(rt: Runtime) -> tuple[dict[str, str], list[str]]:
    """Three creators settled by claim, the escrow topped up and the top-up booked."""
    recipients = seed(rt, creators=3)
    creators = sorted(recipients)
    _claiming(rt, creators)
    assert roll_up_now(rt) == 3
    plan = settlement.settle(rt, actor="test")["USDC"]
    assert (plan.claimable, plan.sealed) == (3, [])
    [top_up] = topups.top_up(rt)
    claimable = scalar(rt, "SELECT sum(amount) FROM payouts WHERE state = 'claimable'")
    assert top_up.amount == claimable * 12_000 // 10_000
    # Signed at the fee cap: nothing replaces it, and it must never hold the lane up.
    sent = rt.chain.transaction(top_up.tx_hash)
    assert sent is not None
    assert int(sent["maxFeePerGas"], 16) == rt.settings.max_fee_per_gas
    mine(rt, 1)
    reconciler.reconcile(rt)
    return recipients, creators


def test_a_voucher_pays_once_and_the_ledger_follows_the_escrow(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    token = str(rt.settings.assets[0].address)
    escrow = str(rt.settings.claims_address)
    recipients, creators = _claimable_ready(rt)
    assert _escrow_ledger(rt) == token_balance(rt, token, escrow)
    first = creators[0]
    owed = _payouts(rt, first)["claimable"]

    [submitted] = relay.claim_for_creator(rt, _marketplace(rt), first)

    assert submitted.paying == owed
    assert relay.claim_for_creator(rt, _marketplace(rt), first) == []  # already paying
    outcome = reconciler.reconcile(rt)
    assert outcome.claims is not None
    assert (outcome.claims.applied, outcome.claims.claimed_payouts) == (1, 1)
    assert _payouts(rt, first) == {"claimed": owed}
    mine(rt, 3)
    final = reconciler.reconcile(rt).claims
    assert final is not None
    assert len(final.finalized_payout_ids) == 1
    assert _payouts(rt, first) == {"finalized": owed}
    assert token_balance(rt, token, recipients[first]) == owed
    assert _escrow_ledger(rt) == token_balance(rt, token, escrow)
    # The others still wait, claimable, and their cents are still in the escrow.
    for other in creators[1:]:
        assert list(_payouts(rt, other)) == ["claimable"]
    again = reconciler.reconcile(rt)
    assert again.claims is not None
    assert (again.claims.seen, again.claims.applied) == (0, 0)
    checked = tracking.check(rt)
    assert checked.ok, [r for r in checked.results if not r.ok]
    assert {
        "claimable balances equal the claimable payouts",
        "the escrow account holds the top-ups less the claims paid",
        "the escrow holds on chain what the ledger says",
        "each address claimed on chain what the ledger paid it",
    } <= {r.name for r in checked.results}


def test_a_claim_the_ledger_never_issued_moves_nothing_and_is_an_exception(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    """A voucher for more than was ever claimable (a leaked signer key): the escrow pays
    it, the ledger moves no payout and tells an operator, with the figures."""
    rt = make_chain_runtime()
    recipients, creators = _claimable_ready(rt)
    owed = _payouts(rt, creators[0])["claimable"]
    voucher = Voucher(
        rt.settings.chain_id,
        str(rt.settings.claims_address),
        str(rt.settings.assets[0].address),
        recipients[creators[0]],
        owed + 1,
    )
    signed = sign_voucher(rt.claim_signer, voucher)
    tx = {
        "from": devstack.DEV_ADDRESSES[2],
        "to": voucher.contract,
        "data": signed.claim_calldata(),
    }
    sent = rt.chain.rpc("eth_sendTransaction", [tx])
    receipt = wait_until(lambda: rt.chain.receipt(sent), timeout=10, what="the forged claim")
    assert int(receipt["status"], 16) == 1, receipt

    outcome = reconciler.reconcile(rt)

    assert outcome.claims is not None
    assert (outcome.claims.seen, outcome.claims.applied) == (1, 0)
    assert _payouts(rt, creators[0]) == {"claimable": owed}
    assert scalar(rt, f"SELECT count(*) FROM exceptions WHERE kind = '{CLAIM_UNMATCHED}'") == 1
    failed = {r.name for r in tracking.check(rt).results if not r.ok}
    assert failed == {
        "the escrow holds on chain what the ledger says",
        "each address claimed on chain what the ledger paid it",
    }


def rows(rt: Runtime, sql: str) -> list[Any]:
    with rt.uow() as session:
        return list(session.execute(text(sql)).all())


def rows_of(rt: Runtime, sql: str) -> list[Any]:
    return [r[0] for r in rows(rt, sql)]


def _states(rt: Runtime, creator: str) -> set[str]:
    return set(_payouts(rt, creator))


def test_a_reorg_that_removes_a_claim_unwinds_it_and_the_same_bytes_pay_once(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime(confirmation_depth=1, finality_depth=6)
    token = str(rt.settings.assets[0].address)
    escrow = str(rt.settings.claims_address)
    recipients, creators = _claimable_ready(rt)
    first = creators[0]
    owed = _payouts(rt, first)["claimable"]
    mine(rt, 5)  # the reorg must not reach back to the top-up
    [submitted] = relay.claim_for_creator(rt, _marketplace(rt), first)
    reconciler.reconcile(rt)
    assert _states(rt, first) == {"claimed"}
    escrow_after_claim = _escrow_ledger(rt)

    rt.chain.rpc("anvil_reorg", [1, []])  # the claim's block is replaced by an empty one
    outcome = reconciler.reconcile(rt)

    assert outcome.claims is not None
    assert outcome.claims.unwound == 1
    assert _states(rt, first) == {"claimable"}
    assert _escrow_ledger(rt) == escrow_after_claim + owed
    unclaimed = "SELECT count(*) FROM events WHERE type = 'payout.unclaimed'"
    assert scalar(rt, unclaimed) == 1
    # The stored bytes go out again (or the node kept them): one claim, paid once.
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)
    assert _states(rt, first) == {"claimed"}
    mine(rt, 6)
    reconciler.reconcile(rt)
    assert _payouts(rt, first) == {"finalized": owed}
    assert token_balance(rt, token, recipients[first]) == owed
    assert _escrow_ledger(rt) == token_balance(rt, token, escrow)
    assert scalar(rt, "SELECT count(*) FROM wallet_transactions WHERE purpose = 'claim'") == 1
    assert submitted.tx_hash == value(rt, "SELECT tx_hash FROM claims WHERE unwound_at IS NULL")
    checked = tracking.check(rt)
    assert checked.ok, [r for r in checked.results if not r.ok]


def test_push_then_claim_then_push_pays_every_cent_once(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    token = str(rt.settings.assets[0].address)
    recipients = seed(rt, creators=1)
    [creator] = recipients
    earned = scalar(rt, "SELECT sum(amount) FROM credits")

    def window(mode: str, n: int) -> None:
        with rt.uow() as session:
            session.execute(text("UPDATE creators SET settle_mode = :m"), {"m": mode})
            session.commit()
        if n:
            ingest.record(
                rt,
                MARKETPLACE,
                [Earning(f"more-{n}-{i}", creator, 20_000 + i, "USDC") for i in range(2)],
            )
        wait_until(lambda: roll_up_now(rt) == 1, timeout=10, what="a new window")
        settle_and_submit(rt)
        topups.top_up(rt)
        relay.claim_for_creator(rt, _marketplace(rt), creator)
        mine(rt, 1)
        reconciler.reconcile(rt)
        mine(rt, 3)
        reconciler.reconcile(rt)

    window("push", 0)
    window("claim", 1)
    window("push", 2)

    by = {
        r.settled_by: int(r.total)
        for r in rows(
            rt,
            "SELECT settled_by, sum(amount) AS total FROM payouts"
            " WHERE state = 'finalized' GROUP BY settled_by",
        )
    }
    assert set(by) == {"push", "claim"}
    earned = scalar(rt, "SELECT sum(amount) FROM credits")
    paid = scalar(rt, "SELECT sum(amount) FROM payouts WHERE state = 'finalized'")
    carried = earned - paid  # rounding dust stays with the creator, never paid twice
    assert 0 <= carried < 3 * 100
    assert token_balance(rt, token, recipients[creator]) == paid
    checked = tracking.check(rt)
    assert checked.ok, [r for r in checked.results if not r.ok]


def test_after_a_signer_rotation_old_vouchers_are_refused_and_fresh_ones_pay_the_rest(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    _, creators = _claimable_ready(rt)
    first, second = creators[0], creators[1]
    relay.claim_for_creator(rt, _marketplace(rt), first)
    new_key = "0x" + secrets.token_hex(32)
    rotated = make_chain_runtime(claims_signer_key=new_key)
    # The hot wallet owns the escrow (deployed by it) and rotates through its lane.
    assert rotation.rotate_signer(rotated) is not None
    wait_until(
        lambda: rotation.current_signer(rt) == rotated.claim_signer.address,
        timeout=10,
        what="the rotation mined",
    )
    assert rotation.rotate_signer(rotated) is None  # already so: nothing sent
    owed = _payouts(rt, second)["claimable"]

    with pytest.raises(ChainError, match=r"WrongSigner|revert"):
        relay.claim_for_creator(rt, _marketplace(rt), second)
    [fresh] = relay.claim_for_creator(rotated, _marketplace(rt), second)

    assert fresh.paying == owed
    assert relay.claim_for_creator(rotated, _marketplace(rt), first) == []
    mine(rt, 3)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)
    assert _payouts(rt, second) == {"finalized": owed}
    checked = tracking.check(rt)
    assert checked.ok, [r for r in checked.results if not r.ok]


def test_an_escrow_that_runs_short_shows_it_and_pays_nothing_it_does_not_hold(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    recipients, creators = _claimable_ready(rt)
    token = str(rt.settings.assets[0].address)
    # More becomes claimable than the escrow holds: a new window for every creator.
    ingest.record(rt, MARKETPLACE, [Earning(f"big-{c}", c, 5_000_000, "USDC") for c in creators])
    wait_until(lambda: roll_up_now(rt) == 3, timeout=10, what="a new window")
    settlement.settle(rt, actor="test")
    [cover] = measures.escrow_cover(rt)
    assert cover.shortfall > 0
    # What the alert reads (PayoutsClaimsEscrowShort: payouts_claims_escrow_shortfall > 0).
    exported = {
        (sample.name, sample.labels["asset"]): sample.value
        for family in metrics.escrow(rt)
        for sample in family.samples
    }
    assert exported[("payouts_claims_escrow_shortfall", "USDC")] == cover.shortfall
    relayer = LocalKeySigner(SecretStr(devstack.DEV_KEYS[2]))
    before = token_balance(rt, token, recipients[creators[0]])

    with pytest.raises(ChainError):
        relay.claim_for_creator(rt, _marketplace(rt), creators[0], payer=relayer)

    assert token_balance(rt, token, recipients[creators[0]]) == before
    assert scalar(rt, "SELECT count(*) FROM wallet_transactions WHERE purpose = 'claim'") == 0
    topups.top_up(rt)
    mine(rt, 1)
    reconciler.reconcile(rt)
    [cover] = measures.escrow_cover(rt)
    assert cover.shortfall == 0
    [paid] = relay.claim_for_creator(rt, _marketplace(rt), creators[0], payer=relayer)
    mine(rt, 3)
    reconciler.reconcile(rt)
    assert token_balance(rt, token, recipients[creators[0]]) == before + paid.paying


def _pending_total(rt: Runtime, creators: list[str]) -> int:
    return scalar(
        rt,
        "SELECT coalesce(sum(p.amount), 0) FROM payouts p JOIN creators c ON c.id = p.creator_id"
        f" WHERE c.external_id IN ({', '.join(repr(c) for c in creators)})",
    )


def test_a_top_up_never_takes_the_tokens_of_a_batch_sealed_before_it(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    """The hot wallet pays batches and tops the escrow up from one balance: a top-up counts
    out the batches sealed and not yet mined (and they, the top-ups on their way), so the
    batch still pays in full and what the wallet cannot cover stays the escrow's shortfall."""
    rt = make_chain_runtime(confirmation_depth=1, finality_depth=2)
    token = str(rt.settings.assets[0].address)
    hot = rt.signer.address
    recipients = seed(rt, creators=4)
    creators = sorted(recipients)
    claimers, pushers = creators[:3], creators[3:]
    _claiming(rt, claimers)
    assert roll_up_now(rt) == 4
    push_total, claim_total = _pending_total(rt, pushers), _pending_total(rt, claimers)
    keep = push_total + claim_total // 10  # the batch's tokens and a tenth of the claimable
    assert claim_total * 12_000 // 10_000 > keep  # a top-up would want more than all of it
    away = token_balance(rt, token, hot) - keep
    transfer = encode(["address", "uint256"], [devstack.DEV_ADDRESSES[0], away])
    data = "0x" + (codec.ERC20_TRANSFER + transfer).hex()
    rt.chain.rpc("eth_sendTransaction", [{"from": hot, "to": token, "data": data}])
    assert token_balance(rt, token, hot) == keep

    plan = settlement.settle(rt, actor="test")["USDC"]
    assert plan.claimable == 3
    [sealed] = plan.sealed
    [top_up] = topups.top_up(rt)
    assert top_up.amount == claim_total // 10

    submission.submit(rt, sealed.batch_id, actor="test")
    mine(rt, 2)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)
    assert value(rt, "SELECT state FROM batches") == "finalized"
    for creator in pushers:
        assert token_balance(rt, token, recipients[creator]) == _pending_total(rt, [creator])
    assert token_balance(rt, token, hot) == 0
    [cover] = measures.escrow_cover(rt)
    assert cover.shortfall == claim_total - claim_total // 10
    checked = tracking.check(rt)
    assert checked.ok, [r for r in checked.results if not r.ok]


def test_a_top_up_on_its_way_is_not_spent_again_by_a_batch(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    """Settlement counts out a top-up stored and sent but not yet mined: the batch it seals
    meanwhile fits in what the wallet keeps after it, so both land."""
    rt = make_chain_runtime(confirmation_depth=1, finality_depth=2)
    token = str(rt.settings.assets[0].address)
    hot = rt.signer.address
    claimers = sorted(seed(rt, creators=2, seed=1))
    _claiming(rt, claimers)
    roll_up_now(rt)
    assert settlement.settle(rt, actor="test")["USDC"].claimable == 2
    wanted = _pending_total(rt, claimers) * 12_000 // 10_000
    pushed = seed(rt, creators=2, seed=2)
    pushers = sorted(pushed)
    wait_until(lambda: roll_up_now(rt) == 2, timeout=10, what="a new window")
    smallest = min(_pending_total(rt, [c]) for c in pushers)
    keep = wanted + smallest  # the top-up, then room for one pusher's payout, not both
    away = token_balance(rt, token, hot) - keep
    transfer = encode(["address", "uint256"], [devstack.DEV_ADDRESSES[0], away])
    data = "0x" + (codec.ERC20_TRANSFER + transfer).hex()
    rt.chain.rpc("eth_sendTransaction", [{"from": hot, "to": token, "data": data}])

    with automine_off(rt):
        [top_up] = topups.top_up(rt)
        assert top_up.amount == wanted
        plan = settlement.settle(rt, actor="test")["USDC"]
        [sealed] = plan.sealed
        assert sealed.total == smallest
        submission.submit(rt, sealed.batch_id, actor="test")
        mine(rt, 1)
    mine(rt, 2)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)
    assert value(rt, "SELECT state FROM batches") == "finalized"
    assert token_balance(rt, token, hot) == 0
    [cover] = measures.escrow_cover(rt)
    assert cover.shortfall == 0
    checked = tracking.check(rt)
    assert checked.ok, [r for r in checked.results if not r.ok]


def test_a_reorg_that_removes_a_top_up_unbooks_it_until_the_same_bytes_land_again(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime(confirmation_depth=1, finality_depth=6)
    token = str(rt.settings.assets[0].address)
    escrow = str(rt.settings.claims_address)
    seed(rt, creators=2)
    _claiming(rt, rows_of(rt, "SELECT external_id FROM creators"))
    roll_up_now(rt)
    settlement.settle(rt, actor="test")
    mine(rt, 5)  # the reorg must not reach back to the contracts
    [top_up] = topups.top_up(rt)
    reconciler.reconcile(rt)
    assert _escrow_ledger(rt) == top_up.amount

    rt.chain.rpc("anvil_reorg", [1, []])
    reconciler.reconcile(rt)  # unbooked: the escrow account is empty again

    assert _escrow_ledger(rt) == token_balance(rt, token, escrow) == 0
    assert topups.top_up(rt) == []  # the stored transfer is on its way: no second one
    reconciler.reconcile(rt)  # resent, mined
    reconciler.reconcile(rt)  # booked
    assert _escrow_ledger(rt) == token_balance(rt, token, escrow) == top_up.amount
    assert scalar(rt, "SELECT count(*) FROM wallet_transactions") == 1
    checked = tracking.check(rt)
    assert checked.ok, [r for r in checked.results if not r.ok]


def test_a_sweep_not_yet_mined_is_not_sent_again(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    token = str(rt.settings.assets[0].address)
    recipients, creators = _claimable_ready(rt)
    with automine_off(rt):
        swept = relay.sweep(rt, older_than=0)
        assert {s.recipient for s in swept} == set(recipients.values())
        assert len({s.tx_hash for s in swept}) == 1  # one claimMany for the three
        assert relay.sweep(rt, older_than=0) == []
        mine(rt, 1)
    reconciler.reconcile(rt)
    mine(rt, 3)
    reconciler.reconcile(rt)
    for creator in creators:
        assert list(_payouts(rt, creator)) == ["finalized"]
        assert token_balance(rt, token, recipients[creator]) == _payouts(rt, creator)["finalized"]
    assert relay.sweep(rt, older_than=0) == []


def test_a_voucher_sent_and_not_yet_mined_is_not_sent_again(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    _, creators = _claimable_ready(rt)
    with automine_off(rt):
        [sent] = relay.claim_for_creator(rt, _marketplace(rt), creators[0])
        assert relay.claim_for_creator(rt, _marketplace(rt), creators[0]) == []
        mine(rt, 1)
    assert rt.chain.receipt(sent.tx_hash) is not None
    assert scalar(rt, "SELECT count(*) FROM wallet_transactions WHERE purpose = 'claim'") == 1


def test_a_reorg_past_a_claims_finality_changes_nothing_final_and_tells_an_operator(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    _, creators = _claimable_ready(rt)
    mine(rt, 5)  # the reorg must not reach back to the top-up
    owed = _payouts(rt, creators[0])["claimable"]
    relay.claim_for_creator(rt, _marketplace(rt), creators[0])
    reconciler.reconcile(rt)
    mine(rt, 3)
    reconciler.reconcile(rt)
    assert _payouts(rt, creators[0]) == {"finalized": owed}
    block = scalar(rt, "SELECT block_number FROM claims")

    rt.chain.rpc("anvil_reorg", [rt.chain.block_number() - block + 1, []])
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)

    assert _payouts(rt, creators[0]) == {"finalized": owed}
    kind = CLAIM_REORGED_AFTER_FINALITY
    assert scalar(rt, f"SELECT count(*) FROM exceptions WHERE kind = '{kind}'") == 1
