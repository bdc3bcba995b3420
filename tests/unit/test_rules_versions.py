"""Policies and catalogs by version: the one in force on the benefit date applies.

Two policies are loaded: the reference one (from 2026-01-01) and a variant
from 2027-01-01 with a lower EMPLOYEE outpatient deductible; likewise two
catalog versions. A claim is judged by the rules of its own day, years later.
"""

from __future__ import annotations

from datetime import date

import pytest

from adjudication import reasons as R
from adjudication.catalog import CatalogBook, parse_catalog
from adjudication.model import VisitType
from adjudication.policy import PolicyBook, parse_policy
from adjudication.validation import InvalidClaim
from tests.claims import REFERENCE
from tests.kit import APPENDECTOMY, claim, line, member, run

REF_POLICY = (REFERENCE / "policy.toml").read_text(encoding="utf-8")
REF_CATALOG = (REFERENCE / "catalog.csv").read_text(encoding="utf-8")
NEW_CODE = "999999001"


def _books() -> tuple[PolicyBook, CatalogBook]:
    p2026 = parse_policy(REF_POLICY, "policy-2026.toml")
    variant = (
        REF_POLICY.replace('version = "2026.1"', 'version = "2027.1"')
        .replace('effective_from = "2026-01-01"', 'effective_from = "2027-01-01"')
        .replace("EMPLOYEE = 100000", "EMPLOYEE = 50000")
    )
    p2027 = parse_policy(variant, "policy-2027.toml")
    assert p2027.outpatient_deductible_fen != p2026.outpatient_deductible_fen
    c1 = parse_catalog(REF_CATALOG, version=1, effective_from=date(2026, 1, 1))
    c2 = parse_catalog(
        REF_CATALOG + f"{NEW_CODE},new test item,TREATMENT,A,0,,,\n",
        version=2,
        effective_from=date(2027, 1, 1),
    )
    return PolicyBook([p2027, p2026]), CatalogBook([c2, c1])


@pytest.mark.parametrize(
    ("day", "version", "deductible"),
    [
        (date(2026, 12, 31), "2026.1", 100_000),  # the day before the new policy
        (date(2027, 1, 1), "2027.1", 50_000),  # its first day
        (date(2030, 6, 1), "2027.1", 50_000),
    ],
)
def test_policy_in_force_by_effective_from(day: date, version: str, deductible: int) -> None:
    """The outpatient deductible of the policy in force on the service date applies."""
    policies, catalogs = _books()
    c = claim(VisitType.OUTPATIENT, line(APPENDECTOMY, 150_000), day=day)
    result = run(c, member(year=day.year), policy_book=policies, catalog_book=catalogs)
    assert result.policy_version == version
    # d = min(150000, deductible) with nothing used
    assert result.split.deductible_fen == deductible


def test_inpatient_policy_chosen_by_discharge_date() -> None:
    """An inpatient stay over new year is judged by the rules in force at discharge."""
    policies, catalogs = _books()
    c = claim(
        VisitType.INPATIENT,
        line(APPENDECTOMY, 1000),
        day=date(2027, 1, 2),
        admitted=date(2026, 12, 28),
    )
    result = run(c, member(year=2027), policy_book=policies, catalog_book=catalogs)
    assert (result.policy_version, result.catalog_version) == ("2027.1", 2)
    assert result.benefit_date == date(2027, 1, 2)


@pytest.mark.parametrize(
    ("day", "version", "reasons"),
    [
        (date(2026, 12, 31), 1, (R.L_NOT_IN_CATALOG,)),
        (date(2027, 1, 1), 2, ()),
    ],
)
def test_catalog_in_force_by_effective_from(
    day: date, version: int, reasons: tuple[str, ...]
) -> None:
    """An item added by catalog version 2 is unknown the day before it takes effect."""
    policies, catalogs = _books()
    c = claim(VisitType.OUTPATIENT, line(NEW_CODE, 700), day=day)
    result = run(c, member(year=day.year), policy_book=policies, catalog_book=catalogs)
    assert result.catalog_version == version
    assert result.lines[0].reasons == reasons


def test_claim_before_any_policy_is_invalid() -> None:
    """A service date before every policy's effective_from is refused naming service_date."""
    policies, catalogs = _books()
    c = claim(VisitType.OUTPATIENT, line(APPENDECTOMY, 100), day=date(2025, 12, 31))
    with pytest.raises(InvalidClaim) as err:
        run(c, member(year=2025), policy_book=policies, catalog_book=catalogs)
    assert [v.field for v in err.value.violations] == ["service_date"]


def test_two_policies_on_the_same_day_are_refused() -> None:
    """Two versions cannot take effect on the same day (which would apply is unclear)."""
    p = parse_policy(REF_POLICY)
    other = parse_policy(REF_POLICY.replace('version = "2026.1"', 'version = "2026.2"'))
    with pytest.raises(ValueError, match="same day"):
        PolicyBook([p, other])
