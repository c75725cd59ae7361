"""Scenario 3: gas per payout of a PayoutBatcher batch, against transfers and the EVM's floor.

Batches of 1, 10, 100 and the largest size the batch policy allows are paid on anvil
(automine), first to fresh addresses and then again to the same ones, now holders. The
baselines are one plain ERC-20 ``transfer`` transaction per recipient, measured in the same
run, and the floor the gas schedule sets for one payout whatever the contract:

    writing the recipient's balance slot (cold): 22,100 gas from zero (20,000 + 2,100 cold
    read), 5,000 when it already holds tokens (2,900 + 2,100); the Transfer log with three
    topics and one data word: 375 + 3 x 375 + 8 x 32 = 1,756; the payout's 32-byte calldata
    word: 16 gas per non-zero byte, 4 per zero byte.

Gas per payout is the transaction's gasUsed divided by its payouts, so the 21,000 intrinsic
gas and the batch's fixed work are shared out: that is what the hot wallet pays.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from pydantic import SecretStr

import devstack
from benchmarks import stack
from benchmarks.report import FLOOR_RATIO, ScenarioResult, Table, Target, fmt_int, fmt_ratio, met
from benchmarks.seed import amount_of
from payouts.chain import codec
from payouts.chain.client import ChainClient
from payouts.chain.fees import fees_for
from payouts.chain.signer import LocalKeySigner
from payouts.settlement.policy import BatchPolicy, policy_for

FRESH_SLOT_WRITE = 22_100
EXISTING_SLOT_WRITE = 5_000
TRANSFER_LOG = 1_756
TARGET_RATIO = 1.15
PRIORITY_FEE = 10**9
MAX_FEE = 200 * 10**9


def calldata_gas(data: bytes) -> int:
    return sum(16 if byte else 4 for byte in data)


def floor_per_payout(recipient: str, amount: int, fresh: bool) -> int:
    slot = FRESH_SLOT_WRITE if fresh else EXISTING_SLOT_WRITE
    return slot + TRANSFER_LOG + calldata_gas(codec.pack_payout(recipient, amount))


def recipient(n: int) -> str:
    """A fresh, random-looking address (real ones have few zero bytes, which costs calldata)."""
    return to_checksum_address(keccak(text=f"bench-gas-recipient-{n}")[:20])


@dataclass(frozen=True)
class GasSizes:
    batch_sizes: tuple[int, ...]  # the policy's largest is added to these
    transfers: int  # plain transfers measured per kind of recipient


class Wallet:
    """The hot wallet sending one transaction at a time and reading its receipt."""

    def __init__(self, client: ChainClient, deployment: devstack.DevDeployment) -> None:
        self.client = client
        self.deployment = deployment
        self.signer = LocalKeySigner(SecretStr(devstack.DEV_KEYS[1]))
        self.nonce = client.nonce(self.signer.address)

    def send(self, to: str, data: str, gas_limit: int) -> dict[str, Any]:
        head = self.client.block("latest")
        assert head is not None
        fees = fees_for(head.base_fee_per_gas, PRIORITY_FEE, MAX_FEE)
        signed = self.signer.sign(
            {
                "type": 2,
                "chainId": 31337,
                "nonce": self.nonce,
                "to": to,
                "value": 0,
                "data": data,
                "gas": gas_limit,
                "maxFeePerGas": fees.max_fee_per_gas,
                "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
            }
        )
        self.nonce += 1
        self.client.send_raw(signed.raw)
        receipt = None
        deadline = time.monotonic() + 30
        while receipt is None and time.monotonic() < deadline:  # automine: within moments
            receipt = self.client.receipt(signed.tx_hash)
            time.sleep(0 if receipt else 0.01)
        if receipt is None or int(receipt["status"], 16) != 1:
            raise RuntimeError(f"transaction {signed.tx_hash} failed: {receipt}")
        return receipt

    def batch_calldata(self, batch_id: int, payouts: list[tuple[str, int]]) -> str:
        return codec.pay_erc20_calldata(batch_id, self.deployment.token_address, payouts)

    def estimate(self, data: str) -> int:
        return self.client.estimate_gas(self.signer.address, self.deployment.batcher_address, data)

    def pay_batch(
        self, batch_id: int, payouts: list[tuple[str, int]], policy: BatchPolicy
    ) -> tuple[int, str]:
        """Pay a batch; returns its gasUsed and hash after checking every payout was paid."""
        data = self.batch_calldata(batch_id, payouts)
        gas_limit = min(policy.gas_limit(self.estimate(data)), policy.gas_cap)
        receipt = self.send(self.deployment.batcher_address, data, gas_limit)
        executed = [
            codec.decode_batch_executed(log)
            for log in receipt["logs"]
            if log["topics"][0] == codec.BATCH_EXECUTED
        ]
        if len(executed) != 1 or executed[0].failed_count or executed[0].paid_count != len(payouts):
            raise RuntimeError(f"batch {batch_id} did not pay every payout: {executed}")
        return int(receipt["gasUsed"], 16), receipt["transactionHash"]

    def transfer(self, to: str, amount: int) -> int:
        data = "0x" + (codec.ERC20_TRANSFER + encode(["address", "uint256"], [to, amount])).hex()
        receipt = self.send(self.deployment.token_address, data, 100_000)
        return int(receipt["gasUsed"], 16)

    def balance(self, holder: str) -> int:
        return int(
            self.client.call(self.deployment.token_address, codec.balance_of_calldata(holder)), 16
        )


def largest_batch(wallet: Wallet, policy: BatchPolicy, first: int) -> int:
    """The size ``payouts.settlement`` seals for fresh recipients once its model has learnt
    from an estimate: a guess, shrunk while the chain's estimate (plus headroom) passes the
    per-transaction cap, grown while the learnt model says a larger one fits."""
    size = policy.first_guess(policy.max_size)
    tried: set[int] = set()
    while size > 0 and size not in tried:
        tried.add(size)
        payouts = [(recipient(first + i), amount_of(first + i)) for i in range(size)]
        estimate = wallet.estimate(wallet.batch_calldata(2**64 + size, payouts))
        if not policy.fits(estimate):
            size = policy.shrink(size, estimate)
            continue
        policy = policy.learn(size, estimate)
        grown = policy.first_guess(policy.max_size)
        if grown <= size:
            return size
        size = grown
    return max(s for s in tried if s > 0)


_CALLS = {"CALL", "STATICCALL", "DELEGATECALL", "CALLCODE"}


def opcode_profile(client: ChainClient, tx_hash: str) -> dict[tuple[int, str], int]:
    """Gas by (call depth, opcode) of a mined transaction, from anvil's step trace.

    A call's reported cost includes the gas it forwards, so each call is charged only what
    it cost beyond the steps of the frame it opened (depth 1 is the batcher, 2 the token).
    """
    steps = client.rpc(
        "debug_traceTransaction",
        [tx_hash, {"disableStack": True, "disableStorage": True, "enableMemory": False}],
    )["structLogs"]
    spent: dict[tuple[int, str], int] = defaultdict(int)
    for i, step in enumerate(steps):
        depth, op = step["depth"], step["op"]
        if op not in _CALLS:
            spent[(depth, op)] += step["gasCost"]
            continue
        back = next((j for j in range(i + 1, len(steps)) if steps[j]["depth"] <= depth), None)
        if back is None:
            continue
        inside = sum(
            s["gasCost"] for s in steps[i + 1 : back] if s["depth"] == depth + 1
        )  # the callee's own steps (its nested calls are charged the same way)
        spent[(depth, op)] += step["gas"] - steps[back]["gas"] - inside
    return spent


def profile_lines(spent: dict[tuple[int, str], int], payouts: int, floor: float) -> str:
    """Where a payout's gas above the floor goes, per payout, largest first."""
    total = sum(spent.values()) / payouts
    ranked = sorted(spent.items(), key=lambda kv: kv[1], reverse=True)
    lines = [
        f"{'batcher' if depth == 1 else 'token'} `{op}` {gas / payouts:,.0f}"
        for (depth, op), gas in ranked[:10]
    ]
    return (
        f"execution gas per payout {total:,.0f} (the floor's execution part: {floor:,.0f}); "
        "by frame and opcode: " + ", ".join(lines)
    )


