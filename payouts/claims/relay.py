"""Submitting vouchers to the escrow on a creator's behalf: support's ``payouts claim``, the
Python client, and the sweep of claimable cents left unclaimed too long.

Anyone may submit a voucher (the escrow pays the recipient the voucher names, whoever sends
it), so the payer only pays the gas. The hot wallet submits through its nonce lane
(``payouts.claims.wallet``) like any of its transactions; another key sends directly. A
voucher that would pay nothing (the escrow's record is already at its cumulative) is not
sent at all. What a claim paid reaches the ledger the one way every claim does: the
reconciler reading its Claimed log (``payouts.claims.onchain``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak
from sqlalchemy import text

from payouts.catalog import creator_id
from payouts.chain.client import ChainClient
from payouts.chain.signer import Signer
from payouts.claims import vouchers, wallet
from payouts.claims.escrow import escrow_address, send_unmined, wallet_fees
from payouts.claims.onchain import calls_at, claimed_calldata
from payouts.runtime import Runtime
from payouts.settlement.claiming import BY_CLAIM, VoucherIssuer, cumulatives, voucher_json
from payouts.states import PayoutState

CLAIM_MANY = keccak(text="claimMany(address,address[],uint256[],bytes[])")[:4]
# Vouchers per claimMany: about 40,000 gas each, so a sweep stays far below a block's gas.
SWEEP_BATCH = 100
# Without settings, what a transaction may pay per gas is today's base fee twice plus the tip.
MAX_FEE_CAP = 2**256 - 1


@dataclass(frozen=True)
class Submitted:
    """One voucher handed to the chain: what it should pay, and in which transaction."""

    asset: str
    recipient: str
    cumulative: int
    paying: int
    tx_hash: str


def claimed_on_chain(
    chain: ChainClient, escrow: str, recipients: list[tuple[str, str]]
) -> list[int]:
    """The escrow's ``claimed[recipient][token]`` of each (recipient, token), in one batch,
    as the pending block has it: a voucher sent and not yet mined counts as paid, so asking
    twice never sends it twice."""
    return calls_at(chain, "pending", [(escrow, claimed_calldata(r, t)) for r, t in recipients])


def claim_for_creator(
    rt: Runtime, marketplace_id: int, external_id: str, *, payer: Signer | None = None
) -> list[Submitted]:
    """Submit each of the creator's current vouchers that would pay something; ``payer``
    pays the gas (the hot wallet, through its lane, where None)."""
    escrow = escrow_address(rt)
    issuer = VoucherIssuer(rt.claim_signer, rt.settings.chain_id, escrow)
    ids = rt.asset_ids()
    tokens = {
        ids[a.symbol]: vouchers.Token(ids[a.symbol], a.symbol, str(a.address))
        for a in rt.token_assets()
    }
    with rt.uow() as session:
        creator = creator_id(session, marketplace_id, external_id)
        found = vouchers.current(session, issuer, tokens, creator_id=creator)
    return _submit(rt, found, payer=payer)


def _submit(rt: Runtime, found: list[dict[str, Any]], *, payer: Signer | None) -> list[Submitted]:
    escrow = escrow_address(rt)
    due = _due(rt, escrow, found)
    if payer is None or payer.address == rt.signer.address:
        return _through_lane(rt, escrow, [[d] for d in due])
    return [_direct(rt, escrow, payer, v, paying) for v, paying in due]


def _due(rt: Runtime, escrow: str, found: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """The vouchers that would pay something, with what each pays (cumulative less what the
    escrow records as claimed)."""
    pairs = [(v["voucher"]["recipient"], v["voucher"]["token"]) for v in found]
    claimed = claimed_on_chain(rt.chain, escrow, pairs)
    return [
        (v, int(v["voucher"]["cumulative"]) - c)
        for v, c in zip(found, claimed, strict=True)
        if int(v["voucher"]["cumulative"]) > c
    ]


def _through_lane(
    rt: Runtime, escrow: str, transactions: list[list[tuple[dict[str, Any], int]]]
) -> list[Submitted]:
    """One hot-wallet transaction per group of vouchers: ``claim`` for one, ``claimMany``
    for more (all of one token)."""
    ids = rt.asset_ids()
    done = []
    with rt.uow() as session:
        for group in transactions:
            (first, _), *rest = group
            data = (
                claim_many_calldata(first["voucher"]["token"], [v["voucher"] for v, _ in group])
                if rest
                else first["voucher"]["calldata"]
            )
            stored = wallet.store(
                session,
                rt.chain,
                rt.signer,
                chain_id=rt.settings.chain_id,
                purpose="claim",
                to=escrow,
                data=data,
                asset_id=ids[first["asset"]],
                amount=sum(paying for _, paying in group),
                fees=wallet_fees(rt),
            )
            done += [_submitted(v, paying, stored.tx_hash) for v, paying in group]
        session.commit()
    if done:
        send_unmined(rt)
    return done


def _direct(rt: Runtime, escrow: str, payer: Signer, v: dict[str, Any], paying: int) -> Submitted:
    """Sent by a key that is not the hot wallet's (a creator's, support's): its own nonce."""
    fees = wallet_fees(rt, lane=False)
    tx_hash = send_call(rt.chain, payer, escrow, v["voucher"]["calldata"], fees)
    return _submitted(v, paying, tx_hash)


