"""Catalogs as data: drugs, treatment items, facilities, materials and goods.

Loaded from CSV in the format of shared/reference/catalog.csv. Like policies,
catalogs are versioned and the version in force on the benefit date applies.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path

from adjudication.errors import DataFileError
from adjudication.reference import CsvRows

CATALOG_HEADER = (
    "code",
    "name",
    "kind",
    "class",
    "preselfpay_bp",
    "price_cap_fen",
    "rx",
    "restrictions",
)
_WHOLE = re.compile(r"-?[0-9]+")


class ItemKind(StrEnum):
    DRUG = "DRUG"
    TREATMENT = "TREATMENT"
    FACILITY = "FACILITY"
    MATERIAL = "MATERIAL"
    GOODS = "GOODS"


class ItemClass(StrEnum):
    A = "A"
    B = "B"
    C = "C"


class Restriction(StrEnum):
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
    CHILD_ONLY = "CHILD_ONLY"
    INPATIENT_ONLY = "INPATIENT_ONLY"
    WORK_INJURY_ONLY = "WORK_INJURY_ONLY"
    MATERNITY_ONLY = "MATERNITY_ONLY"
    ACCOUNT_ONLY_OUTPATIENT = "ACCOUNT_ONLY_OUTPATIENT"


class Rx(StrEnum):
    RX = "RX"
    OTC = "OTC"
    NONE = ""


@dataclass(frozen=True, slots=True)
class CatalogItem:
    code: str
    name: str
    kind: ItemKind
    item_class: ItemClass
    preselfpay_bp: int
    price_cap_fen: int | None  # None: no cap
    rx: Rx
    restrictions: frozenset[Restriction]


@dataclass(frozen=True, slots=True)
class Catalog:
    version: int
    effective_from: date
    items: Mapping[str, CatalogItem]

    def get(self, code: str) -> CatalogItem | None:
        return self.items.get(code)


class CatalogBook:
    """Every loaded catalog version; the one in force on a date applies."""

    def __init__(self, catalogs: Iterable[Catalog]) -> None:
        ordered = sorted(catalogs, key=lambda c: (c.effective_from, c.version))
        versions = [c.version for c in ordered]
        if len(set(versions)) != len(versions):
            raise ValueError(f"duplicate catalog version in {versions}")
        if versions != sorted(versions):
            raise ValueError("a later catalog must have a higher version")
        self._catalogs = tuple(ordered)
        self._starts = [c.effective_from for c in ordered]

    @property
    def catalogs(self) -> tuple[Catalog, ...]:
        return self._catalogs

    def in_force(self, day: date) -> Catalog | None:
        i = bisect.bisect_right(self._starts, day)
        return self._catalogs[i - 1] if i else None


def _int_field(path: str, line: int, field: str, raw: str, low: int, high: int | None) -> int:
    # ASCII digits only: int() would also take '1_000', '+5' and non-ASCII digits.
    if not _WHOLE.fullmatch(raw):
        raise DataFileError(path, line, field, f"must be a whole number, not {raw!r}")
    value = int(raw)
    if value < low or (high is not None and value > high):
        raise DataFileError(path, line, field, f"out of range: {value}")
    return value


def parse_catalog(
    text: str,
    path: str = "catalog.csv",
    *,
    version: int = 1,
    effective_from: date = date(1900, 1, 1),
) -> Catalog:
    """A catalog from CSV text; DataFileError naming file, line and field if bad."""
    rows = CsvRows(text, path, CATALOG_HEADER)
    items: dict[str, CatalogItem] = {}
    for row in rows:
        line = rows.line
        code, name, kind, klass, pre, cap, rx, restrictions = (row[f] for f in CATALOG_HEADER)
        if not code:
            raise DataFileError(path, line, "code", "is required")
        if code in items:
            raise DataFileError(path, line, "code", f"duplicate item code {code}")
        try:
            kind_v = ItemKind(kind)
        except ValueError:
            raise DataFileError(path, line, "kind", f"unknown kind {kind!r}") from None
        try:
            class_v = ItemClass(klass)
        except ValueError:
            raise DataFileError(path, line, "class", f"unknown class {klass!r}") from None
        try:
            rx_v = Rx(rx)
        except ValueError:
            raise DataFileError(path, line, "rx", f"must be RX, OTC or empty, not {rx!r}") from None
        pre_bp = _int_field(path, line, "preselfpay_bp", pre or "0", 0, 10_000)
        if class_v is not ItemClass.B and pre_bp:
            raise DataFileError(path, line, "preselfpay_bp", "only class B items have one")
        cap_fen = _int_field(path, line, "price_cap_fen", cap, 0, None) if cap else None
        found: set[Restriction] = set()
        for part in filter(None, (p.strip() for p in restrictions.split("|"))):
            try:
                found.add(Restriction(part))
            except ValueError:
                raise DataFileError(
                    path, line, "restrictions", f"unknown restriction {part!r}"
                ) from None
        items[code] = CatalogItem(
            code=code,
            name=name,
            kind=kind_v,
            item_class=class_v,
            preselfpay_bp=pre_bp,
            price_cap_fen=cap_fen,
            rx=rx_v,
            restrictions=frozenset(found),
        )
    return Catalog(version=version, effective_from=effective_from, items=items)


def load_catalog(
    path: str | Path, *, version: int = 1, effective_from: date = date(1900, 1, 1)
) -> Catalog:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(str(p), None, "", f"cannot read: {exc}") from None
    return parse_catalog(text, str(p), version=version, effective_from=effective_from)
