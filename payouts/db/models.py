"""Tables of the ledger and of the payout pipeline (SQLAlchemy 2 typed models, PostgreSQL).

Amounts are ``numeric(78,0)`` (any uint256) and come back as ``int``. Rows that record money
movements (journals, entries, transitions) are append-only; PostgreSQL enforces it with
triggers installed by the migrations.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, UserDefinedType

from payouts.states import (
    BatchState,
    CreatorState,
    CreditState,
    ExceptionState,
    HoldState,
    PayoutState,
    TxAttemptState,
)


class BaseUnitsType(TypeDecorator[int]):
    """numeric(78,0) in the database, ``int`` in Python: never a Decimal or float in between."""

    impl = Numeric(78, 0)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Any) -> int | None:
        if value is not None and not isinstance(value, int):
            raise TypeError(f"amounts are int base units, got {type(value).__name__}")
        return value

    def process_result_value(self, value: Decimal | None, dialect: Any) -> int | None:
        return None if value is None else int(value)


class _Xid8(UserDefinedType[int]):
    """A transaction id with its epoch (``xid8``)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


class Base(DeclarativeBase):
    type_annotation_map = {int: BigInteger, datetime: DateTime(timezone=True)}


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Asset(Base):
    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("chain_id", "address", postgresql_nulls_not_distinct=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), unique=True)
    chain_id: Mapped[int]
    address: Mapped[str | None] = mapped_column(String(42))
    decimals: Mapped[int] = mapped_column(Integer)


class Marketplace(Base):
    __tablename__ = "marketplaces"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    api_key_hash: Mapped[str | None] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = _now()


