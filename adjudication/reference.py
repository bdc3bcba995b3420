"""Reading a pooling region's reference files: institutions, members, approvals.

The formats are those of shared/reference (see its README). Every field is
checked, and a bad file is refused with the file, line and field named. The
rows come back as plain values; the ledger stores them (encrypting what is
personal) and the what-if command keeps them in memory.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TypeVar

from adjudication.errors import DataFileError
from adjudication.model import (
    ApprovedDisease,
    CardStatus,
    Institution,
    InstitutionKind,
    InstitutionStatus,
    MemberCategory,
    MemberStatus,
)
from adjudication.text import unfit_character

INSTITUTIONS_HEADER = ("code", "name", "kind", "level", "region", "status")
MEMBERS_HEADER = (
    "member_id",
    "card_no",
    "pin",
    "name",
    "id_number",
    "birth_date",
    "category",
    "status",
    "card_status",
    "balance_fen",
    "region",
)
SPECIAL_DISEASES_HEADER = ("member_id", "disease_code", "valid_from", "valid_to")
LEVELS = ("L1", "L2", "L3")
E = TypeVar("E")
_WHOLE = re.compile(r"-?[0-9]+")


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One line of members.csv. `pin`, `name` and `id_number` are personal."""

    member_id: str
    card_no: str
    pin: str
    name: str
    id_number: str
    birth_date: date
    category: MemberCategory
    status: MemberStatus
    card_status: CardStatus
    balance_fen: int
    region: str

    def __repr__(self) -> str:  # never print personal data by accident
        return f"MemberRow(member_id={self.member_id!r}, ...)"


@dataclass(frozen=True, slots=True)
class DiseaseRow:
    member_id: str
    disease: ApprovedDisease
    line: int = 0  # in its file, for errors found later


# At most a billion yuan in one individual account: a million members'
# opening balances then still add up within the ledger's 64-bit amounts.
BALANCE_FEN_MAX = 100_000_000_000


class CsvRows:
    """The rows of a reference CSV file as {field: value}, with the file and line
    at hand for errors; every value is checked for characters no field may hold."""

    def __init__(self, text: str, path: str, header: tuple[str, ...]) -> None:
        self.path = path
        self.header = header
        self._reader = csv.reader(io.StringIO(text))
        self.line = 1
        try:
            first = next(self._reader)
        except StopIteration:
            raise DataFileError(path, 1, "", "empty file (expected a header row)") from None
        except csv.Error as exc:
            raise self.fail("", str(exc)) from None
        got = tuple(h.strip().lstrip("\ufeff") for h in first)
        if got != header:
            raise DataFileError(path, 1, "", f"header must be {','.join(header)}")

    def __iter__(self) -> Iterator[dict[str, str]]:
        while True:
            try:
                row = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:  # a field over csv.field_size_limit(), say
                self.line = self._reader.line_num
                raise self.fail("", str(exc)) from None
            self.line = self._reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(self.header):
                raise self.fail("", f"expected {len(self.header)} fields, found {len(row)}")
            values = {k: v.strip() for k, v in zip(self.header, row, strict=True)}
            for field, value in values.items():
                problem = unfit_character(value)
                if problem is not None:
                    raise self.fail(field, problem)
            yield values

    def fail(self, field: str, message: str) -> DataFileError:
        return DataFileError(self.path, self.line, field, message)

    def required(self, row: dict[str, str], field: str, len_max: int = 64) -> str:
        value = row[field]
        if not value:
            raise self.fail(field, "is required")
        if len(value) > len_max:
            raise self.fail(field, f"is longer than {len_max} characters")
        return value

    def date_(self, row: dict[str, str], field: str, *, personal: bool = False) -> date:
        try:
            return date.fromisoformat(row[field])
        except ValueError:
            # a personal field's value stays out of the message (it reaches logs)
            shown = "" if personal else f", not {row[field]!r}"
            raise self.fail(field, f"must be a date YYYY-MM-DD{shown}") from None

    def int_(self, row: dict[str, str], field: str, low: int = 0, high: int | None = None) -> int:
        raw = row[field]
        # ASCII digits only: str.isdigit() also accepts '²', which int() refuses.
        if not _WHOLE.fullmatch(raw):
            raise self.fail(field, f"must be a whole number of fen, not {raw!r}")
        value = int(raw)
        if value < low:
            raise self.fail(field, f"must be at least {low}, not {value}")
        if high is not None and value > high:
            raise self.fail(field, f"must be at most {high:,}, not {value:,}")
        return value

    def enum(self, row: dict[str, str], field: str, kind: type[E]) -> E:
        try:
            return kind(row[field])  # type: ignore[call-arg]
        except ValueError:
            allowed = ", ".join(str(getattr(v, "value", v)) for v in kind)  # type: ignore[attr-defined]
            raise self.fail(field, f"must be one of {allowed}, not {row[field]!r}") from None


