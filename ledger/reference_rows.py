"""Reading back the policies and catalogs that import-reference stored.

The switch rebuilds its in-memory PolicyBook and CatalogBook from these rows
at start; the ledger only hands them over, it does not interpret them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    version: str
    toml_text: str


@dataclass(frozen=True, slots=True)
class StoredCatalogItem:
    version: int
    code: str
    name: str
    kind: str
    item_class: str
    preselfpay_bp: int
    price_cap_fen: int | None
    rx: str
    restrictions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReferenceRows:
    policies: list[StoredPolicy]
    catalog_versions: list[tuple[int, date]]  # (version, effective_from), ascending
    catalog_items: list[StoredCatalogItem]


async def load_reference_rows(pool: asyncpg.Pool) -> ReferenceRows:
    """Every stored policy version and catalog version with its items, in one snapshot."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        policies = await conn.fetch("SELECT version, toml_text FROM policies ORDER BY version")
        versions = await conn.fetch(
            "SELECT version, effective_from FROM catalog_versions ORDER BY version"
        )
        items = await conn.fetch(
            "SELECT version, code, name, kind, item_class, preselfpay_bp, price_cap_fen, rx,"
            " restrictions FROM catalog_items ORDER BY version, code"
        )
    return ReferenceRows(
        policies=[StoredPolicy(r["version"], r["toml_text"]) for r in policies],
        catalog_versions=[(r["version"], r["effective_from"]) for r in versions],
        catalog_items=[
            StoredCatalogItem(
                version=r["version"],
                code=r["code"],
                name=r["name"],
                kind=r["kind"],
                item_class=r["item_class"],
                preselfpay_bp=int(r["preselfpay_bp"]),
                price_cap_fen=r["price_cap_fen"],
                rx=r["rx"],
                restrictions=tuple(x for x in r["restrictions"].split("|") if x),
            )
            for r in items
        ],
    )
