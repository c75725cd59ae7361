"""The claims part of ``payouts check``: the ledger's claimable and escrow balances against the
payouts, the claims and the top-ups, and against the escrow on chain.

In the ledger (``LEDGER_CHECKS``, queries returning offending rows, as ``tracking.reports``):
- each creator's claimable account owes exactly their payouts now ``claimable``;
- the escrow account holds the booked top-ups less what the applied claims paid;
- every payout finalized by claim is covered by exactly one claim still on chain.

Against the chain (``chain_checks``), read at the block the reconciler last scanned the escrow
to, so a claim or top-up mined after it is not yet counted on either side:
- the escrow's token balance is the ledger's escrow account: what was put in less what was
  claimed out (so escrow balance + claimed on chain = top-ups = what the ledger booked);
- each address's ``claimed[recipient][token]`` is what the ledger says that address was paid
  by claims (the payouts claimed and finalized by claim), to the base unit.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.chain import codec
from payouts.chain.client import ChainClient
from payouts.claims.onchain import Escrow, calls_at, claimed_calldata
from payouts.ledger.accounts import AccountKind
from payouts.states import PayoutState

BY_CLAIM_DONE = f"({PayoutState.CLAIMED.sql}, {PayoutState.FINALIZED.sql})"

LEDGER_CHECKS: list[tuple[str, str]] = [
    (
        "claimable balances equal the claimable payouts",
        f"""WITH ledger AS (
               SELECT a.owner_id AS creator_id, a.asset_id, -sum(e.amount) AS owed
                 FROM accounts a JOIN entries e ON e.account_id = a.id
                WHERE a.kind = '{AccountKind.CLAIMABLE}' GROUP BY 1, 2),
             open AS (
               SELECT creator_id, asset_id, sum(amount) AS owed FROM payouts
                WHERE state = {PayoutState.CLAIMABLE.sql} GROUP BY 1, 2)
           SELECT * FROM ledger l FULL JOIN open o USING (creator_id, asset_id)
            WHERE coalesce(l.owed, 0) <> coalesce(o.owed, 0)""",
    ),
    (
        "the escrow account holds the top-ups less the claims paid",
        """WITH ledger AS (
               SELECT a.asset_id, sum(e.amount) AS held FROM accounts a
                 JOIN entries e ON e.account_id = a.id
                WHERE a.kind = 'claims_escrow' GROUP BY 1),
             moved AS (
               SELECT asset_id, sum(amount) AS held FROM (
                 SELECT w.asset_id, w.amount FROM wallet_transactions w
                  WHERE w.purpose = 'topup' AND w.journal_id IS NOT NULL AND NOT w.reverted
                 UNION ALL
                 SELECT c.asset_id, -c.paid FROM claims c WHERE c.unwound_at IS NULL
                    AND EXISTS (SELECT 1 FROM claim_payouts cp WHERE cp.claim_id = c.id)) m
                GROUP BY 1)
           SELECT * FROM ledger l FULL JOIN moved m USING (asset_id)
            WHERE coalesce(l.held, 0) <> coalesce(m.held, 0)""",
    ),
    (
        "every payout finalized by claim was paid by exactly one claim on chain",
        f"""SELECT p.id, count(c.id) FROM payouts p
             LEFT JOIN claim_payouts cp ON cp.payout_id = p.id
             LEFT JOIN claims c ON c.id = cp.claim_id AND c.unwound_at IS NULL
            WHERE p.settled_by = 'claim' AND p.state IN {BY_CLAIM_DONE}
            GROUP BY p.id HAVING count(c.id) <> 1""",
    ),
]


def chain_checks(
    session: Session, chain: ChainClient, escrow: Escrow
) -> list[tuple[str, list[str]]]:
    """Each check's name and what offends it (nothing: it holds)."""
    block = session.execute(
        text("SELECT block_number FROM chain_checkpoints WHERE chain_id = :c AND contract = :e"),
        {"c": escrow.chain_id, "e": escrow.address},
    ).scalar()
    if block is None or int(block) < 0:
        return []  # never scanned: nothing on either side to compare yet
    balances = _balances(session, chain, escrow, block)
    claimed = _claimed(session, chain, escrow, block)
    return [
        ("the escrow holds on chain what the ledger says", balances),
        ("each address claimed on chain what the ledger paid it", claimed),
    ]


def _balances(session: Session, chain: ChainClient, escrow: Escrow, block: int) -> list[str]:
    held = {
        int(r.asset_id): int(r.held)
        for r in session.execute(
            text(
                "SELECT a.asset_id, sum(e.amount) AS held FROM accounts a JOIN entries e"
                " ON e.account_id = a.id WHERE a.kind = 'claims_escrow' GROUP BY 1"
            )
        )
    }
    tokens = sorted(escrow.assets.items())
    onchain = calls_at(
        chain, hex(block), [(t, codec.balance_of_calldata(escrow.address)) for t, _ in tokens]
    )
    return [
        f"{token}: chain {balance}, ledger {int(held.get(asset_id, 0))}"
        for (token, asset_id), balance in zip(tokens, onchain, strict=True)
        if balance != int(held.get(asset_id, 0))
    ]


def _claimed(session: Session, chain: ChainClient, escrow: Escrow, block: int) -> list[str]:
    tokens = {asset_id: token for token, asset_id in escrow.assets.items()}
    rows = session.execute(
        text(
            f"""
            SELECT p.recipient, p.asset_id, sum(p.amount) AS paid FROM payouts p
             WHERE p.settled_by = 'claim' AND p.state IN {BY_CLAIM_DONE}
             GROUP BY 1, 2
            UNION
            SELECT DISTINCT c.recipient, c.asset_id, 0 FROM claims c
             WHERE c.chain_id = :c AND c.escrow = :e AND NOT EXISTS (
                   SELECT 1 FROM payouts p WHERE p.recipient = c.recipient
                      AND p.asset_id = c.asset_id AND p.settled_by = 'claim'
                      AND p.state IN {BY_CLAIM_DONE})
            ORDER BY 1, 2
            """
        ),
        {"c": escrow.chain_id, "e": escrow.address},
    ).all()
    rows = [r for r in rows if r.asset_id in tokens]
    calls = [(escrow.address, claimed_calldata(r.recipient, tokens[r.asset_id])) for r in rows]
    onchain = calls_at(chain, hex(block), calls) if calls else []
    return [
        f"{r.recipient} in asset {r.asset_id}: chain {claimed}, ledger {int(r.paid)}"
        for r, claimed in zip(rows, onchain, strict=True)
        if claimed != int(r.paid)
    ]