def parse_institutions(text: str, path: str = "institutions.csv") -> list[Institution]:
    rows = CsvRows(text, path, INSTITUTIONS_HEADER)
    out: list[Institution] = []
    seen: set[str] = set()
    for row in rows:
        code = rows.required(row, "code", 32)
        if code in seen:
            raise rows.fail("code", f"duplicate institution {code}")
        seen.add(code)
        kind = rows.enum(row, "kind", InstitutionKind)
        level = row["level"]
        if kind is InstitutionKind.PHARMACY:
            if level:
                raise rows.fail("level", "must be empty for a pharmacy")
        elif level not in LEVELS:
            raise rows.fail("level", f"must be L1, L2 or L3, not {level!r}")
        out.append(
            Institution(
                code=code,
                kind=kind,
                level=level,
                status=rows.enum(row, "status", InstitutionStatus),
                name=rows.required(row, "name", 200),
                region=rows.required(row, "region", 16),
            )
        )
    return out


def parse_members(text: str, path: str = "members.csv") -> Iterator[MemberRow]:
    """Members one by one (a region has millions); duplicates are refused."""
    rows = CsvRows(text, path, MEMBERS_HEADER)
    ids: set[str] = set()
    cards: set[str] = set()
    for row in rows:
        member_id = rows.required(row, "member_id", 32)
        if member_id in ids:
            raise rows.fail("member_id", f"duplicate member {member_id}")
        ids.add(member_id)
        card_no = rows.required(row, "card_no", 32)
        if card_no in cards:
            raise rows.fail("card_no", "duplicate card number")
        cards.add(card_no)
        pin = row["pin"]
        if not (pin.isdigit() and 4 <= len(pin) <= 12):
            raise rows.fail("pin", "must be 4 to 12 digits")
        yield MemberRow(
            member_id=member_id,
            card_no=card_no,
            pin=pin,
            name=rows.required(row, "name", 100),
            id_number=rows.required(row, "id_number", 32),
            birth_date=rows.date_(row, "birth_date", personal=True),
            category=rows.enum(row, "category", MemberCategory),
            status=rows.enum(row, "status", MemberStatus),
            card_status=rows.enum(row, "card_status", CardStatus),
            balance_fen=rows.int_(row, "balance_fen", high=BALANCE_FEN_MAX),
            region=rows.required(row, "region", 16),
        )


def parse_special_diseases(
    text: str, path: str = "member_special_diseases.csv"
) -> Iterator[DiseaseRow]:
    rows = CsvRows(text, path, SPECIAL_DISEASES_HEADER)
    for row in rows:
        valid_from = rows.date_(row, "valid_from")
        valid_to = rows.date_(row, "valid_to")
        if valid_to < valid_from:
            raise rows.fail("valid_to", "is before valid_from")
        yield DiseaseRow(
            member_id=rows.required(row, "member_id", 32),
            disease=ApprovedDisease(rows.required(row, "disease_code", 16), valid_from, valid_to),
            line=rows.line,
        )


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(str(path), None, "", f"cannot read: {exc}") from None