@dataclass(frozen=True)
class Measured:
    size: int
    fresh: float  # gas per payout
    existing: float
    floor_fresh: float
    floor_existing: float


def run(servers: stack.Servers, sizes: GasSizes) -> ScenarioResult:
    # Steps tracing changes no gas; it lets debug_traceTransaction say where the gas went.
    with stack.chain(servers, extra_args=["--steps-tracing"]) as (anvil, deployment):
        # No database is opened here; the settings still want a well-formed URL.
        unused = "postgresql+psycopg://unused@127.0.0.1:1/unused"
        env = stack.bench_env(servers, unused, rpc_url=anvil.url, deployment=deployment)
        policy = policy_for(stack.runtime_for(env).settings)
        wallet = Wallet(ChainClient(anvil.url), deployment)
        next_recipient = 0
        largest = largest_batch(wallet, policy, 10**6)
        measured: list[Measured] = []
        paid: dict[str, int] = {}
        for size in sorted({*sizes.batch_sizes, largest}):
            payouts = [
                (recipient(next_recipient + i), amount_of(next_recipient + i)) for i in range(size)
            ]
            next_recipient += size
            fresh, fresh_tx = wallet.pay_batch(2 * size, payouts, policy)
            existing, existing_tx = wallet.pay_batch(2 * size + 1, payouts, policy)
            if size == largest:
                profiles = {
                    "fresh": opcode_profile(wallet.client, fresh_tx),
                    "existing": opcode_profile(wallet.client, existing_tx),
                }
            for address, amount in payouts:
                paid[address] = paid.get(address, 0) + 2 * amount
            measured.append(
                Measured(
                    size,
                    fresh / size,
                    existing / size,
                    sum(floor_per_payout(a, v, True) for a, v in payouts) / size,
                    sum(floor_per_payout(a, v, False) for a, v in payouts) / size,
                )
            )
        targets = [(recipient(next_recipient + i), amount_of(i)) for i in range(sizes.transfers)]
        transfer_fresh = [wallet.transfer(a, v) for a, v in targets]
        transfer_existing = [wallet.transfer(a, v) for a, v in targets]
        for address, amount in targets:
            paid[address] = 2 * amount
        balances_ok = all(wallet.balance(a) == v for a, v in paid.items())
    top = next(m for m in measured if m.size == largest)
    breakdown = [
        f"{kind} holders, batch of {largest} (anvil's step trace): "
        + profile_lines(profiles[kind], largest, slot + TRANSFER_LOG)
        for kind, slot in (("fresh", FRESH_SLOT_WRITE), ("existing", EXISTING_SLOT_WRITE))
    ]

    plain = {
        "fresh": sum(transfer_fresh) / len(transfer_fresh),
        "existing": sum(transfer_existing) / len(transfer_existing),
    }
    rows = []
    for m in measured:
        for kind, gas, floor in (
            ("fresh", m.fresh, m.floor_fresh),
            ("existing", m.existing, m.floor_existing),
        ):
            judged = m.size == largest
            rows.append(
                [
                    f"{kind} holders",
                    f"{m.size}" + (" (policy's largest)" if judged else ""),
                    fmt_int(gas),
                    fmt_int(plain[kind]),
                    fmt_ratio(gas / plain[kind]),
                    fmt_int(floor),
                    fmt_ratio(gas / floor),
                    f"≤ {TARGET_RATIO}x floor" if judged else "—",
                    met(gas / floor <= TARGET_RATIO) if judged else "—",
                ]
            )
    return ScenarioResult(
        breakdown=breakdown,
        key="gas",
        title="3. Gas per payout",
        setup=(
            "TestToken (6 decimals) and PayoutBatcher on anvil (automine, default hardfork, "
            "`--steps-tracing`); "
            "`payERC20` from the hot wallet, gas limit as `payouts.submission.lane` sets it. "
            f"Baseline: {sizes.transfers} plain `transfer` transactions per kind of recipient. "
            f"The policy's largest batch is {largest} (settings' defaults: "
            f"MAX_BATCH_SIZE {policy.max_size}, gas cap {policy.gas_cap:,}, "
            f"{policy.headroom_percent}% headroom), found as settlement finds it: first guess, "
            "then shrunk by `eth_estimateGas`. Floor per payout: recipient's balance slot "
            "22,100 (fresh) or 5,000 (holder) + Transfer log 1,756 + its calldata word."
        ),
        tables=[
            Table(
                [
                    "recipients",
                    "batch size",
                    "gas per payout",
                    "one transfer each",
                    "ratio (payout ÷ transfer)",
                    "EVM floor",
                    FLOOR_RATIO,
                    "target",
                    "met",
                ],
                rows,
            )
        ],
        targets=[
            Target(
                f"gas per payout, {kind} holders, batch of {largest}",
                f"{fmt_ratio(gas / floor)} floor ({fmt_int(gas)} gas)",
                f"≤ {TARGET_RATIO}x floor",
                gas / floor <= TARGET_RATIO,
                of_floor=gas / floor,
            )
            for kind, gas, floor in (
                ("fresh", top.fresh, top.floor_fresh),
                ("existing", top.existing, top.floor_existing),
            )
        ],
        checks={
            "every batch paid every payout (BatchExecuted)": True,  # pay_batch raises otherwise
            "recipients' on-chain balances equal what was paid": balances_ok,
        },
    )
