"""Settling by claim: the pending payouts made claimable instead of pushed, with their vouchers.

A payout goes by claim when its creator asked for it, or, on auto, when it is worth less than
the configured multiple of the gas its place in a batch would cost today
(``policy.ClaimPolicy``; a recipient that already holds the token costs less, so only the
payouts between the two thresholds ask the token, in one batched read). In one run, in sets:
the payouts are locked (``SKIP LOCKED``: another run's are its own), marked
``settled_by = 'claim'`` for good and moved ``pending -> claimable``, each event carrying the
recipient's new voucher, and one journal moves their amounts from payouts in flight to each
creator's claimable account.

A voucher's cumulative for (recipient, asset) is the sum of every payout to that address in
that asset that ever became claimable, whichever creator or marketplace it belongs to: the
escrow records what each address claimed per token, not per creator. It is re-derived from
the payouts at any time (``cumulatives``) and only grows, so the newest voucher pays what is
left and every older one pays nothing. Counted only among rows this transaction sees (its
own locked ones and those committed), a voucher may lag a concurrent run's, never lead it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import holds, lifecycle
from payouts.chain import codec
from payouts.chain.client import ChainClient
from payouts.chain.signer import TypedDataSigner
from payouts.chain.vouchers import SignedVoucher, Voucher, sign_voucher
from payouts.errors import EscrowChanged
from payouts.ledger.accounts import AccountKind, account_id
from payouts.ledger.journals import open_journal
from payouts.settlement.policy import ClaimPolicy, SettleBy, SettleMode
from payouts.settlement.screening import DENIED
from payouts.settlement.selection import Candidate
from payouts.states import CreatorState, PayoutState

BY_CLAIM = f"'{SettleBy.CLAIM}'"
# One run per asset makes payouts claimable at a time, held to its commit: runs then commit
# in the order their audit rows are numbered, so a voucher's cumulative is always the sum of
# whole runs in that order, and a claim covers exactly the payouts it counted
# (``payouts.claims.vouchers.covered``).
CLAIMABLE_LOCK = 0x636C6169  # "clai"
# The journal of a run: Dr payouts in flight, Cr each payout's claimable leg.
JOURNAL_KIND = "claimable"

# Pending payouts of the asset that may be settled now (creator active, address not denied),
# with their creator's mode; aliased p (payout) and c (creator).
_SETTLEABLE = f"""
    FROM payouts p JOIN creators c ON c.id = p.creator_id
   WHERE p.state = {PayoutState.PENDING.sql} AND p.asset_id = :a
     AND c.state = {CreatorState.ACTIVE.sql}
     AND (NOT EXISTS (SELECT 1 FROM ({DENIED}) d JOIN deny_list l ON l.id = d.id
                       WHERE d.address = p.recipient AND l.listed)
          OR {holds.approved_sql("p.id")})
"""

# A voucher's cumulative per recipient of the asset: what ever became claimable.
_CUMULATIVE = f"""
    SELECT p.recipient, sum(p.amount) AS cumulative FROM payouts p
     WHERE p.settled_by = {BY_CLAIM} AND p.asset_id = :a AND p.recipient = ANY(:recipients)
     GROUP BY p.recipient
"""


@dataclass(frozen=True)
class VoucherIssuer:
    """Signs vouchers for one escrow on one chain, with the claim signer's key."""

    signer: TypedDataSigner
    chain_id: int
    escrow: str

    def bind(self, session: Session) -> None:
        """Refuse to sign for this escrow unless it is the one the ledger's claims are for:
        the first to sign binds it (``claims_escrows``, one per chain, never changed). A
        cumulative is what the address was ever made able to claim, and another escrow
        would pay it again from zero."""
        session.execute(
            text(
                "INSERT INTO claims_escrows (chain_id, address) VALUES (:c, :e)"
                " ON CONFLICT (chain_id) DO NOTHING"
            ),
            {"c": self.chain_id, "e": self.escrow},
        )
        # A statement of its own: its snapshot sees the row of a concurrent first binder,
        # whose commit the insert above waited for.
        bound = session.execute(
            text("SELECT address FROM claims_escrows WHERE chain_id = :c"), {"c": self.chain_id}
        ).scalar_one()
        if str(bound).lower() != self.escrow.lower():
            raise EscrowChanged(
                f"the ledger's claims are for escrow {bound} on chain {self.chain_id}, not"
                f" {self.escrow}: its vouchers would pay again what {bound} paid; set"
                " PAYOUTS_CLAIMS_ADDRESS back (moving claims to another escrow is not supported)"
            )

    def issue(self, token: str, cumulative: Mapping[str, int]) -> dict[str, SignedVoucher]:
        """A signed voucher per recipient; signing is the one step per address, not per row."""
        return {
            recipient: sign_voucher(
                self.signer, Voucher(self.chain_id, self.escrow, token, recipient, total)
            )
            for recipient, total in cumulative.items()
        }


