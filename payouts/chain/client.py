"""A thin JSON-RPC client over web3's HTTP provider, with our errors and short retries.

Upstream errors are mapped here and nowhere else:
- connection refused, timeouts, 5xx, node busy  -> ``TransientChainError`` (retried a few times
  with tenacity, then raised for the task layer's staggered retries);
- an RPC error answer (revert, nonce too low, underpriced) -> ``PermanentChainError`` with the
  node's message and code, so callers can classify it as a race or a bug.
Nothing from ``requests`` or ``web3`` leaks past this module.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import requests
from prometheus_client import Counter
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from web3 import Web3
from web3.exceptions import Web3Exception

from payouts.chain.breaker import CircuitBreaker
from payouts.errors import CircuitOpen, PermanentChainError, TransientChainError

# Every attempt counts, retries included: what the node went through, not what callers saw.
RPC_REQUESTS = Counter(
    "payouts_rpc_requests", "JSON-RPC requests sent to the node (a batch counts once)", ["method"]
)
RPC_ERRORS = Counter(
    "payouts_rpc_errors",
    "JSON-RPC calls that failed: node unavailable, an error answer, or refused by the open circuit",
    ["method", "kind"],
)


class RpcError(PermanentChainError):
    """The node answered with a JSON-RPC error."""

    def __init__(self, method: str, code: int | None, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.rpc_code = code
        self.rpc_message = message
        self.data = data


@dataclass(frozen=True)
class Block:
    number: int
    hash: str
    base_fee_per_gas: int
    gas_limit: int
    timestamp: int


# Nodes cap the calls in one JSON-RPC batch (many public ones at 100); a few round trips
# more are nothing beside one per block.
MAX_BATCH_CALLS = 100


def _hex_int(value: str | int) -> int:
    return value if isinstance(value, int) else int(value, 16)


def _block(raw: dict[str, Any] | None) -> Block | None:
    if raw is None:
        return None
    return Block(
        number=_hex_int(raw["number"]),
        hash=raw["hash"],
        base_fee_per_gas=_hex_int(raw.get("baseFeePerGas", "0x0")),
        gas_limit=_hex_int(raw["gasLimit"]),
        timestamp=_hex_int(raw["timestamp"]),
    )


@contextmanager
def collector_off() -> Iterator[None]:
    """Python's cyclic garbage collector paused for the block (unless it was off already).

    Decoding a batch of receipts makes millions of dicts, lists and strings that all survive,
    so the collector runs full passes over a growing heap while finding no cycle (parsed JSON
    has none): 0.25 of the 1.1 s the reconciler spent fetching the receipts of 100,000
    payouts (``scripts/bench``). Process-wide, so threads decoding meanwhile skip it too;
    whoever turned it off last turns it back on.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _worth_retrying(exc: BaseException) -> bool:
    return isinstance(exc, TransientChainError) and not isinstance(exc, CircuitOpen)


