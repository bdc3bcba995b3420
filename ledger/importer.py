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

import asyncpg

from ledger import accounts
from ledger.crypto import DataKeys

# member_id, card_no, pin, name, id_number, birth_date, category, status,
# card_status, balance_fen, region
MemberIn = tuple[str, str, str, str, str, date, str, str, str, int, str]
# code, name, kind, level, region, status
InstitutionIn = tuple[str, str, str, str, str, str]
# member_id, disease_code, valid_from, valid_to
DiseaseIn = tuple[str, str, date, date]
# code, name, kind, class, preselfpay_bp, price_cap_fen (None: no cap), rx, restrictions
CatalogItemIn = tuple[str, str, str, str, int, int | None, str, str]

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


def _protect(
    keys: DataKeys, members: Sequence[MemberIn]
) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """card HMAC, encrypted name, encrypted id number, PIN hash for each member."""
    out = []
    for m in members:
        member_id = m[0]
        out.append(
            (
                keys.card_lookup(m[1]),
                keys.encrypt(m[3], f"{member_id}:name"),
                keys.encrypt(m[4], f"{member_id}:id_number"),
                keys.pin_hash(member_id, m[2]),
            )
        )
    return out


def _protect_chunk(members: Sequence[MemberIn]) -> list[tuple[bytes, bytes, bytes, bytes]]:
    assert _worker_keys is not None
    return _protect(_worker_keys, members)


def protect_members(
    data_key: bytes, members: Sequence[MemberIn]
) -> list[tuple[bytes, bytes, bytes, bytes]]:
    if len(members) < PARALLEL_FROM_ROWS or (os.cpu_count() or 1) < 2:
        return _protect(DataKeys(data_key), members)
    chunks = [members[i : i + CHUNK_ROWS] for i in range(0, len(members), CHUNK_ROWS)]
    out: list[tuple[bytes, bytes, bytes, bytes]] = []
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
        catalog_rows = [(catalog_version, *item) for item in catalog]
        await conn.copy_records_to_table(
            "catalog_items",
            records=catalog_rows,
            columns=[
                "version",
                "code",
                "name",
                "kind",
                "item_class",
                "preselfpay_bp",
                "price_cap_fen",
                "rx",
                "restrictions",
            ],
        )
        await conn.copy_records_to_table(
            "institutions",
            records=list(institutions),
            columns=["code", "name", "kind", "level", "region", "status"],
        )
        inst_accounts: list[tuple[str, str, str]] = []
        for inst in institutions:
            inst_accounts.append(
                (accounts.institution_payable(inst[0]), "INSTITUTION_PAYABLE", "CREDIT")
            )
            inst_accounts.append(
                (accounts.institution_receivable(inst[0]), "INSTITUTION_RECEIVABLE", "DEBIT")
            )
        await conn.copy_records_to_table(
            "accounts", records=inst_accounts, columns=["account_key", "kind", "normal_side"]
        )

        first = await _reserve_ids(conn, "accounts_account_id_seq", len(members))
        await conn.copy_records_to_table(
            "accounts",
            records=(
                (first + i, accounts.member_account(m[0]), "MEMBER_INDIVIDUAL", "CREDIT")
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
                    m[0],
                    p[0],
                    p[1],
                    p[2],
                    m[5],
                    m[6],
                    m[7],
                    m[8],
                    m[10],
                    first + i,
                    p[3],
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
        await conn.copy_records_to_table(
            "member_special_diseases",
            records=list(diseases),
            columns=["member_id", "disease_code", "valid_from", "valid_to"],
        )
        total = sum(m[9] for m in members)
        entry_id = None
        if total:
            keys = [accounts.OPENING_BALANCE]
            amounts = [total]
            for m in members:
                if m[9]:
                    keys.append(accounts.member_account(m[0]))
                    amounts.append(-m[9])
            # the one posting function every entry goes through (ms_post_set)
            entry_id = await conn.fetchval(
                "SELECT ms_post('OPENING', 'import-reference', $1, $2)", keys, amounts
            )
    return ImportSummary(
        institutions=len(institutions),
        members=len(members),
        special_diseases=len(diseases),
        catalog_items=len(catalog_rows),
        opening_total_fen=total,
        opening_entry_id=entry_id,
    )
