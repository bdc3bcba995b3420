"""A bad policy, catalog or reference file is refused naming the file, line and field.

Each case edits one line of the reference file; the expected line number is
that of the edited text in the edited file (or the header of the table it
belongs to, for a missing key).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from adjudication.catalog import load_catalog, parse_catalog
from adjudication.errors import DataFileError
from adjudication.policy import load_policy, parse_policy
from adjudication.reference import parse_institutions, parse_members, parse_special_diseases
from tests.claims import REFERENCE

POLICY = (REFERENCE / "policy.toml").read_text(encoding="utf-8")
CATALOG = (REFERENCE / "catalog.csv").read_text(encoding="utf-8")
MEMBERS = (REFERENCE / "members.csv").read_text(encoding="utf-8")
INSTITUTIONS = (REFERENCE / "institutions.csv").read_text(encoding="utf-8")
DISEASES = (REFERENCE / "member_special_diseases.csv").read_text(encoding="utf-8")


def line_of(text: str, needle: str) -> int:
    """1-based line number of the (unique) line holding needle."""
    hits = [n for n, ln in enumerate(text.splitlines(), start=1) if needle in ln]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def edited(old: str, new: str, text: str = POLICY) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def refused(parse: Callable[[str, str], Any], text: str, path: str) -> DataFileError:
    with pytest.raises(DataFileError) as err:
        result = parse(text, path)
        if isinstance(result, Iterable):
            list(result)
    assert err.value.path == path
    return err.value


def test_reference_files_load() -> None:
    policy = load_policy(REFERENCE / "policy.toml")
    catalog = load_catalog(REFERENCE / "catalog.csv")
    assert policy.version == "2026.1" and len(catalog.items) == 48


@pytest.mark.parametrize(
    ("old", "new", "needle", "field"),
    [
        # wrong type
        (
            "max_purchases_per_day = 3",
            'max_purchases_per_day = "3"',
            "max_purchases_per_day",
            "pharmacy.max_purchases_per_day",
        ),
        ("L2 = 60000", "L2 = 60000.5", "L2 = 60000.5", "inpatient.deductible_fen.L2"),
        (
            'effective_from = "2026-01-01"',
            'effective_from = "2026-13-01"',
            "effective_from",
            "policy.effective_from",
        ),
        (
            "pays_overlimit = false",
            "pays_overlimit = 0",
            "pays_overlimit",
            "account.pays_overlimit",
        ),
        # out of range
        ("ratio_bp = 6000", "ratio_bp = 10001", "ratio_bp = 10001", "serious_illness.ratio_bp"),
        ("OUTPATIENT = 7", "OUTPATIENT = 0", "OUTPATIENT = 0", "days_supply.OUTPATIENT"),
        # unknown category / level
        (
            "[outpatient.annual_cap_fen]\nEMPLOYEE",
            "[outpatient.annual_cap_fen]\nSTUDENT",
            "STUDENT",
            "outpatient.annual_cap_fen.STUDENT",
        ),
        (
            'exempt_categories = ["RETIRED_CADRE"]',
            'exempt_categories = ["VIP"]',
            "VIP",
            "serious_illness.exempt_categories",
        ),
        (
            "[inpatient.deductible_fen]\nL1",
            "[inpatient.deductible_fen]\nL4",
            "L4 =",
            "inpatient.deductible_fen.L4",
        ),
    ],
)
def test_policy_field_errors(old: str, new: str, needle: str, field: str) -> None:
    """A wrong type, a value out of range, an unknown category or level: file, line, field."""
    text = edited(old, new)
    err = refused(parse_policy, text, "bad.toml")
    assert (err.line, err.field) == (line_of(text, needle), field)
    assert "bad.toml" in str(err) and field in str(err)


def test_policy_missing_key_names_its_table() -> None:
    """A missing key names the key and the line of its table header."""
    text = edited("band_extra_bp = 500\n", "")
    err = refused(parse_policy, text, "bad.toml")
    assert (err.line, err.field) == (line_of(text, "[inpatient]"), "inpatient.band_extra_bp")
    assert "missing" in err.message


def test_policy_missing_category_in_a_full_table() -> None:
    """Every category must have an outpatient deductible."""
    text = edited("RETIRED_CADRE = 0\n", "")
    err = refused(parse_policy, text, "bad.toml")
    assert err.field == "outpatient.deductible_fen.RETIRED_CADRE"
    assert err.line == line_of(text, "[outpatient.deductible_fen]")


def test_policy_special_disease_errors_name_the_entry() -> None:
    """A duplicate disease code or a bad ratio names special_disease[i] and its table line."""
    dup = edited('code = "N18"', 'code = "E11"')
    err = refused(parse_policy, dup, "bad.toml")
    assert err.field == "special_disease[2].code" and "duplicate" in err.message
    # the line of the offending key inside the third [[special_disease]] entry
    headers = [n for n, ln in enumerate(dup.splitlines(), 1) if ln == "[[special_disease]]"]
    assert err.line == headers[2] + 1
    assert dup.splitlines()[err.line - 1] == 'code = "E11"'
    bad = edited("pooled_bp = 9000", "pooled_bp = 9500")  # D66: 9500 + waiver 1000 > 10000
    err = refused(parse_policy, bad, "bad.toml")
    assert err.field == "special_disease[4].waiver_bp"
    assert err.line == line_of(bad, "pooled_bp = 9500") + 1  # waiver_bp = 1000, next line
    ratio = edited("pooled_bp = 8500", "pooled_bp = 18500")
    err = refused(parse_policy, ratio, "bad.toml")
    assert (err.field, err.line) == ("special_disease[2].pooled_bp", line_of(ratio, "18500"))


def test_policy_special_disease_missing_key_names_the_entry_header() -> None:
    text = edited("pooled_bp = 8500\n", "")
    err = refused(parse_policy, text, "bad.toml")
    headers = [n for n, ln in enumerate(text.splitlines(), 1) if ln == "[[special_disease]]"]
    assert (err.field, err.line) == ("special_disease[2].pooled_bp", headers[2])


def test_policy_toml_syntax_error_names_the_line() -> None:
    text = POLICY + "\n[broken\n"
    err = refused(parse_policy, text, "bad.toml")
    assert err.line == len(text.splitlines())


def test_unreadable_policy_file_names_the_path(tmp_path: Any) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(DataFileError) as err:
        load_policy(missing)
    assert err.value.path == str(missing)


CATALOG_ROW_LINE = len(CATALOG.splitlines()) + 1


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("X1,n,DRUG,D,0,,,", "class"),  # unknown class
        ("X1,n,FOOD,A,0,,,", "kind"),  # unknown kind
        ("X1,n,DRUG,B,abc,,,", "preselfpay_bp"),  # not a number
        ("X1,n,DRUG,B,10001,,,", "preselfpay_bp"),  # above 10000 bp
        ("X1,n,DRUG,A,500,,,", "preselfpay_bp"),  # only class B has one
        ("X1,n,DRUG,A,0,-5,,", "price_cap_fen"),
        ("X1,n,DRUG,A,0,1.5,,", "price_cap_fen"),
        ("X1,n,DRUG,A,0,1_000,,", "price_cap_fen"),  # int() takes these three,
        ("X1,n,DRUG,A,0,+5,,", "price_cap_fen"),  # a CSV number should not
        ("X1,n,DRUG,A,0,\u0665,,", "price_cap_fen"),  # (Arabic-Indic five)
        ("X1,n,DRUG,A,0,,XX,", "rx"),
        ("X1,n,DRUG,A,0,,,NOPE", "restrictions"),
        ("110200001,dup,TREATMENT,A,0,,,", "code"),  # duplicate code
        (",n,DRUG,A,0,,,", "code"),  # missing code
        ("X1,n,DRUG,A,0,,", ""),  # 7 fields, not 8
    ],
)
def test_catalog_field_errors(row: str, field: str) -> None:
    """A bad catalog row is refused naming its line and field."""
    err = refused(parse_catalog, CATALOG + row + "\n", "bad.csv")
    assert (err.line, err.field) == (CATALOG_ROW_LINE, field)


def test_catalog_bad_header() -> None:
    err = refused(parse_catalog, CATALOG.replace("price_cap_fen", "cap", 1), "bad.csv")
    assert err.line == 1


MEMBER_OK = "M9,C9,123456,n,id,1980-01-01,EMPLOYEE,ACTIVE,ACTIVE,5,330399"


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("EMPLOYEE,ACTIVE", "STUDENT,ACTIVE", "category"),
        ("1980-01-01", "1980-02-30", "birth_date"),
        (",5,", ",-5,", "balance_fen"),
        (",5,", ",5.5,", "balance_fen"),
        (",5,", ",\u00b2,", "balance_fen"),  # a digit to str.isdigit, not to int()
        ("M9,", "M0001,", "member_id"),  # duplicate
        ("C9,", "C3303990001,", "card_no"),  # duplicate
        ("123456", "12a456", "pin"),
    ],
)
def test_member_field_errors(old: str, new: str, field: str) -> None:
    """A bad members.csv row is refused naming its line and field."""
    row = MEMBER_OK.replace(old, new, 1)
    err = refused(parse_members, MEMBERS + row + "\n", "members.csv")
    assert (err.line, err.field) == (len(MEMBERS.splitlines()) + 1, field)


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("H9,n,HOSPITAL,L4,330399,ACTIVE", "level"),
        ("P9,n,PHARMACY,L1,330399,ACTIVE", "level"),
        ("H9,n,HOSPITAL,L1,330399,CLOSED", "status"),
        ("H33039900001,n,HOSPITAL,L1,330399,ACTIVE", "code"),
    ],
)
def test_institution_field_errors(row: str, field: str) -> None:
    err = refused(parse_institutions, INSTITUTIONS + row + "\n", "institutions.csv")
    assert (err.line, err.field) == (len(INSTITUTIONS.splitlines()) + 1, field)


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("M0001,E11,2026-05-01,2026-04-01", "valid_to"),
        ("M0001,E11,2026-05-41,2026-06-01", "valid_from"),
        (",E11,2026-05-01,2026-06-01", "member_id"),
    ],
)
def test_special_disease_field_errors(row: str, field: str) -> None:
    err = refused(parse_special_diseases, DISEASES + row + "\n", "d.csv")
    assert (err.line, err.field) == (len(DISEASES.splitlines()) + 1, field)


CONTROL_CHARACTERS = ["\x00", "\x01", "\x0b", "\x1b", "\x7f", "\x85", "\u2028", "\ufffe"]


@pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize(
    ("parse", "text", "row", "field"),
    [
        (parse_institutions, INSTITUTIONS, "H9,Bad{}Name,HOSPITAL,L1,330399,ACTIVE", "name"),
        (parse_institutions, INSTITUTIONS, "H{}9,n,HOSPITAL,L1,330399,ACTIVE", "code"),
        (parse_members, MEMBERS, MEMBER_OK.replace(",n,", ",N{}n,"), "name"),
        (parse_members, MEMBERS, MEMBER_OK.replace(",id,", ",i{}d,"), "id_number"),
        (parse_members, MEMBERS, MEMBER_OK.replace("M9,", "M{}9,"), "member_id"),
        (parse_special_diseases, DISEASES, "M0001,E{}11,2026-05-01,2026-06-01", "disease_code"),
        (parse_catalog, CATALOG, "X1,n{}n,DRUG,A,0,,,", "name"),
    ],
    ids=[
        "institution name",
        "institution code",
        "member name",
        "id number",
        "member id",
        "disease code",
        "catalog item name",
    ],
)
def test_a_control_character_in_any_text_field_is_refused_at_its_line_and_field(
    parse: Callable[[str, str], Any], text: str, row: str, field: str, char: str
) -> None:
    """What import accepts must be storable and printable in a payout file: a
    name with a control character is refused here, not by the bank file."""
    err = refused(parse, text + row.format(char) + "\n", "f.csv")
    assert (err.line, err.field) == (len(text.splitlines()) + 1, field)
    assert f"U+{ord(char):04X}" in err.message


def test_chinese_names_and_full_width_spaces_are_accepted() -> None:
    row = "H9,市第一人民医院\u3000东院 (East),HOSPITAL,L1,330399,ACTIVE"
    (*_, last) = parse_institutions(INSTITUTIONS + row + "\n", "i.csv")
    assert last.name == "市第一人民医院\u3000东院 (East)"


def test_a_policy_string_with_an_escaped_control_character_is_refused() -> None:
    text = edited('version = "2026.1"', 'version = "2026.1\\u0000"')
    err = refused(parse_policy, text, "p.toml")
    assert err.field == "policy.version" and "U+0000" in err.message


@pytest.mark.parametrize(
    ("parse", "text", "row"),
    [
        (parse_institutions, INSTITUTIONS, "H9,{},HOSPITAL,L1,330399,ACTIVE"),
        (parse_members, MEMBERS, MEMBER_OK.replace(",n,", ",{},")),
        (parse_catalog, CATALOG, "X1,{},DRUG,A,0,,,"),
    ],
)
def test_a_field_over_the_csv_modules_limit_is_refused_at_its_line(
    parse: Callable[[str, str], Any], text: str, row: str
) -> None:
    """Not a `_csv.Error` traceback: the file and line are named."""
    err = refused(parse, text + row.format("x" * (128 * 1024 + 1)) + "\n", "f.csv")
    assert err.line == len(text.splitlines()) + 1
    assert "field larger than field limit" in err.message
