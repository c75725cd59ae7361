"""Signers of hot-wallet transactions and of EIP-712 typed data, chosen by configuration.

The key lives in a ``SecretStr`` until the moment of signing and is never part of a repr,
a log line or an exception message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from eth_account import Account
from pydantic import SecretStr

from payouts.errors import InvalidInput


@dataclass(frozen=True)
class SignedTx:
    raw: bytes
    tx_hash: str


class Signer(Protocol):
    address: str

    def sign(self, tx: dict[str, Any]) -> SignedTx: ...


class TypedDataSigner(Protocol):
    """Signs EIP-712 typed data (a claim voucher): a key that need not hold gas money."""

    address: str

    def sign_typed_data(self, full_message: dict[str, Any]) -> bytes: ...


class LocalKeySigner:
    """Signs with a private key held in process memory (from PAYOUTS_SIGNER_KEY)."""

    def __init__(self, key: SecretStr) -> None:
        try:
            account = Account.from_key(key.get_secret_value())
        except Exception:  # noqa: BLE001 - any parse error; the key must not be echoed
            raise InvalidInput(
                "PAYOUTS_SIGNER_KEY is not a valid private key", field="signer_key"
            ) from None
        self._key = key
        self.address: str = account.address

    def __repr__(self) -> str:
        return f"LocalKeySigner(address={self.address})"

    def sign(self, tx: dict[str, Any]) -> SignedTx:
        signed = Account.sign_transaction(tx, self._key.get_secret_value())
        return SignedTx(
            raw=bytes(signed.raw_transaction), tx_hash="0x" + signed.hash.hex().removeprefix("0x")
        )

    def sign_typed_data(self, full_message: dict[str, Any]) -> bytes:
        """The 65-byte signature (r, s, v with v in {27, 28}) of an EIP-712 message."""
        signed = Account.sign_typed_data(self._key.get_secret_value(), full_message=full_message)
        return bytes(signed.signature)


def signer_from_settings(key: SecretStr | None) -> LocalKeySigner:
    if key is None:
        raise InvalidInput("PAYOUTS_SIGNER_KEY is not set", field="signer_key", code="no_signer")
    return LocalKeySigner(key)
