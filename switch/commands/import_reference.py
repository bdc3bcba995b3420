"""`medswitch import-reference DIR`: load a pooling region into the ledger.

The five files of shared/reference are parsed and checked in full first
(the engine's own loaders for policy.toml and catalog.csv, and
adjudication.reference for the CSVs, plus the cross-file checks here: a
special disease for an unknown member, the same approval twice); any error
names file, line and field, exits 2, and nothing is imported. Then
ledger.importer stores it all in one transaction with COPY, opening balances
as one OPENING entry.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from adjudication.catalog import parse_catalog
from adjudication.errors import DataFileError
from adjudication.policy import parse_policy
from adjudication.reference import (
    parse_institutions,
    parse_members,
    parse_special_diseases,
    read_text,
)
from ledger import importer
from ledger.crypto import load_or_create_key
from switch.commands.db import connect_url
from switch.config import Settings

FILES = (
    "policy.toml",
    "catalog.csv",
    "institutions.csv",
    "members.csv",
    "member_special_diseases.csv",
)
CATALOG_VERSION_FIRST = 1


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import-reference", help="load policy, catalog, institutions and members from DIR"
    )
    parser.add_argument("dir", type=Path, help="directory holding the five reference files")
    parser.set_defaults(func=run)


OPENING_TOTAL_FEN_MAX = 2**63 - 1  # the ledger's amounts are bigint


def load_dir(directory: Path) -> dict[str, Any]:
    """Parse and cross-check everything; DataFileError on the first problem."""
    for name in FILES:
        if not (directory / name).is_file():
            raise DataFileError(str(directory / name), None, "", "file is missing")
    policy_path = directory / "policy.toml"
    policy_text = read_text(policy_path)
    policy = parse_policy(policy_text, str(policy_path))
    catalog_path = directory / "catalog.csv"
    catalog = parse_catalog(
        read_text(catalog_path),
        str(catalog_path),
        version=CATALOG_VERSION_FIRST,
        effective_from=policy.effective_from,
    )
    institutions_path = directory / "institutions.csv"
    institutions = parse_institutions(read_text(institutions_path), str(institutions_path))
    members = _members(directory / "members.csv")
    known = {m.member_id for m in members}
    return {
        "policy": importer.PolicyIn(policy.version, policy.effective_from, policy_text),
        "catalog_version": catalog.version,
        "catalog_effective_from": catalog.effective_from,
        "catalog": [
            importer.CatalogItemIn(
                code=i.code,
                name=i.name,
                kind=i.kind.value,
                item_class=i.item_class.value,
                preselfpay_bp=i.preselfpay_bp,
                price_cap_fen=i.price_cap_fen,
                rx=i.rx.value,
                restrictions="|".join(sorted(r.value for r in i.restrictions)),
            )
            for i in catalog.items.values()
        ],
        "institutions": [
            importer.InstitutionIn(i.code, i.name, i.kind.value, i.level, i.region, i.status.value)
            for i in institutions
        ],
        "members": members,
        "diseases": _diseases(directory / "member_special_diseases.csv", known),
    }


def _members(path: Path) -> list[importer.MemberIn]:
    """members.csv, whose balances must fit in one opening entry."""
    members = [
        importer.MemberIn(
            member_id=m.member_id,
            card_no=m.card_no,
            pin=m.pin,
            name=m.name,
            id_number=m.id_number,
            birth_date=m.birth_date,
            category=m.category.value,
            status=m.status.value,
            card_status=m.card_status.value,
            balance_fen=m.balance_fen,
            region=m.region,
        )
        for m in parse_members(read_text(path), str(path))
    ]
    if sum(m.balance_fen for m in members) > OPENING_TOTAL_FEN_MAX:
        raise DataFileError(
            str(path),
            None,
            "balance_fen",
            f"the balances add up to more than {OPENING_TOTAL_FEN_MAX:,} fen,"
            " more than one ledger entry can hold",
        )
    return members


def _diseases(path: Path, known_members: set[str]) -> list[importer.DiseaseIn]:
    """member_special_diseases.csv: each for a known member, no approval twice."""
    diseases: list[importer.DiseaseIn] = []
    seen: set[tuple[str, str, Any]] = set()
    for row in parse_special_diseases(read_text(path), str(path)):
        if row.member_id not in known_members:
            raise DataFileError(str(path), row.line, "member_id", f"unknown member {row.member_id}")
        key = (row.member_id, row.disease.code, row.disease.valid_from)
        if key in seen:
            raise DataFileError(
                str(path),
                row.line,
                "disease_code",
                f"duplicate approval {row.disease.code} from {row.disease.valid_from}",
            )
        seen.add(key)
        diseases.append(
            importer.DiseaseIn(
                row.member_id, row.disease.code, row.disease.valid_from, row.disease.valid_to
            )
        )
    return diseases


async def _import(
    url: str, data_key: bytes, loaded: dict[str, Any], *, app_login: bool = False
) -> importer.ImportSummary:
    from ledger import db

    pool = await db.open_database(
        url, role=db.OPERATOR_ROLE, app_login=app_login, min_size=1, max_size=1
    )
    try:
        async with pool.acquire() as conn:
            return await importer.import_reference(conn, data_key, **loaded)
    finally:
        await pool.close()


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    started = time.monotonic()
    try:
        loaded = load_dir(args.dir)
    except DataFileError as exc:
        print(f"medswitch import-reference: {exc}; nothing was imported", file=sys.stderr)
        return 2
    parsed_s = time.monotonic() - started
    try:
        data_key = load_or_create_key(settings.data_dir, _env_key())
        summary = asyncio.run(
            _import(connect_url(settings), data_key, loaded, app_login=settings.app_login)
        )
    except (importer.AlreadyImported, ValueError) as exc:
        print(f"medswitch import-reference: {exc}", file=sys.stderr)
        return 2
    except asyncpg.PostgresError as exc:
        print(
            f"medswitch import-reference: database refused the data: {exc}; nothing was imported",
            file=sys.stderr,
        )
        return 2
    print(
        f"imported {summary.institutions} institutions, {summary.members} members,"
        f" {summary.special_diseases} special-disease approvals, {summary.catalog_items}"
        f" catalog items; opening balances {summary.opening_total_fen} fen"
        f" (parse {parsed_s:.1f} s, total {time.monotonic() - started:.1f} s)"
    )
    return 0


def _env_key() -> str | None:
    import os

    return os.environ.get("MEDSWITCH_DATA_KEY") or None