def voucher_json(signed: SignedVoucher) -> dict[str, Any]:
    """A voucher as the API, the events and the export show it: amounts as strings."""
    v = signed.voucher
    return {
        "chain_id": v.chain_id,
        "contract": v.contract,
        "token": v.token,
        "recipient": v.recipient,
        "cumulative": str(v.cumulative),
        "signature": "0x" + signed.signature.hex(),
        "calldata": signed.claim_calldata(),
    }


def cumulatives(session: Session, asset_id: int, recipients: Iterable[str]) -> dict[str, int]:
    """What each recipient has ever been made able to claim in the asset (absent: nothing)."""
    rows = session.execute(
        text(_CUMULATIVE), {"a": asset_id, "recipients": sorted(set(recipients))}
    ).all()
    return {r.recipient: int(r.cumulative) for r in rows}


@dataclass(frozen=True)
class Claiming:
    """What settlement needs to settle by claim: the choice and the voucher signer."""

    policy: ClaimPolicy
    issuer: VoucherIssuer


@dataclass(frozen=True)
class ClaimableRun:
    payouts: int
    total: int
    recipients: int


# Holds what must not go (the token's own deny check) and returns the rest.
Screen = Callable[[list[Candidate]], list[Candidate]]


def make_claimable(
    session: Session,
    chain: ChainClient,
    *,
    token: str,
    asset_id: int,
    claiming: Claiming,
    fee_per_gas: int,
    actor: str,
    screen: Screen | None = None,
) -> ClaimableRun:
    """Make claimable every pending payout of the asset that goes by claim now, but those
    ``screen`` holds (a voucher the token would refuse to pay could never be claimed); the
    caller commits."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(:k, :a)"), {"k": CLAIMABLE_LOCK, "a": asset_id}
    )
    claiming.issuer.bind(session)
    existing_from, fresh_from = claiming.policy.thresholds(fee_per_gas)
    holders = _holders(session, chain, token, asset_id, existing_from, fresh_from)
    ids = _lock_claimable(session, asset_id, existing_from, fresh_from, holders)
    if ids and screen is not None:
        ids = [c.payout_id for c in screen(_candidates(session, ids))]
    if not ids:
        return ClaimableRun(0, 0, 0)
    recipients, total = _recipients_of(session, ids)
    owed = cumulatives(session, asset_id, recipients)
    for recipient, amount in recipients.items():
        owed[recipient] = owed.get(recipient, 0) + amount
    vouchers = claiming.issuer.issue(token, owed)
    _move(session, ids, vouchers, actor)
    _post_journal(session, ids, asset_id, total)
    return ClaimableRun(len(ids), total, len(recipients))


def _holders(
    session: Session, chain: ChainClient, token: str, asset_id: int, lo: int, hi: int
) -> frozenset[str]:
    """Of the recipients of auto payouts between the thresholds, those already holding the
    token (one batched read): their payouts cost the cheaper gas."""
    band = list(
        session.execute(
            text(
                f"SELECT DISTINCT p.recipient {_SETTLEABLE}"
                f" AND c.settle_mode = '{SettleMode.AUTO}' AND p.amount >= :lo AND p.amount < :hi"
                " ORDER BY p.recipient"
            ),
            {"a": asset_id, "lo": lo, "hi": hi},
        ).scalars()
    )
    if not band:
        return frozenset()
    balances = chain.call_many([(token, codec.balance_of_calldata(r)) for r in band])
    return frozenset(r for r, b in zip(band, balances, strict=True) if int(b or "0x0", 16))


def _lock_claimable(
    session: Session, asset_id: int, existing_from: int, fresh_from: int, holders: frozenset[str]
) -> list[int]:
    """Lock the payouts that go by claim (``ClaimPolicy.settle_by`` as one predicate)."""
    return list(
        session.execute(
            text(
                f"""
                SELECT p.id {_SETTLEABLE}
                   AND (c.settle_mode = '{SettleMode.CLAIM}'
                        OR (c.settle_mode = '{SettleMode.AUTO}'
                            AND (p.amount < :existing_from
                                 OR (p.amount < :fresh_from
                                     AND NOT p.recipient = ANY(:holders)))))
                 ORDER BY p.id FOR UPDATE OF p SKIP LOCKED
                """
            ),
            {
                "a": asset_id,
                "existing_from": existing_from,
                "fresh_from": fresh_from,
                "holders": sorted(holders),
            },
        ).scalars()
    )


def _of(session: Session, ids: Sequence[int], select: str, rest: str = "") -> list[Any]:
    """``select`` over the payouts ``ids`` (``p``, joined to their creator ``c``)."""
    sql = (
        f"{select} FROM payouts p JOIN creators c ON c.id = p.creator_id"
        f" WHERE p.id = ANY(:ids) {rest}"
    )
    return list(session.execute(text(sql), {"ids": list(ids)}).all())


def _candidates(session: Session, ids: Sequence[int]) -> list[Candidate]:
    rows = _of(session, ids, "SELECT p.id, c.marketplace_id, p.creator_id, p.recipient, p.amount")
    return [
        Candidate(r.id, r.marketplace_id, r.creator_id, r.recipient, int(r.amount)) for r in rows
    ]


def _recipients_of(session: Session, ids: Sequence[int]) -> tuple[dict[str, int], int]:
    """What the payouts add per recipient, and in all."""
    rows = _of(session, ids, "SELECT p.recipient, sum(p.amount) AS amount", "GROUP BY 1")
    added = {r.recipient: int(r.amount) for r in rows}
    return added, sum(added.values())


def _move(
    session: Session,
    ids: Sequence[int],
    vouchers: Mapping[str, SignedVoucher],
    actor: str,
) -> None:
    """pending -> claimable, settled by claim, each event with its recipient's voucher."""
    lifecycle.move_rows(
        session,
        lifecycle.PAYOUT,
        PayoutState.PENDING,
        PayoutState.CLAIMABLE,
        rows=f"""
            SELECT p.id, {BY_CLAIM} AS settled_by, now() AS claimable_at, c.settle_mode,
                   jsonb_build_object('voucher', v.voucher) AS voucher
              FROM payouts p JOIN creators c ON c.id = p.creator_id
              JOIN jsonb_each(CAST(:vouchers AS jsonb)) v(recipient, voucher)
                ON v.recipient = p.recipient
             WHERE p.id = ANY(:ids)
        """,
        params={
            "ids": list(ids),
            "vouchers": json.dumps({r: voucher_json(v) for r, v in vouchers.items()}),
        },
        columns=["settled_by", "claimable_at"],
        cause=(
            f"CASE src.settle_mode WHEN '{SettleMode.CLAIM}' THEN 'the creator settles by claim'"
            " ELSE 'worth less than its gas: claimable' END"
        ),
        actor=actor,
        event_sql="src.voucher",
    )