class ChainClient:
    def __init__(
        self, rpc_url: str, *, timeout: float = 10.0, breaker: CircuitBreaker | None = None
    ) -> None:
        self.rpc_url = rpc_url
        self.breaker = breaker
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))

    def __repr__(self) -> str:
        return f"ChainClient({self.rpc_url!r})"

    @retry(
        retry=retry_if_exception(_worth_retrying),
        stop=stop_after_attempt(3),
        wait=wait_exponential_jitter(multiplier=0.2, max=2.0),
        reraise=True,
    )
    def rpc(self, method: str, params: list[Any]) -> Any:
        [answer] = self._guarded(method, lambda: [self._request(method, params)])
        return _result(method, answer)

    @retry(
        retry=retry_if_exception(_worth_retrying),
        stop=stop_after_attempt(3),
        wait=wait_exponential_jitter(multiplier=0.2, max=2.0),
        reraise=True,
    )
    def rpc_batch(self, method: str, many_params: list[list[Any]]) -> list[Any]:
        """The same method with many parameter lists in one JSON-RPC batch (one round trip);
        results in order. An error answer to any of them raises ``RpcError``."""
        if not many_params:
            return []
        answers = self._guarded(method, lambda: self._batch(method, many_params))
        if len(answers) != len(many_params):  # the node refused the batch as a whole
            return [_result(method, answers[0])]
        # web3 numbers the requests of a batch in order; answers may come in any order.
        ordered = sorted(answers, key=lambda a: int(a.get("id", 0)))
        return [_result(method, a) for a in ordered]

    def _guarded(
        self, method: str, send: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            RPC_ERRORS.labels(method, "circuit_open").inc()
            raise CircuitOpen(f"{method}: node failed repeatedly; calls paused (circuit open)")
        RPC_REQUESTS.labels(method).inc()
        try:
            answers = send()
        except TransientChainError:
            RPC_ERRORS.labels(method, "unavailable").inc()
            if breaker is not None:
                breaker.failed()
            raise
        if breaker is not None:
            breaker.succeeded()
        return answers

    def _batch(self, method: str, many_params: list[list[Any]]) -> list[dict[str, Any]]:
        calls = [(cast(Any, method), params) for params in many_params]
        try:
            with collector_off():
                answers = self.w3.provider.make_batch_request(calls)  # type: ignore[attr-defined]
        except (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError) as exc:
            raise TransientChainError(f"{method}: node unreachable ({type(exc).__name__})") from exc
        except requests.HTTPError as exc:
            raise TransientChainError(f"{method}: HTTP error from node") from exc
        except Web3Exception as exc:
            raise TransientChainError(f"{method}: {type(exc).__name__}") from exc
        if not isinstance(answers, list):  # the node refused the batch as a whole
            return [cast(dict[str, Any], answers)]
        return [cast(dict[str, Any], a) for a in answers]

    def _request(self, method: str, params: list[Any]) -> dict[str, Any]:
        try:
            return cast(dict[str, Any], self.w3.provider.make_request(cast(Any, method), params))
        except (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError) as exc:
            raise TransientChainError(f"{method}: node unreachable ({type(exc).__name__})") from exc
        except requests.HTTPError as exc:
            raise TransientChainError(f"{method}: HTTP error from node") from exc
        except Web3Exception as exc:
            raise TransientChainError(f"{method}: {type(exc).__name__}") from exc

    # Reads -------------------------------------------------------------------------------
    def chain_id(self) -> int:
        return _hex_int(self.rpc("eth_chainId", []))

    def block_number(self) -> int:
        return _hex_int(self.rpc("eth_blockNumber", []))

    def block(self, number: int | str = "latest") -> Block | None:
        tag = hex(number) if isinstance(number, int) else number
        return _block(self.rpc("eth_getBlockByNumber", [tag, False]))

    def blocks(self, numbers: Iterable[int]) -> dict[int, Block | None]:
        """The headers of many blocks, in JSON-RPC batches (None: the node has no such
        block)."""
        wanted = sorted(set(numbers))
        raws = self._in_batches("eth_getBlockByNumber", [[hex(n), False] for n in wanted])
        return {n: _block(raw) for n, raw in zip(wanted, raws, strict=True)}

    def receipts_of_blocks(self, numbers: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
        """Every receipt of many blocks, in JSON-RPC batches of ``eth_getBlockReceipts``."""
        wanted = sorted(set(numbers))
        raws = self._in_batches("eth_getBlockReceipts", [[hex(n)] for n in wanted])
        return {
            n: cast(list[dict[str, Any]], raw or []) for n, raw in zip(wanted, raws, strict=True)
        }

    def receipts(self, tx_hashes: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """The receipts of many transactions, in JSON-RPC batches of
        ``eth_getTransactionReceipt`` (None: the node has not mined it)."""
        wanted = sorted(set(tx_hashes))
        raws = self._in_batches("eth_getTransactionReceipt", [[h] for h in wanted])
        return {h: cast(dict[str, Any] | None, raw) for h, raw in zip(wanted, raws, strict=True)}

    def _in_batches(self, method: str, many_params: list[list[Any]]) -> list[Any]:
        results: list[Any] = []
        for start in range(0, len(many_params), MAX_BATCH_CALLS):
            chunk = many_params[start : start + MAX_BATCH_CALLS]
            answers = self.rpc_batch(method, chunk)
            if len(answers) != len(chunk):  # refused as a whole: rpc_batch raised unless so
                raise RpcError(method, None, "the node refused the batch of calls")
            results.extend(answers)
        return results

    def nonce(self, address: str, tag: str = "pending") -> int:
        return _hex_int(self.rpc("eth_getTransactionCount", [address, tag]))

    def balance(self, address: str) -> int:
        return _hex_int(self.rpc("eth_getBalance", [address, "latest"]))

    def call_many(self, calls: list[tuple[str, str]]) -> list[str]:
        """``eth_call`` of each (to, data) at the latest block, all in one JSON-RPC batch."""
        return [
            cast(str, r)
            for r in self.rpc_batch(
                "eth_call", [[{"to": to, "data": d}, "latest"] for to, d in calls]
            )
        ]

    def call(self, to: str, data: str, sender: str | None = None) -> str:
        tx: dict[str, Any] = {"to": to, "data": data}
        if sender:
            tx["from"] = sender
        return cast(str, self.rpc("eth_call", [tx, "latest"]))

    def estimate_gas(self, sender: str, to: str, data: str, value: int = 0) -> int:
        tx = {"from": sender, "to": to, "data": data, "value": hex(value)}
        return _hex_int(self.rpc("eth_estimateGas", [tx]))

    def max_priority_fee(self) -> int:
        return _hex_int(self.rpc("eth_maxPriorityFeePerGas", []))

    def logs(
        self, address: str | list[str], topics: list[Any], from_block: int, to_block: int
    ) -> list[dict[str, Any]]:
        """Raw logs (hex strings, undecoded): decoding with eth_abi is much faster than web3's."""
        params = {
            "address": address,
            "topics": topics,
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block),
        }
        return cast(list[dict[str, Any]], self.rpc("eth_getLogs", [params]))

    def transaction(self, tx_hash: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, self.rpc("eth_getTransactionByHash", [tx_hash]))

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, self.rpc("eth_getTransactionReceipt", [tx_hash]))

    # Writes ------------------------------------------------------------------------------
    def send_raw(self, raw: bytes) -> str:
        return cast(str, self.rpc("eth_sendRawTransaction", ["0x" + raw.hex()]))


def _result(method: str, answer: dict[str, Any]) -> Any:
    error = answer.get("error")
    if error:
        RPC_ERRORS.labels(method, "error_answer").inc()
        if isinstance(error, dict):
            raise RpcError(method, error.get("code"), str(error.get("message")), error.get("data"))
        raise RpcError(method, None, str(error))
    return answer.get("result")
