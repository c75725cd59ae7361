"""Scenario 7: push or claim, a month of skewed earnings settled two ways on anvil.

A month of hourly payouts for synthetic creators whose earnings follow a Pareto law (most earn
cents a day, a few earn dollars an hour), rounded and carried by the roll-up's own rule
(``PayoutRule``), is settled twice on the same kind of chain:

- **push only**: every hour's payouts go out in PayoutBatcher batches from the hot wallet;
- **push or claim**: every payout is put to the settlement's own decision
  (``payouts.settlement.policy.ClaimPolicy.settle_by``, the settings' multiple and gas
  figures) at the scenario's fee; those worth their gas are
  pushed as above, the others become claimable. Once a day the hot wallet tops the
  PayoutClaims escrow up to what is claimable, and a creator submits their latest voucher
  (signed by the claim signer, EIP-712, cumulative) when it pays at least the configured
  multiple of the claim's gas: a rational creator, who leaves cents waiting rather than burn
  them on gas.

Every transaction is real (automine) and its gas is read from its receipt. Value delivered is
what reached creators' addresses; what is still claimable at the month's end has not moved but
is not lost: the ledger keeps its voucher. The floor is the least gas that delivers the same
value to the same addresses at all: one payout to each creator for the whole month, at the EVM
floor of a fresh recipient (``benchmarks.gas.floor_per_payout``), per 1,000 USDC owed.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from pydantic import SecretStr

import devstack
from benchmarks import stack
from benchmarks.gas import floor_per_payout
from benchmarks.report import FLOOR_RATIO, ScenarioResult, Table, Target, fmt_int, fmt_ratio
from payouts.chain import codec
from payouts.chain.client import ChainClient
from payouts.chain.signer import LocalKeySigner
from payouts.chain.vouchers import SignedVoucher, Voucher, sign_voucher
from payouts.ops.deploy import deploy_claims
from payouts.rollup.windows import PayoutRule
from payouts.settlement.policy import (
    WEI_PER_NATIVE,
    ClaimPolicy,
    SettleBy,
    SettleMode,
    claim_policy_for,
    policy_for,
)

CHAIN_ID = 31337
DECIMALS = 6
WHOLE: int = 10**DECIMALS  # base units of one token: "gas per 1,000 tokens delivered"
# The chain the decision is weighed for: a busy L1-like fee and the token's price in gas.
FEE_PER_GAS: int = 2 * 10**9  # wei
UNITS_PER_NATIVE: int = 3_000 * WHOLE  # 1 ETH = 3,000 USDC
CLAIM_MULTIPLE = 10  # a creator claims when the claim pays at least 10x its gas
# Published anchors (airdrop-gas-benchmarks): per claim of a Merkle and a signature airdrop.
PUBLISHED_MERKLE_CLAIM = 51_200
PUBLISHED_SIGNATURE_CLAIM = 53_400
CLAIM_SIGNER_KEY = "0x" + keccak(text="bench-claims-signer").hex()


@dataclass(frozen=True)
class ClaimsSizes:
    creators: int
    hours: int
    seed: int = 15


def creator_address(n: int, mode: str) -> str:
    """Creator ``n``'s address in one mode's run: each run starts from fresh addresses."""
    return to_checksum_address(keccak(text=f"bench-claims-{mode}-creator-{n}")[:20])


def month_of_payouts(sizes: ClaimsSizes, rule: PayoutRule) -> list[list[tuple[int, int]]]:
    """Per hour, the (creator, amount) payouts the roll-up makes: earnings below the minimum
    are carried to the next hour, amounts are rounded down to the rule's unit and the rest
    carried, exactly as ``payouts.rollup`` does (a payout is never below the minimum)."""
    rng = random.Random(sizes.seed)
    # Hourly rate in base units: Pareto with the 80/20 shape; the median creator earns a few
    # cents a day, the best dollars an hour.
    rates = [min(1_250 * rng.paretovariate(1.16), 5_000 * WHOLE) for _ in range(sizes.creators)]
    active = [rng.uniform(0.1, 0.9) for _ in range(sizes.creators)]
    carry = [0] * sizes.creators
    hours: list[list[tuple[int, int]]] = []
    for _ in range(sizes.hours):
        payouts = []
        for creator in range(sizes.creators):
            if rng.random() < active[creator]:
                carry[creator] += int(rates[creator] / active[creator] * rng.uniform(0.5, 1.5))
            if carry[creator] >= rule.min_payout:
                amount = carry[creator] - carry[creator] % rule.rounding_unit
                carry[creator] -= amount
                payouts.append((creator, amount))
        hours.append(payouts)
    return hours


@dataclass
class Ledger:
    """What one settlement mode did, as the ledger would record it."""

    mode: str
    pushed: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    cumulative: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # claimable
    claimed: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    payouts_pushed: int = 0
    payouts_claimable: int = 0
    platform_txs: int = 0
    creator_txs: int = 0
    platform_gas: int = 0
    creator_gas: int = 0
    escrow_funded: int = 0
    claim_gas: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    @property
    def delivered(self) -> int:
        return sum(self.pushed.values()) + sum(self.claimed.values())

    @property
    def unclaimed(self) -> int:
        return sum(self.cumulative.values()) - sum(self.claimed.values())


class Chain:
    """Signs and sends transactions in rounds (automine mines each as it arrives) and reads
    their receipts in one batched request, so a month of transactions takes seconds."""

    def __init__(self, client: ChainClient, deployment: devstack.DevDeployment) -> None:
        self.client = client
        self.deployment = deployment
        self.hot = LocalKeySigner(SecretStr(devstack.DEV_KEYS[1]))
        self.relayer = LocalKeySigner(SecretStr(devstack.DEV_KEYS[2]))
        self.nonces = {
            signer.address: client.nonce(signer.address) for signer in (self.hot, self.relayer)
        }

    def send_round(
        self, txs: Sequence[tuple[LocalKeySigner, str, str, int]], *, must_succeed: bool = True
    ) -> list[dict[str, Any]]:
        raws = []
        for signer, to, data, gas in txs:
            signed = signer.sign(
                {
                    "type": 2,
                    "chainId": CHAIN_ID,
                    "nonce": self.nonces[signer.address],
                    "to": to,
                    "value": 0,
                    "data": data,
                    "gas": gas,
                    "maxFeePerGas": 200 * 10**9,
                    "maxPriorityFeePerGas": 10**9,
                }
            )
            self.nonces[signer.address] += 1
            raws.append(["0x" + signed.raw.hex()])
        if not raws:
            return []
        hashes = self.client.rpc_batch("eth_sendRawTransaction", raws)
        receipts: list[dict[str, Any] | None] = [None] * len(hashes)
        deadline = time.monotonic() + 60
        while any(r is None for r in receipts) and time.monotonic() < deadline:
            missing = [i for i, r in enumerate(receipts) if r is None]
            got = self.client.rpc_batch("eth_getTransactionReceipt", [[hashes[i]] for i in missing])
            for i, receipt in zip(missing, got, strict=True):
                receipts[i] = receipt
        done = [r for r in receipts if r is not None]
        if len(done) != len(hashes):
            raise RuntimeError(f"{len(hashes) - len(done)} transactions were never mined")
        if must_succeed and any(int(r["status"], 16) != 1 for r in done):
            raise RuntimeError("a transaction reverted")
        return done

    def balance(self, holder: str) -> int:
        data = codec.balance_of_calldata(holder)
        return int(self.client.call(self.deployment.token_address, data), 16)


def _batches(
    payouts: list[tuple[int, int]], size: int, first_id: int
) -> list[tuple[int, list[tuple[int, int]]]]:
    return [
        (first_id + i, payouts[start : start + size])
        for i, start in enumerate(range(0, len(payouts), size))
    ]


def push(
    chain: Chain, ledger: Ledger, payouts: list[tuple[int, int]], batch_size: int, first_id: int
) -> int:
    """Pay ``payouts`` in batches from the hot wallet; returns the next free batch id."""
    batches = _batches(payouts, batch_size, first_id)
    txs = []
    for batch_id, batch in batches:
        data = codec.pay_erc20_calldata(
            batch_id,
            chain.deployment.token_address,
            [(creator_address(c, ledger.mode), amount) for c, amount in batch],
        )
        txs.append((chain.hot, chain.deployment.batcher_address, data, 16_000_000))
    for receipt in chain.send_round(txs):
        ledger.platform_gas += int(receipt["gasUsed"], 16)
        ledger.platform_txs += 1
        executed = [
            codec.decode_batch_executed(log)
            for log in receipt["logs"]
            if log["topics"][0] == codec.BATCH_EXECUTED
        ]
        if len(executed) != 1 or executed[0].failed_count:
            raise RuntimeError(f"a batch did not pay every payout: {executed}")
    for creator, amount in payouts:
        ledger.pushed[creator] += amount
    ledger.payouts_pushed += len(payouts)
    return first_id + len(batches)


def claim_cost(gas: int) -> int:
    """What ``gas`` costs in token base units at the scenario's fee (rounded up)."""
    return -(-gas * FEE_PER_GAS * UNITS_PER_NATIVE // WEI_PER_NATIVE)


@dataclass
class Month:
    hours: list[list[tuple[int, int]]]
    batch_size: int
    policy: ClaimPolicy  # the settings' own, with the scenario's price of gas


def push_only(chain: Chain, month: Month) -> Ledger:
    ledger = Ledger("push")
    next_id = 1
    for payouts in month.hours:
        next_id = push(chain, ledger, payouts, month.batch_size, next_id)
    return ledger


def push_or_claim(chain: Chain, month: Month, escrow: str, claim_signer: LocalKeySigner) -> Ledger:
    ledger = Ledger("hybrid")
    next_id = 10**9  # a batch id the push-only run never used: the batcher refuses a repeat
    holders: set[int] = set()
    first_claim: set[int] = set()
    for hour, payouts in enumerate(month.hours):
        pushed = []
        for creator, amount in payouts:
            how = month.policy.settle_by(
                SettleMode.AUTO, amount, FEE_PER_GAS, fresh=creator not in holders
            )
            if how is SettleBy.PUSH:
                pushed.append((creator, amount))
                holders.add(creator)
            else:
                ledger.cumulative[creator] += amount
                ledger.payouts_claimable += 1
        next_id = push(chain, ledger, pushed, month.batch_size, next_id)
        if hour % 24 == 23 or hour == len(month.hours) - 1:
            _end_of_day(chain, ledger, escrow, claim_signer, holders, first_claim)
    return ledger


def _end_of_day(
    chain: Chain,
    ledger: Ledger,
    escrow: str,
    claim_signer: LocalKeySigner,
    holders: set[int],
    first_claim: set[int],
) -> None:
    """Top the escrow up to what is claimable, then let creators claim what is worth it."""
    owed = ledger.unclaimed
    held = ledger.escrow_funded - sum(ledger.claimed.values())
    if owed > held:
        data = (
            "0x"
            + (codec.ERC20_TRANSFER + encode(["address", "uint256"], [escrow, owed - held])).hex()
        )
        receipt = chain.send_round([(chain.hot, chain.deployment.token_address, data, 100_000)])[0]
        ledger.platform_gas += int(receipt["gasUsed"], 16)
        ledger.platform_txs += 1
        ledger.escrow_funded += owed - held
    claims: list[tuple[int, SignedVoucher]] = []
    for creator, cumulative in ledger.cumulative.items():
        waiting = cumulative - ledger.claimed[creator]
        gas = 90_000 if creator not in first_claim else 55_000
        if waiting > 0 and waiting >= CLAIM_MULTIPLE * claim_cost(gas):
            voucher = Voucher(
                CHAIN_ID,
                escrow,
                chain.deployment.token_address,
                creator_address(creator, ledger.mode),
                cumulative,
            )
            claims.append((creator, sign_voucher(claim_signer, voucher)))
    receipts = chain.send_round(
        [(chain.relayer, escrow, signed.claim_calldata(), 150_000) for _, signed in claims]
    )
    for (creator, signed), receipt in zip(claims, receipts, strict=True):
        gas = int(receipt["gasUsed"], 16)
        kind = "first" if creator not in first_claim else "returning"
        kind += ", holder" if creator in holders else ", fresh address"
        ledger.claim_gas[kind].append(gas)
        ledger.creator_gas += gas
        ledger.creator_txs += 1
        ledger.claimed[creator] = signed.voucher.cumulative
        first_claim.add(creator)
        holders.add(creator)


def voucher_pays_once(
    chain: Chain, escrow: str, claim_signer: LocalKeySigner, ledger: Ledger
) -> bool:
    """After the month: the creator with the most left claimable claims it (the escrow holds
    it), then the same voucher is sent again and pays nothing."""
    creator = max(ledger.cumulative, key=lambda c: ledger.cumulative[c] - ledger.claimed[c])
    voucher = Voucher(
        CHAIN_ID, escrow, chain.deployment.token_address, creator_address(creator, ledger.mode),
        ledger.cumulative[creator],
    )  # fmt: skip
    signed = sign_voucher(claim_signer, voucher)
    address = creator_address(creator, ledger.mode)
    before = chain.balance(address)
    calldata = signed.claim_calldata()
    first, again = chain.send_round(
        [(chain.relayer, escrow, calldata, 150_000), (chain.relayer, escrow, calldata, 150_000)],
        must_succeed=False,
    )
    paid = chain.balance(address) - before
    waiting = ledger.cumulative[creator] - ledger.claimed[creator]
    return int(first["status"], 16) == 1 and int(again["status"], 16) == 0 and paid == waiting


def run(servers: stack.Servers, sizes: ClaimsSizes) -> ScenarioResult:
    rule = PayoutRule(min_payout=stack.MIN_PAYOUT, rounding_unit=stack.ROUNDING_UNIT)
    hours = month_of_payouts(sizes, rule)
    with stack.chain(servers) as (anvil, deployment):
        unused = "postgresql+psycopg://unused@127.0.0.1:1/unused"
        env = stack.bench_env(servers, unused, rpc_url=anvil.url, deployment=deployment)
        settings = stack.runtime_for(env).settings
        priced = replace(claim_policy_for(settings, "USDC"), units_per_native=UNITS_PER_NATIVE)
        month = Month(hours, policy_for(settings).max_size, priced)
        client = ChainClient(anvil.url)
        chain = Chain(client, deployment)
        deployer = LocalKeySigner(SecretStr(devstack.DEV_KEYS[0]))
        claim_signer = LocalKeySigner(SecretStr(CLAIM_SIGNER_KEY))
        escrow = deploy_claims(
            client, deployer=deployer, owner=deployer.address, claim_signer=claim_signer.address
        )
        started = time.perf_counter()
        pushed = push_only(chain, month)
        push_seconds = time.perf_counter() - started
        before = {c: chain.balance(creator_address(c, "push")) for c in range(sizes.creators)}
        started = time.perf_counter()
        hybrid = push_or_claim(chain, month, escrow, claim_signer)
        hybrid_seconds = time.perf_counter() - started
        after = {c: chain.balance(creator_address(c, "hybrid")) for c in range(sizes.creators)}
        escrow_balance = chain.balance(escrow)
        replay_refused = voucher_pays_once(chain, escrow, claim_signer, hybrid)
    owed_to: dict[int, int] = defaultdict(int)  # each creator's whole month, summed once
    for payouts in hours:
        for creator, amount in payouts:
            owed_to[creator] += amount
    owed = sum(owed_to.values())
    push_balances_ok = all(before[c] == pushed.pushed.get(c, 0) for c in range(sizes.creators))
    hybrid_balances_ok = all(
        after[c] == hybrid.pushed.get(c, 0) + hybrid.claimed.get(c, 0)
        for c in range(sizes.creators)
    )
    escrow_ok = escrow_balance == hybrid.escrow_funded - sum(hybrid.claimed.values())
    every_cent_once = all(
        hybrid.pushed.get(c, 0) + hybrid.cumulative.get(c, 0) == owed_to.get(c, 0)
        for c in range(sizes.creators)
    )
    rows = []
    results: dict[str, tuple[float, float]] = {}
    # The least gas that delivers the month's whole value: each owed creator paid once, fresh.
    floor = sum(floor_per_payout(creator_address(c, "hybrid"), 10**6, True) for c in owed_to)
    floor_per_thousand = floor * 1_000 * WHOLE / owed
    for name, ledger in (("push only", pushed), ("push or claim", hybrid)):
        delivered = ledger.delivered
        total_gas = ledger.platform_gas + ledger.creator_gas
        per_thousand = total_gas * 1_000 * WHOLE / delivered if delivered else float("inf")
        results[name] = (per_thousand, delivered / owed)
        rows.append(
            [
                name,
                f"{fmt_int(ledger.payouts_pushed)} / {fmt_int(ledger.payouts_claimable)}",
                f"{fmt_int(ledger.platform_txs)} / {fmt_int(ledger.creator_txs)}",
                f"{fmt_int(ledger.platform_gas)} / {fmt_int(ledger.creator_gas)}",
                f"{fmt_int(per_thousand)}",
                f"{fmt_int(floor_per_thousand)}",
                fmt_ratio(per_thousand / floor_per_thousand),
                f"{delivered / owed:.1%}",
                f"{ledger.unclaimed / WHOLE:,.2f}",
            ]
        )
    claim_rows = [
        [
            kind,
            fmt_int(len(gases)),
            fmt_int(min(gases)),
            fmt_int(sum(gases) / len(gases)),
            fmt_int(max(gases)),
        ]
        for kind, gases in sorted(hybrid.claim_gas.items())
    ]
    returning = [
        g for kind, gases in hybrid.claim_gas.items() if kind.startswith("returning") for g in gases
    ]
    returning_mean = sum(returning) / len(returning) if returning else float("nan")
    push_per_k, _ = results["push only"]
    hybrid_per_k, hybrid_moved = results["push or claim"]
    creators_by_value = sorted((owed_to.get(c, 0) for c in range(sizes.creators)), reverse=True)
    top_share = sum(creators_by_value[: max(1, sizes.creators // 100)]) / owed
    median_day = creators_by_value[len(creators_by_value) // 2] * 24 / sizes.hours
    return ScenarioResult(
        key="claims",
        title="7. Push or claim",
        setup=(
            f"{sizes.creators:,} creators over {sizes.hours} hourly windows "
            f"({sizes.hours / 24:.0f} days), earnings Pareto-distributed (shape 1.16; the top 1% "
            f"earn {top_share:.0%} of the value; the median creator {median_day / WHOLE * 100:.1f} "
            "cents a day), "
            f"rolled into {fmt_int(sum(len(h) for h in hours))} payouts worth "
            f"{owed / WHOLE:,.2f} USDC by the roll-up's rule (minimum {stack.MIN_PAYOUT:,}, "
            f"unit {stack.ROUNDING_UNIT}). Decision weighed at {FEE_PER_GAS / 10**9:g} gwei and "
            f"1 ETH = {UNITS_PER_NATIVE // WHOLE:,} USDC: push when a payout is worth "
            f"{month.policy.multiple}x its marginal gas (settings' CLAIM_PUSH_MULTIPLE; "
            f"{month.policy.gas_existing_holder:,} gas for a holder, "
            f"{month.policy.gas_fresh_holder:,} for a fresh address); a creator claims when "
            "the claim pays "
            f"{CLAIM_MULTIPLE}x its gas. Batches of up to {month.batch_size} (settings' "
            "MAX_BATCH_SIZE), one per hour and more when needed; the escrow topped up once a "
            "day; claims sent by a relayer for the creator (the creator's gas). On anvil "
            f"(automine): push only took {push_seconds:.1f} s, push or claim "
            f"{hybrid_seconds:.1f} s. Floor: each creator owed anything paid once for the "
            "whole run, at the EVM floor of a fresh recipient."
        ),
        tables=[
            Table(
                [
                    "mode",
                    "payouts pushed / made claimable",
                    "transactions: platform / creators",
                    "gas: platform / creators",
                    "gas per 1,000 USDC delivered",
                    "floor: one payout per creator in all",
                    FLOOR_RATIO,
                    "value moved",
                    "still claimable (USDC)",
                ],
                rows,
            ),
            Table(
                ["claims (PayoutClaims.claim)", "count", "min gas", "mean gas", "max gas"],
                claim_rows,
            ),
        ],
        targets=[
            Target(
                "gas per claim, returning claimer",
                f"{fmt_int(returning_mean)} gas"
                if returning
                else "no returning claimer in this run",
                f"< {PUBLISHED_SIGNATURE_CLAIM:,} (published signature claim; Merkle "
                f"{PUBLISHED_MERKLE_CLAIM:,})",
                bool(returning) and returning_mean < PUBLISHED_SIGNATURE_CLAIM,
            ),
            Target(
                "push or claim: gas per 1,000 USDC delivered below push only",
                f"{fmt_int(hybrid_per_k)} vs {fmt_int(push_per_k)} "
                f"({fmt_ratio(hybrid_per_k / push_per_k)}), {hybrid_moved:.1%} of value moved",
                "< push only",
                hybrid_per_k < push_per_k,
            ),
        ],
        checks={
            "push only: every address holds exactly what was pushed": push_balances_ok,
            "push or claim: every address got exactly its pushes and claims": hybrid_balances_ok,
            "every payout pushed or claimable, never both": every_cent_once,
            "escrow balance = topped up - claimed": escrow_ok,
            "a voucher pays what is left once; sent again it pays nothing": replay_refused,
        },
        breakdown=[
            f"{name}: {fmt_int(ledger.platform_txs)} platform transactions carrying "
            f"{fmt_int(ledger.payouts_pushed)} pushed payouts "
            f"({ledger.payouts_pushed / max(1, ledger.platform_txs):,.0f} a transaction), "
            f"{fmt_int(ledger.creator_txs)} claims"
            for name, ledger in (("push only", pushed), ("push or claim", hybrid))
        ],
    )
