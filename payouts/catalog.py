"""Reference rows: the configured assets, marketplaces and creators with payout addresses."""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from eth_utils.address import is_address, is_checksum_address, to_checksum_address
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from payouts import lifecycle
from payouts.db import models
from payouts.errors import InvalidInput, NotFound
from payouts.money import Asset

NATIVE_SYMBOL = "ETH"


def ensure_assets(session: Session, assets: Iterable[Asset]) -> dict[str, int]:
    """Make the asset table match the configuration; refuse to redefine an existing symbol."""
    ids: dict[str, int] = {}
    for asset in assets:
        session.execute(
            insert(models.Asset)
            .values(
                symbol=asset.symbol,
                decimals=asset.decimals,
                chain_id=asset.chain_id,
                address=asset.address,
            )
            .on_conflict_do_nothing()
        )
        row = session.execute(
            select(models.Asset).where(models.Asset.symbol == asset.symbol)
        ).scalar_one()
        if (row.decimals, row.chain_id, row.address) != (
            asset.decimals,
            asset.chain_id,
            asset.address,
        ):
            raise InvalidInput(
                f"asset {asset.symbol} is already defined as chain {row.chain_id} "
                f"address {row.address} with {row.decimals} decimals",
                field="assets",
                code="asset_redefined",
            )
        ids[asset.symbol] = row.id
    return ids


def asset_ids(session: Session) -> dict[str, int]:
    return {s: i for s, i in session.execute(select(models.Asset.symbol, models.Asset.id)).all()}


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class NewMarketplace:
    id: int
    name: str
    api_key: str  # shown once; only its hash is stored


MAX_MARKETPLACE_NAME = 200  # the column's length
# Control characters (C0, DEL, C1) and the line and paragraph separators: a name with one
# of them would garble every line it is printed on.
_CONTROL = frozenset({"Cc", "Zl", "Zp"})


def create_marketplace(session: Session, name: str) -> NewMarketplace:
    if any(unicodedata.category(c) in _CONTROL for c in name):
        raise InvalidInput(
            f"marketplace name must not contain control characters: {name!r}",
            field="name",
            code="invalid_name",
        )
    name = name.strip()
    if not name:
        raise InvalidInput("marketplace name must not be empty", field="name")
    if len(name) > MAX_MARKETPLACE_NAME:
        raise InvalidInput(
            f"marketplace name must be at most {MAX_MARKETPLACE_NAME} characters",
            field="name",
            code="invalid_name",
        )
    existing = session.execute(
        select(models.Marketplace.id).where(models.Marketplace.name == name)
    ).scalar()
    if existing is not None:
        raise InvalidInput(f"marketplace {name!r} exists", field="name", code="already_exists")
    api_key = "pk_" + secrets.token_urlsafe(32)
    row = models.Marketplace(name=name, api_key_hash=hash_api_key(api_key))
    session.add(row)
    session.flush()
    return NewMarketplace(row.id, name, api_key)


def marketplace_for_key(session: Session, api_key: str) -> int | None:
    return session.execute(
        select(models.Marketplace.id).where(
            models.Marketplace.api_key_hash == hash_api_key(api_key)
        )
    ).scalar()


def marketplace_by_name(session: Session, name: str) -> int | None:
    return session.execute(
        select(models.Marketplace.id).where(models.Marketplace.name == name)
    ).scalar()


def ensure_marketplace(session: Session, name: str) -> int:
    """The id of a marketplace by name, created without an API key if missing (demo, tests)."""
    session.execute(insert(models.Marketplace).values(name=name).on_conflict_do_nothing())
    return int(
        session.execute(
            select(models.Marketplace.id).where(models.Marketplace.name == name)
        ).scalar_one()
    )


# The zero address burns what it is sent, and the precompiles and system contracts live at
# the lowest addresses (0x01..0x11 today, more with each fork): none of them is anybody's wallet.
HIGHEST_RESERVED_ADDRESS = 0xFFFF