def send_call(chain: ChainClient, payer: Signer, to: str, data: str, fees: wallet.Fees) -> str:
    """Estimate, sign on the payer's own next nonce, send; the transaction's hash. A call
    the node would revert (a voucher refused) raises before anything is sent."""
    gas = chain.estimate_gas(payer.address, to, data)
    nonce = chain.nonce(payer.address)
    signed = wallet.sign_call(
        chain, payer, chain_id=chain.chain_id(), nonce=nonce, to=to, data=data, gas=gas, fees=fees
    )
    wallet.send(chain, signed.raw)
    return signed.tx_hash


def submit_vouchers(
    chain: ChainClient, payer: Signer, vouchers: Sequence[dict[str, Any]]
) -> list[str]:
    """The vouchers (as ``voucher_json`` shows them) that would pay something, sent by
    ``payer`` at the node's own tip: for the Python client, which has no settings."""
    claimed = [
        claimed_on_chain(chain, v["contract"], [(v["recipient"], v["token"])])[0] for v in vouchers
    ]
    fees = wallet.Fees(
        max_fee_cap=MAX_FEE_CAP, priority_fee=chain.max_priority_fee(), headroom_percent=20
    )
    return [
        send_call(chain, payer, v["contract"], v["calldata"], fees)
        for v, c in zip(vouchers, claimed, strict=True)
        if int(v["cumulative"]) > c
    ]


def _submitted(v: dict[str, Any], paying: int, tx_hash: str) -> Submitted:
    voucher = v["voucher"]
    return Submitted(v["asset"], voucher["recipient"], int(voucher["cumulative"]), paying, tx_hash)


# The (recipient, asset) pairs with a payout claimable for longer than :age seconds.
STALE = f"""
    SELECT DISTINCT p.recipient, p.asset_id FROM payouts p
     WHERE p.state = {PayoutState.CLAIMABLE.sql} AND p.settled_by = {BY_CLAIM}
       AND EXISTS (SELECT 1 FROM transitions t WHERE t.entity = 'payout' AND t.entity_id = p.id
                      AND t.to_state = {PayoutState.CLAIMABLE.sql}
                      AND t.at <= now() - make_interval(secs => :age))
"""


# The hot wallet's vouchers the reconciler has not seen mined yet.
SWEEP_PENDING = """
    SELECT tx_hash FROM wallet_transactions
     WHERE purpose = 'claim' AND block_number IS NULL AND chain_id = :c
"""


def sweep(rt: Runtime, *, older_than: float | None = None) -> list[Submitted]:
    """Submit, from the hot wallet, the current voucher of every address with a payout
    claimable for longer than ``older_than`` seconds (the settings' sweep age by default),
    up to ``SWEEP_BATCH`` of one token per ``claimMany`` transaction: the escrow pays them
    as it would their own claims, so its record stays exact."""
    if not rt.settings.claims_address:
        return []
    age = rt.settings.claims_sweep_after_seconds if older_than is None else older_than
    escrow = escrow_address(rt)
    issuer = VoucherIssuer(rt.claim_signer, rt.settings.chain_id, escrow)
    symbols = {asset_id: symbol for symbol, asset_id in rt.asset_ids().items()}
    tokens = {a.symbol: str(a.address) for a in rt.token_assets()}
    found: list[dict[str, Any]] = []
    with rt.uow() as session:
        unbooked = session.execute(text(SWEEP_PENDING), {"c": rt.settings.chain_id}).scalars()
        if any(rt.chain.receipt(tx_hash) is None for tx_hash in unbooked):
            # A voucher the hot wallet sent is not mined yet: its address would look unpaid
            # and go twice, the second paying nothing but gas.
            return []
        issuer.bind(session)
        stale = session.execute(text(STALE), {"age": age}).all()
        by_asset: dict[int, list[str]] = {}
        for row in stale:
            by_asset.setdefault(int(row.asset_id), []).append(row.recipient)
        for asset_id, recipients in by_asset.items():
            symbol = symbols[asset_id]
            owed = cumulatives(session, asset_id, recipients)
            for signed in issuer.issue(tokens[symbol], owed).values():
                found.append({"asset": symbol, "voucher": voucher_json(signed)})
    due = _due(rt, escrow, found)
    batches = [
        group[start : start + SWEEP_BATCH]
        for group in _by_asset(due).values()
        for start in range(0, len(group), SWEEP_BATCH)
    ]
    return _through_lane(rt, escrow, batches)


def _by_asset(due: list[tuple[dict[str, Any], int]]) -> dict[str, list[tuple[dict[str, Any], int]]]:
    groups: dict[str, list[tuple[dict[str, Any], int]]] = {}
    for v, paying in due:
        groups.setdefault(v["asset"], []).append((v, paying))
    return groups


def claim_many_calldata(token: str, vouchers: Sequence[dict[str, Any]]) -> str:
    """``claimMany(token, recipients, cumulatives, signatures)`` of vouchers of one token (as
    ``voucher_json`` shows them)."""
    args = encode(
        ["address", "address[]", "uint256[]", "bytes[]"],
        [
            token,
            [v["recipient"] for v in vouchers],
            [int(v["cumulative"]) for v in vouchers],
            [bytes.fromhex(v["signature"].removeprefix("0x")) for v in vouchers],
        ],
    )
    return "0x" + (CLAIM_MANY + args).hex()