def _post_journal(session: Session, ids: Sequence[int], asset_id: int, total: int) -> None:
    """One journal: Dr payouts in flight (the run's total) = Cr each creator's claimable (per
    payout, so a claim or a reorg can name the payouts it moves)."""
    in_flight = account_id(session, AccountKind.PAYOUTS_IN_FLIGHT, None, asset_id)
    # Its own statement: a CTE's insert is not seen by its siblings.
    session.execute(
        text(
            f"""
            INSERT INTO accounts (kind, owner_id, asset_id)
            SELECT DISTINCT '{AccountKind.CLAIMABLE}', creator_id, asset_id FROM payouts
             WHERE id = ANY(:ids)
            ON CONFLICT DO NOTHING
            """
        ),
        {"ids": list(ids)},
    )
    journal = open_journal(session, JOURNAL_KIND, f"{len(ids)} payouts made claimable")
    session.execute(
        text(
            f"""
            INSERT INTO entries (journal_id, account_id, amount, payout_id)
            SELECT :j, a.id, -p.amount, p.id FROM payouts p
              JOIN accounts a ON a.kind = '{AccountKind.CLAIMABLE}' AND a.owner_id = p.creator_id
               AND a.asset_id = p.asset_id
             WHERE p.id = ANY(:ids)
            UNION ALL SELECT :j, :in_flight, :total, NULL
            """
        ),
        {"ids": list(ids), "j": journal, "in_flight": in_flight, "total": total},
    )