def checked_address(value: str, *, field: str = "payout_address") -> str:
    """Accept only an EIP-55 checksummed address (or all-lowercase hex, which has no checksum)
    that can be a wallet: not the zero address, not a precompile (<= 0xffff)."""
    if not isinstance(value, str) or not value.startswith("0x") or not is_address(value):
        raise InvalidInput("not an Ethereum address", field=field, code="invalid_address")
    if int(value, 16) <= HIGHEST_RESERVED_ADDRESS:
        raise InvalidInput(
            "the zero address and precompiles (0x0...0 to 0x0...ffff) cannot be paid",
            field=field,
            code="invalid_address",
        )
    if value != value.lower() and not is_checksum_address(value):
        raise InvalidInput(
            "address checksum (EIP-55) does not match", field=field, code="invalid_checksum"
        )
    return to_checksum_address(value)


def ensure_creators(
    session: Session, marketplace_id: int, external_ids: Iterable[str]
) -> dict[str, int]:
    ids = sorted(set(external_ids))
    session.execute(
        text(
            """
            INSERT INTO creators (marketplace_id, external_id)
            SELECT :m, unnest(CAST(:ids AS text[])) ON CONFLICT DO NOTHING
            """
        ),
        {"m": marketplace_id, "ids": ids},
    )
    # A join on the unnested ids, not external_id = ANY(:ids): once the statement is prepared
    # (psycopg prepares it on its sixth run on a connection) PostgreSQL's generic plan tests
    # each row against the whole array, and a 10,000-earning request took 2 s here, not 0.1.
    rows = session.execute(
        text(
            """
            SELECT c.id, c.external_id FROM unnest(CAST(:ids AS text[])) AS k(external_id)
              JOIN creators c ON c.marketplace_id = :m AND c.external_id = k.external_id
            """
        ),
        {"m": marketplace_id, "ids": ids},
    )
    return {r.external_id: r.id for r in rows}


def set_payout_address(
    session: Session,
    marketplace_id: int,
    external_id: str,
    address: str,
    *,
    cool_down: timedelta = timedelta(0),
    actor: str = "marketplace",
) -> models.Creator:
    """Register or change where a creator is paid.

    A change (not the first registration) puts the creator on hold for ``cool_down``, so a
    hijacked account cannot redirect a payout at once; the change is in the audit trail.
    """
    checksummed = checked_address(address)
    creator_id = ensure_creators(session, marketplace_id, [external_id])[external_id]
    creator = session.get(models.Creator, creator_id, with_for_update=True)
    if creator is None:  # pragma: no cover - ensured above
        raise NotFound(external_id)
    previous = creator.payout_address
    if previous == checksummed:
        return creator
    creator.payout_address = checksummed
    if previous is not None and cool_down > timedelta(0):
        creator.hold_until = datetime.now(UTC) + cool_down
    session.flush()
    lifecycle.record_change(
        session,
        "creator",
        creator.id,
        before="address:" + (previous or "none")[:7],
        after="address:" + checksummed[:7],
        cause=f"payout address {previous or 'none'} -> {checksummed}",
        actor=actor,
    )
    return creator


def set_payout_addresses(session: Session, marketplace_id: int, addresses: dict[str, str]) -> None:
    """Register many first-time addresses at once (demo, bulk onboarding)."""
    for address in addresses.values():
        checked_address(address)
    ids = ensure_creators(session, marketplace_id, addresses)
    session.execute(
        text(
            """
            UPDATE creators c SET payout_address = v.address
              FROM unnest(CAST(:ids AS bigint[]), CAST(:addresses AS text[])) AS v(id, address)
             WHERE c.id = v.id AND c.payout_address IS NULL
            """
        ),
        {
            "ids": [ids[k] for k in addresses],
            "addresses": [to_checksum_address(a) for a in addresses.values()],
        },
    )


def creator_id(session: Session, marketplace_id: int, external_id: str) -> int:
    """Our id of a marketplace's creator, by the id the marketplace knows them by."""
    found = session.execute(
        text("SELECT id FROM creators WHERE marketplace_id = :m AND external_id = :x"),
        {"m": marketplace_id, "x": external_id},
    ).scalar()
    if found is None:
        raise NotFound(f"creator {external_id}")
    return int(found)
