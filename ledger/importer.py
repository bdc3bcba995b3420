"""Bulk loading of a region's reference data: one transaction, COPY, opening entry.

The caller (switch/commands/import_reference.py) parses and validates the
files; this module stores the validated rows. Members' personal fields are
encrypted and their card numbers and PINs hashed here (ledger.crypto), in
worker processes when there are many, because that is the slow part of a
million-member import. Opening balances become one OPENING entry: each
member account is credited, the opening-balance counter-account debited
with the total.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

import asyncpg

from ledger import accounts
from ledger.crypto import DataKeys


class MemberIn(NamedTuple):
    """A member as members.csv gives it (the card number, PIN, name and id in clear)."""

    member_id: str
    card_no: str
    pin: str
    name: str
    id_number: str
    birth_date: date
    category: str
    status: str
    card_status: str
    balance_fen: int
    region: str


class InstitutionIn(NamedTuple):
    """An institution, its fields in the order of the institutions table."""

    code: str
    name: str
    kind: str
    level: str
    region: str
    status: str


class DiseaseIn(NamedTuple):
    """A member's special-disease approval, in the order of member_special_diseases."""

    member_id: str
    disease_code: str
    valid_from: date
    valid_to: date


class CatalogItemIn(NamedTuple):
    """A catalog item, in the order of catalog_items (after its version)."""

    code: str
    name: str
    kind: str
    item_class: str
    preselfpay_bp: int
    price_cap_fen: int | None  # None: no cap
    rx: str
    restrictions: str  # "|"-joined


class ProtectedMember(NamedTuple):
    """What is stored of a member's secrets: a card lookup key, ciphertexts, a PIN hash."""

    card_hmac: bytes
    name_enc: bytes
    id_number_enc: bytes
    pin_hash: bytes


PARALLEL_FROM_ROWS = 50_000  # below this, worker processes cost more than they save
CHUNK_ROWS = 50_000


class AlreadyImported(ValueError):
    """The database already holds members: import-reference loads a new region only."""


@dataclass(frozen=True, slots=True)
class PolicyIn:
    version: str
    effective_from: date
    toml_text: str


@dataclass(frozen=True, slots=True)
class ImportSummary:
    institutions: int
    members: int
    special_diseases: int
    catalog_items: int
    opening_total_fen: int
    opening_entry_id: int | None


_worker_keys: DataKeys | None = None


def _worker_init(data_key: bytes) -> None:
    global _worker_keys
    _worker_keys = DataKeys(data_key)


def _protect(keys: DataKeys, members: Sequence[MemberIn]) -> list[ProtectedMember]:
    return [
        ProtectedMember(
            card_hmac=keys.card_lookup(m.card_no),
            name_enc=keys.encrypt(m.name, f"{m.member_id}:name"),
            id_number_enc=keys.encrypt(m.id_number, f"{m.member_id}:id_number"),
            pin_hash=keys.pin_hash(m.member_id, m.pin),
        )
        for m in members
    ]


def _protect_chunk(members: Sequence[MemberIn]) -> list[ProtectedMember]:
    assert _worker_keys is not None
    return _protect(_worker_keys, members)


def protect_members(data_key: bytes, members: Sequence[MemberIn]) -> list[ProtectedMember]:
    if len(members) < PARALLEL_FROM_ROWS or (os.cpu_count() or 1) < 2:
        return _protect(DataKeys(data_key), members)
    chunks = [members[i : i + CHUNK_ROWS] for i in range(0, len(members), CHUNK_ROWS)]
    out: list[ProtectedMember] = []
    with ProcessPoolExecutor(
        max_workers=os.cpu_count(), initializer=_worker_init, initargs=(data_key,)
    ) as pool:
        for part in pool.map(_protect_chunk, chunks):
            out.extend(part)
    return out


async def _reserve_ids(conn: asyncpg.Connection, sequence: str, count: int) -> int:
    """The first of `count` consecutive ids taken from a sequence."""
    if count == 0:
        return 0
    first: int = await conn.fetchval(
        "SELECT setval($1::regclass, nextval($1::regclass) + $2 - 1) - $2 + 1", sequence, count
    )
    return first


