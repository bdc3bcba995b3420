"""Test helper: small claims and member states built straight from the model.

The rule tests judge one claim against one hand-made state, so each test
shows exactly the numbers its arithmetic comment uses. Policy and catalog are
the project's copy of the reference region unless a test passes its own.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import date
from typing import Any

from adjudication.catalog import CatalogBook, load_catalog
from adjudication.engine import adjudicate
from adjudication.model import (
    Adjudication,
    ApprovedDisease,
    CardStatus,
    Claim,
    ClaimLine,
    Context,
    InpatientStay,
    Institution,
    InstitutionKind,
    InstitutionStatus,
    MemberCategory,
    MemberState,
    MemberStatus,
    VisitType,
    YearAccumulators,
)
from adjudication.policy import PolicyBook, load_policy
from tests.claims import REFERENCE

DAY = date(2026, 3, 10)

# Reference catalog items by role (prices in fen; caps from catalog.csv).
CONSULT_A = "110200001"  # TREATMENT A, cap 1000
CONSULT_B = "110200003"  # TREATMENT B 1000 bp, cap 3000
BLOOD_A = "250101015"  # TREATMENT A, cap 2500
XRAY_A = "210300001"  # TREATMENT A, cap 8000
CT_APPROVAL = "210300014"  # B 1000 bp, cap 30000, APPROVAL_REQUIRED
AMOX_RX = "XJ01CAA040A001010100001"  # DRUG A RX, cap 900
CEFUR_B_RX = "XJ01DCC020A001010100003"  # DRUG B 1000 bp RX, cap 2800
PARA_OTC = "XN02BEA001A001010100004"  # DRUG A OTC, cap 500
LORA_B_OTC = "XR06AXL001A001010100006"  # DRUG B 500 bp OTC, cap 1800
AMINO_INPATIENT = "XB05BAF001B002010100017"  # DRUG B 1000 bp, cap 5000, INPATIENT_ONLY
CHILD_OTC = "XR05XAE001A001010100018"  # DRUG A OTC, cap 1500, CHILD_ONLY
OXYTOCIN = "XH01BBS001B002010100019"  # DRUG A RX, cap 600, MATERNITY_ONLY
LIUWEI_ACCOUNT = "ZA06AAL001A001010100020"  # DRUG B 1000 bp OTC, cap 3000, ACCOUNT_ONLY
EYE_GEL_C = "XS01ECA001A001010100024"  # DRUG C OTC
WORK_REHAB = "340200001"  # TREATMENT A, cap 20000, WORK_INJURY_ONLY
APPENDECTOMY = "331003001"  # TREATMENT A, cap 150000
BED_A = "110900001"  # FACILITY A, cap 3000
TOOTHPASTE = "G00000001"  # GOODS C
UNKNOWN = "NOT-A-CODE-0001"

HOSPITAL = {
    "L1": Institution("H1", InstitutionKind.HOSPITAL, "L1", InstitutionStatus.ACTIVE),
    "L2": Institution("H2", InstitutionKind.HOSPITAL, "L2", InstitutionStatus.ACTIVE),
    "L3": Institution("H3", InstitutionKind.HOSPITAL, "L3", InstitutionStatus.ACTIVE),
}
PHARMACY = Institution("P1", InstitutionKind.PHARMACY, "", InstitutionStatus.ACTIVE)


@functools.cache
def policies() -> PolicyBook:
    return PolicyBook([load_policy(REFERENCE / "policy.toml")])


@functools.cache
def catalogs() -> CatalogBook:
    policy = policies().policies[0]
    return CatalogBook(
        [load_catalog(REFERENCE / "catalog.csv", effective_from=policy.effective_from)]
    )


def line(
    code: str, unit_price_fen: int, quantity: int = 1, line_no: int = 1, **extra: Any
) -> ClaimLine:
    return ClaimLine(
        line_no=line_no,
        item_code=code,
        quantity=quantity,
        unit_price_fen=unit_price_fen,
        amount_fen=quantity * unit_price_fen,
        **extra,
    )


def numbered(*lines: ClaimLine) -> tuple[ClaimLine, ...]:
    return tuple(replace(ln, line_no=i) for i, ln in enumerate(lines, start=1))


def claim(
    visit: VisitType,
    *lines: ClaimLine,
    day: date = DAY,
    admitted: date | None = None,
    diagnoses: tuple[str, ...] = ("J06.9",),
    **extra: Any,
) -> Claim:
    inpatient = visit is VisitType.INPATIENT
    return Claim(
        request_id="r1",
        institution_code="X",
        card_no="C1",
        visit_type=visit,
        lines=numbered(*lines),
        service_date=None if inpatient else day,
        admission_date=(admitted or day) if inpatient else None,
        discharge_date=day if inpatient else None,
        diagnoses=diagnoses,
        **extra,
    )


def member(
    category: MemberCategory = MemberCategory.EMPLOYEE,
    *,
    balance_fen: int = 1_000_000,
    year: int = DAY.year,
    birth_date: date = date(1980, 5, 5),
    diseases: tuple[ApprovedDisease, ...] = (),
    stays: tuple[InpatientStay, ...] = (),
    **extra: Any,
) -> MemberState:
    acc_fields = {k: extra.pop(k) for k in list(extra) if k in YearAccumulators.__slots__}
    return MemberState(
        member_id="M1",
        category=category,
        status=extra.pop("status", MemberStatus.ACTIVE),
        card_status=extra.pop("card_status", CardStatus.ACTIVE),
        birth_date=birth_date,
        balance_fen=balance_fen,
        year=YearAccumulators(year=year, **acc_fields),
        special_diseases=diseases,
        stays=stays,
        **extra,
    )


def run(
    c: Claim,
    m: MemberState | None = None,
    inst: Institution | None = None,
    *,
    pin_ok: bool = True,
    policy_book: PolicyBook | None = None,
    catalog_book: CatalogBook | None = None,
) -> Adjudication:
    if inst is None:
        inst = PHARMACY if c.visit_type is VisitType.PHARMACY else HOSPITAL["L3"]
    ctx = Context(institution=inst, member=m if m is not None else member(), pin_ok=pin_ok)
    return adjudicate(c, ctx, policy_book or policies(), catalog_book or catalogs())


def stay(
    discharged: date, diagnosis: str = "K35.8", *, settlement_id: str = "S0", days: int = 3
) -> InpatientStay:
    from datetime import timedelta

    return InpatientStay(
        settlement_id=settlement_id,
        primary_diagnosis=diagnosis,
        admission_date=discharged - timedelta(days=days),
        discharge_date=discharged,
        new_admission=True,
    )