class Creator(Base):
    __tablename__ = "creators"
    __table_args__ = (UniqueConstraint("marketplace_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    marketplace_id: Mapped[int] = mapped_column(ForeignKey("marketplaces.id"))
    external_id: Mapped[str] = mapped_column(String(255))
    payout_address: Mapped[str | None] = mapped_column(String(42))
    hold_until: Mapped[datetime | None]
    # Held while an operator must look at the creator (a token refused their address).
    state: Mapped[str] = mapped_column(String(16), server_default=CreatorState.ACTIVE.value)
    held_reason: Mapped[str | None] = mapped_column(Text)
    # push, claim, or auto (the settlement policy decides by the gas a push would cost).
    settle_mode: Mapped[str] = mapped_column(Text, server_default="auto")
    created_at: Mapped[datetime] = _now()


class Account(Base):
    """A ledger account keyed by (kind, owner, asset); the owner is a creator or marketplace."""

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("kind", "owner_id", "asset_id", postgresql_nulls_not_distinct=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    owner_id: Mapped[int | None]
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))


class AccountBalance(Base):
    """The balance of a carry account, moved by every statement that posts to it."""

    __tablename__ = "account_balances"

    # No foreign key (see migration 0013): written only by statements that joined the account.
    account_id: Mapped[int] = mapped_column(primary_key=True)
    balance: Mapped[int] = mapped_column(BaseUnitsType)


class Journal(Base):
    """One business event in the ledger; its entries sum to zero per asset (checked at commit)."""

    __tablename__ = "journals"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    cause: Mapped[str] = mapped_column(Text)
    created_txid: Mapped[int] = mapped_column(server_default=text("txid_current()"))
    created_at: Mapped[datetime] = _now()


class Entry(Base):
    __tablename__ = "entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="entry_amount_nonzero"),
        Index("entries_account_idx", "account_id"),
        Index("entries_journal_idx", "journal_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    journal_id: Mapped[int] = mapped_column(ForeignKey("journals.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    # Positive is a debit, negative a credit; a journal's entries sum to zero per asset.
    amount: Mapped[int] = mapped_column(BaseUnitsType)
    credit_id: Mapped[int | None]
    payout_id: Mapped[int | None]


class Credit(Base):
    """One earning a marketplace sent us for one creator."""

    __tablename__ = "credits"
    __table_args__ = (
        UniqueConstraint("marketplace_id", "idempotency_key"),
        CheckConstraint("amount > 0", name="credit_amount_positive"),
        Index("credits_claim_idx", "creator_id", "asset_id", "created_xid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    marketplace_id: Mapped[int] = mapped_column(ForeignKey("marketplaces.id"))
    creator_id: Mapped[int] = mapped_column(ForeignKey("creators.id"))
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    amount: Mapped[int] = mapped_column(BaseUnitsType)
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str | None] = mapped_column(String(255))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime] = _now()
    # What it is recorded as, never changed (a CHECK says so): its state is ``credit_states``.
    state: Mapped[str] = mapped_column(String(16), server_default=CreditState.ACCRUED.value)
    journal_id: Mapped[int] = mapped_column(ForeignKey("journals.id"))
    # The inserting transaction (xid8): the roll-up run that claims the credit is the one
    # whose range holds it.
    created_xid: Mapped[int] = mapped_column(_Xid8(), server_default=text("pg_current_xact_id()"))


class RollupRun(Base):
    """Marks a window as rolled up; its unique key is what makes the roll-up exactly-once.
    It claimed the credits inserted by transactions ``xid_from`` <= id < ``xid_to``."""

    __tablename__ = "rollup_runs"
    __table_args__ = (Index("rollup_runs_xid_idx", "xid_to"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    window_start: Mapped[datetime] = mapped_column(unique=True)
    window_end: Mapped[datetime]
    xid_from: Mapped[int] = mapped_column(_Xid8())
    xid_to: Mapped[int] = mapped_column(_Xid8())
    actor: Mapped[str] = mapped_column(String(64))
    payout_count: Mapped[int] = mapped_column(server_default="0")
    credit_count: Mapped[int] = mapped_column(server_default="0")
    created_at: Mapped[datetime] = _now()


class Payout(Base):
    """What one creator is owed in one asset for one window."""

    __tablename__ = "payouts"
    __table_args__ = (
        UniqueConstraint("creator_id", "asset_id", "window_start"),
        CheckConstraint("amount > 0", name="payout_amount_positive"),
        Index("payouts_state_idx", "state", "asset_id"),
        Index("payouts_batch_idx", "batch_id"),
        Index("payouts_rollup_run_idx", "rollup_run_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    creator_id: Mapped[int] = mapped_column(ForeignKey("creators.id"))
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    amount: Mapped[int] = mapped_column(BaseUnitsType)
    recipient: Mapped[str] = mapped_column(String(42))
    window_start: Mapped[datetime]
    rollup_run_id: Mapped[int] = mapped_column(ForeignKey("rollup_runs.id"))
    state: Mapped[str] = mapped_column(String(16), server_default=PayoutState.PENDING.value)
    # The one live batch this payout is in; NULL while pending.
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))
    # push (in a batch) or claim (through the escrow), once settlement chose; claim is for good.
    settled_by: Mapped[str | None] = mapped_column(Text)
    # When it became claimable: the risk limits count it as a payout out from then.
    claimable_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now()


class Batch(Base):
    """Payouts paid together in one on-chain transaction (one nonce, many fee attempts)."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The id the contract sees; random so that ids never collide across databases.
    public_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    chain_id: Mapped[int]
    payer: Mapped[str] = mapped_column(String(42))
    state: Mapped[str] = mapped_column(String(16), server_default=BatchState.OPEN.value)
    item_count: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(BaseUnitsType)
    gas_estimate: Mapped[int | None]
    nonce: Mapped[int | None]
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None]
    block_hash: Mapped[str | None] = mapped_column(String(66))
    gas_used: Mapped[int | None]
    effective_gas_price: Mapped[int | None] = mapped_column(BaseUnitsType)
    finality_depth: Mapped[int | None]
    submit_tier: Mapped[int] = mapped_column(Integer, server_default="0")
    retry_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    parked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now()


class BatchItem(Base):
    """What a batch was sealed with, position by position; never changes after sealing."""

    __tablename__ = "batch_items"
    __table_args__ = (UniqueConstraint("batch_id", "payout_id"),)

    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"))
    recipient: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(BaseUnitsType)


class TxAttempt(Base):
    """One signed transaction for a batch. Stored before it is broadcast, so it can be resent."""

    __tablename__ = "tx_attempts"
    __table_args__ = (Index("tx_attempts_batch_idx", "batch_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    chain_id: Mapped[int]
    sender: Mapped[str] = mapped_column(String(42))
    nonce: Mapped[int]
    tx_hash: Mapped[str] = mapped_column(String(66), unique=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    gas_limit: Mapped[int]
    max_fee_per_gas: Mapped[int] = mapped_column(BaseUnitsType)
    max_priority_fee_per_gas: Mapped[int] = mapped_column(BaseUnitsType)
    state: Mapped[str] = mapped_column(String(16), server_default=TxAttemptState.SIGNED.value)
    sent_block: Mapped[int | None]
    sent_at: Mapped[datetime | None]
    broadcasts: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = _now()


class NonceLane(Base):
    """The next nonce of one hot wallet on one chain; its row lock serialises signers."""

    __tablename__ = "nonce_lanes"

    chain_id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    next_nonce: Mapped[int]


class ChainCheckpoint(Base):
    """The last block whose logs the reconciler has read for one contract."""

    __tablename__ = "chain_checkpoints"

    chain_id: Mapped[int] = mapped_column(primary_key=True)
    contract: Mapped[str] = mapped_column(String(42), primary_key=True)
    block_number: Mapped[int]


class OnchainTransfer(Base):
    """A payout as the chain reported it in one block, matched to its batch position.

    A reorg can put the same transaction in another block; each inclusion keeps its rows and
    readers take those of the batch's current block."""

    __tablename__ = "onchain_transfers"
    __table_args__ = (
        UniqueConstraint("block_hash", "tx_hash", "log_index"),
        Index("onchain_transfers_batch_idx", "batch_id"),
        Index("onchain_transfers_payout_idx", "payout_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    position: Mapped[int] = mapped_column(Integer)
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"))
    recipient: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(BaseUnitsType)
    tx_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int]
    block_number: Mapped[int]
    block_hash: Mapped[str] = mapped_column(String(66))
    succeeded: Mapped[bool] = mapped_column(Boolean)


class OrphanedInclusion(Base):
    """An inclusion (a batch's transaction in one block) that a reorg took off the chain.

    Written by the reconciler's unwind; append-only. Readers count the transfers of canonical
    inclusions only: those not recorded here, and the one its batch stands in now (a block
    that comes back is taken back by the scan)."""

    __tablename__ = "orphaned_inclusions"
    __table_args__ = (Index("orphaned_inclusions_batch_idx", "batch_id"),)

    block_hash: Mapped[str] = mapped_column(String(66), primary_key=True)
    tx_hash: Mapped[str] = mapped_column(String(66), primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    block_number: Mapped[int]
    # The audit row of the batch's move back to broadcast; the batch landed again after it.
    unwound_by: Mapped[int | None] = mapped_column(ForeignKey("transitions.id"))
    seen_at: Mapped[datetime] = _now()


class ReconException(Base):
    """Something the reconciler could not match, kept with its evidence for an operator."""

    __tablename__ = "exceptions"
    __table_args__ = (UniqueConstraint("kind", "dedupe_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(48))
    dedupe_key: Mapped[str] = mapped_column(String(200))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"))
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(String(16), server_default=ExceptionState.OPEN.value)
    resolution: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    resolved_at: Mapped[datetime | None]


class Hold(Base):
    """A payout, or a creator and so all their payouts, kept out of batches (payouts.holds)."""

    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(primary_key=True)
    creator_id: Mapped[int] = mapped_column(ForeignKey("creators.id"))
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"))
    rule: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    figures: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    placed_by: Mapped[str] = mapped_column(String(64))
    placed_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16), server_default=HoldState.ACTIVE.value)
    ended_by: Mapped[str | None] = mapped_column(String(64))
    ended_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(Text)


class Transition(Base):
    """Audit trail: one row per state change, written in the same transaction as the change."""

    __tablename__ = "transitions"
    __table_args__ = (Index("transitions_entity_idx", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entity: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[int]
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    cause: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = _now()
