"""DownloadCatalog's listing (switch.backend.catalog_entries): every version
after the caller's, its items, then the items it dropped marked deleted."""

from __future__ import annotations

from datetime import date

from adjudication.catalog import Catalog, CatalogBook, CatalogItem, ItemClass, ItemKind, Rx
from switch.backend import catalog_entries


def _item(code: str, cap_fen: int | None = None) -> CatalogItem:
    return CatalogItem(
        code, f"item {code}", ItemKind.DRUG, ItemClass.A, 0, cap_fen, Rx.OTC, frozenset()
    )


BOOK = CatalogBook(
    [
        Catalog(1, date(2026, 1, 1), {"A": _item("A"), "B": _item("B"), "C": _item("C")}),
        Catalog(2, date(2026, 7, 1), {"A": _item("A", 900), "D": _item("D")}),
    ]
)


def test_a_new_caller_gets_every_version_and_what_each_dropped() -> None:
    listed = [(e.version, e.code, e.deleted) for e in catalog_entries(BOOK, 0)]
    assert listed == [
        (1, "A", False),
        (1, "B", False),
        (1, "C", False),
        (2, "A", False),
        (2, "D", False),
        (2, "B", True),
        (2, "C", True),
    ]


def test_a_caller_up_to_date_with_version_1_gets_version_2_only() -> None:
    entries = list(catalog_entries(BOOK, 1))
    assert [(e.code, e.deleted) for e in entries] == [
        ("A", False),
        ("D", False),
        ("B", True),
        ("C", True),
    ]
    assert entries[0].price_cap_fen == 900  # the item as version 2 has it
    assert entries[2].price_cap_fen == 0  # a dropped item as it last was (no cap: 0)


def test_a_caller_with_the_latest_version_gets_nothing() -> None:
    assert list(catalog_entries(BOOK, 2)) == []