async def import_reference(
    conn: asyncpg.Connection,
    data_key: bytes,
    *,
    policy: PolicyIn,
    catalog_version: int,
    catalog_effective_from: date,
    catalog: Iterable[CatalogItemIn],
    institutions: Sequence[InstitutionIn],
    members: Sequence[MemberIn],
    diseases: Sequence[DiseaseIn],
) -> ImportSummary:
    """Store everything in one transaction (the caller's connection, app role is enough)."""
    protected = protect_members(data_key, members)  # CPU work before the transaction
    async with conn.transaction():
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM members)"):
            raise AlreadyImported("this database already holds members; nothing was imported")
        catalog_items = await _store_rules(
            conn, policy, catalog_version, catalog_effective_from, catalog
        )
        await _store_institutions(conn, institutions)
        await _store_members(conn, members, protected)
        await conn.copy_records_to_table(
            "member_special_diseases",
            records=list(diseases),
            columns=["member_id", "disease_code", "valid_from", "valid_to"],
        )
        total, entry_id = await _post_opening_balances(conn, members)
    return ImportSummary(
        institutions=len(institutions),
        members=len(members),
        special_diseases=len(diseases),
        catalog_items=catalog_items,
        opening_total_fen=total,
        opening_entry_id=entry_id,
    )


async def _store_rules(
    conn: asyncpg.Connection,
    policy: PolicyIn,
    catalog_version: int,
    catalog_effective_from: date,
    catalog: Iterable[CatalogItemIn],
) -> int:
    """The policy and the catalog version with its items; how many items."""
    await conn.execute(
        "INSERT INTO policies (version, effective_from, toml_text) VALUES ($1, $2, $3)",
        policy.version,
        policy.effective_from,
        policy.toml_text,
    )
    await conn.execute(
        "INSERT INTO catalog_versions (version, effective_from) VALUES ($1, $2)",
        catalog_version,
        catalog_effective_from,
    )
    rows = [(catalog_version, *item) for item in catalog]
    await conn.copy_records_to_table(
        "catalog_items",
        records=rows,
        columns=["version", *CatalogItemIn._fields],
    )
    return len(rows)


async def _store_institutions(
    conn: asyncpg.Connection, institutions: Sequence[InstitutionIn]
) -> None:
    """The institutions, each with its payable and receivable account."""
    await conn.copy_records_to_table(
        "institutions", records=list(institutions), columns=list(InstitutionIn._fields)
    )
    inst_accounts: list[tuple[str, str, str]] = []
    for inst in institutions:
        inst_accounts.append(
            (accounts.institution_payable(inst.code), "INSTITUTION_PAYABLE", "CREDIT")
        )
        inst_accounts.append(
            (accounts.institution_receivable(inst.code), "INSTITUTION_RECEIVABLE", "DEBIT")
        )
    await conn.copy_records_to_table(
        "accounts", records=inst_accounts, columns=["account_key", "kind", "normal_side"]
    )


async def _store_members(
    conn: asyncpg.Connection, members: Sequence[MemberIn], protected: Sequence[ProtectedMember]
) -> None:
    """The members, each with its individual account (ids reserved in one step)."""
    first = await _reserve_ids(conn, "accounts_account_id_seq", len(members))
    await conn.copy_records_to_table(
        "accounts",
        records=(
            (first + i, accounts.member_account(m.member_id), "MEMBER_INDIVIDUAL", "CREDIT")
            for i, m in enumerate(members)
        ),
        columns=["account_id", "account_key", "kind", "normal_side"],
    )
    # Their balance rows come with them, at zero (the accounts_balance_rows
    # trigger); the opening entry's postings move them.
    await conn.copy_records_to_table(
        "members",
        records=(
            (
                m.member_id,
                p.card_hmac,
                p.name_enc,
                p.id_number_enc,
                m.birth_date,
                m.category,
                m.status,
                m.card_status,
                m.region,
                first + i,
                p.pin_hash,
            )
            for i, (m, p) in enumerate(zip(members, protected, strict=True))
        ),
        columns=[
            "member_id",
            "card_hmac",
            "name_enc",
            "id_number_enc",
            "birth_date",
            "category",
            "status",
            "card_status",
            "region",
            "account_id",
            "pin_hash",
        ],
    )


async def _post_opening_balances(
    conn: asyncpg.Connection, members: Sequence[MemberIn]
) -> tuple[int, int | None]:
    """One OPENING entry crediting every member's balance; (total, its entry id or None)."""
    total = sum(m.balance_fen for m in members)
    if not total:
        return 0, None
    keys = [accounts.OPENING_BALANCE]
    amounts = [total]
    for m in members:
        if m.balance_fen:
            keys.append(accounts.member_account(m.member_id))
            amounts.append(-m.balance_fen)
    # the one posting function every entry goes through (ms_post_set)
    entry_id: int = await conn.fetchval(
        "SELECT ms_post('OPENING', 'import-reference', $1, $2)", keys, amounts
    )
    return total, entry_id
