"""Properties of the engine over random claims, members and institutions.

Whatever the claim: the parts add up per line and per claim, no part is
negative, the account pays no more than the balance or what is payable, the
same input gives the same answer, a rejection pays and changes nothing, and
settling then cancelling restores the member's state exactly. A stateful run
settles and cancels claims in an in-memory region and checks the books.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import date, timedelta
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from adjudication.engine import uses_member_history
from adjudication.memory import apply_changes, load_region, revert_changes
from adjudication.model import (
    Adjudication,
    ApprovedDisease,
    CardStatus,
    Claim,
    ClaimLine,
    InjuryCause,
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
from adjudication.reference import parse_members, read_text
from tests.claims import REFERENCE
from tests.kit import catalogs
from tests.kit import run as judge

T = TypeVar("T")
YEAR = 2026
CODES = sorted(catalogs().catalogs[0].items)
UNKNOWN_CODES = ["UNKNOWN-1", "ZZ999"]
DIAGNOSES = ["E11.9", "E11", "I50.1", "N18", "D66", "C34.1", "K35.8", "J06.9", "S52.5"]
DISEASES = ["E11", "I50", "N18", "C34", "D66"]
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def mostly(common: T, *rare: T) -> st.SearchStrategy[T]:
    """`common` about 9 times in 10, else one of `rare`."""
    return st.integers(0, 9).flatmap(
        lambda n: st.sampled_from(rare) if n == 0 and rare else st.just(common)
    )


def near(*points: int) -> st.SearchStrategy[int]:
    """Values at and one either side of each point, or anywhere up to 2x the largest."""
    around = sorted({max(0, p + d) for p in points for d in (-1, 0, 1)})
    return st.one_of(st.sampled_from(around), st.integers(0, 2 * max(points)))


@st.composite
def lines(draw: st.DrawFn) -> tuple[ClaimLine, ...]:
    count = draw(st.integers(1, 8))
    out = []
    for n in range(1, count + 1):
        code = draw(st.sampled_from(CODES + UNKNOWN_CODES))
        quantity = draw(st.integers(1, 5))
        price = draw(st.one_of(st.integers(0, 3_000), st.integers(0, 800_000)))
        out.append(
            ClaimLine(
                line_no=n,
                item_code=code,
                quantity=quantity,
                unit_price_fen=price,
                amount_fen=quantity * price,
                days_supply=draw(st.sampled_from([0, 1, 7, 8, 30, 31])),
                approved=draw(st.booleans()),
                discharge_medication=draw(st.booleans()),
            )
        )
    return tuple(out)


@st.composite
def claims(draw: st.DrawFn, card_no: str = "C1", institution_code: str = "X") -> Claim:
    visit = draw(st.sampled_from(list(VisitType)))
    day = date(YEAR, 1, 1) + timedelta(days=draw(st.integers(20, 30)))
    admitted = day - timedelta(days=draw(st.integers(0, 15)))
    inpatient = visit is VisitType.INPATIENT
    cause = draw(mostly(InjuryCause.NONE, *InjuryCause))
    return Claim(
        request_id="r",
        institution_code=institution_code,
        card_no=card_no,
        visit_type=visit,
        lines=draw(lines()),
        service_date=None if inpatient else day,
        admission_date=admitted if inpatient else None,
        discharge_date=day if inpatient else None,
        diagnoses=(draw(st.sampled_from(DIAGNOSES)),),
        injury_cause=cause,
        accident_case_id=draw(st.sampled_from(["", "ACC1"])),
        prescription_ref=draw(mostly("RX1", "")),
        use_individual_account=draw(st.booleans()),
    )


@st.composite
def members(draw: st.DrawFn) -> MemberState:
    stays = tuple(
        InpatientStay(
            settlement_id=f"OLD{i}",
            primary_diagnosis=draw(st.sampled_from(["K35.8", "J06.9"])),
            admission_date=date(YEAR, 1, 1),
            discharge_date=date(YEAR, 1, 1) + timedelta(days=draw(st.integers(0, 30))),
            new_admission=True,
        )
        for i in range(draw(st.integers(0, 2)))
    )
    return MemberState(
        member_id="M1",
        category=draw(st.sampled_from(list(MemberCategory))),
        status=draw(mostly(MemberStatus.ACTIVE, *MemberStatus)),
        card_status=draw(mostly(CardStatus.ACTIVE, CardStatus.LOST)),
        birth_date=draw(st.sampled_from([date(1950, 1, 1), date(2008, 1, 25), date(2015, 6, 1)])),
        balance_fen=draw(near(0, 5_000, 100_000)),
        year=YearAccumulators(
            year=YEAR,
            outpatient_deductible_used_fen=draw(near(30_000, 70_000, 100_000)),
            outpatient_pooled_fen=draw(near(200_000, 500_000, 600_000)),
            basic_pooled_fen=draw(near(20_000_000, 40_000_000)),
            inpatient_above_deductible_fen=draw(near(5_000_000)),
            new_admissions=draw(st.integers(0, 3)),
            serious_illness_base_fen=draw(near(2_000_000)),
            serious_illness_paid_fen=draw(near(40_000_000)),
        ),
        pin_failures=draw(mostly(0, 4, 5)),
        special_diseases=tuple(
            ApprovedDisease(code, date(YEAR, 1, 1), date(YEAR, 12, 31))
            for code in draw(mostly(tuple(DISEASES), (), ("E11",)))
        ),
        stays=stays,
        pharmacy_purchases_today=draw(st.integers(0, 4)),
    )


@st.composite
def institutions(draw: st.DrawFn, visit: VisitType) -> Institution:
    pharmacy = visit is VisitType.PHARMACY
    if draw(mostly(False, True)):
        pharmacy = not pharmacy
    status = draw(mostly(InstitutionStatus.ACTIVE, *InstitutionStatus))
    if pharmacy:
        return Institution("P", InstitutionKind.PHARMACY, "", status)
    kind = draw(st.sampled_from([InstitutionKind.HOSPITAL, InstitutionKind.CLINIC]))
    return Institution("H", kind, draw(st.sampled_from(["L1", "L2", "L3"])), status)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Claim, MemberState, Institution, bool]:
    c = draw(claims())
    return c, draw(members()), draw(institutions(c.visit_type)), draw(mostly(True, False))


def check_answer(result: Adjudication, m: MemberState, claim: Claim) -> None:
    s = result.split
    assert s.as_dict() == asdict(s)  # the dict every stored answer is built from
    assert all(v >= 0 for v in s.as_dict().values()), s
    assert s.total_fen == sum(ln.amount_fen for ln in claim.lines)
    assert s.total_fen == (
        s.pooled_fund_fen
        + s.serious_illness_fen
        + s.institution_waiver_fen
        + s.individual_account_fen
        + s.patient_cash_fen
    )
    if not result.accepted:
        assert len(result.reasons) == 1 and result.reasons[0].startswith("R_")
        assert result.lines == () and result.changes is None
        assert s.patient_cash_fen == s.total_fen
        # As examples.json shows a rejection: total and cash only, no line parts
        # (so total = full + over + pre + in_scope holds for accepted claims only).
        others = {
            k: v for k, v in s.as_dict().items() if k not in ("total_fen", "patient_cash_fen")
        }
        assert set(others.values()) == {0}, others  # every other field 0 (integrators.md)
        return
    assert s.total_fen == (
        s.full_selfpay_fen + s.overlimit_selfpay_fen + s.preselfpay_fen + s.in_scope_fen
    )
    assert sum(ln.full_selfpay_fen for ln in result.lines) == s.full_selfpay_fen
    assert sum(ln.overlimit_selfpay_fen for ln in result.lines) == s.overlimit_selfpay_fen
    assert sum(ln.preselfpay_fen for ln in result.lines) == s.preselfpay_fen
    assert sum(ln.in_scope_fen for ln in result.lines) == s.in_scope_fen
    for ln in result.lines:
        parts = (ln.full_selfpay_fen, ln.overlimit_selfpay_fen, ln.preselfpay_fen, ln.in_scope_fen)
        assert all(p >= 0 for p in parts), ln
    payable = s.preselfpay_fen + s.in_scope_fen
    payable -= s.pooled_fund_fen + s.serious_illness_fen + s.institution_waiver_fen
    assert 0 <= s.individual_account_fen <= min(m.balance_fen, payable)
    assert result.balance_after_fen == m.balance_fen - s.individual_account_fen
    ch = result.changes
    assert ch is not None
    assert ch.account_debit_fen == s.individual_account_fen
    assert ch.basic_pooled_fen + ch.outpatient_pooled_fen == s.pooled_fund_fen
    assert ch.serious_illness_paid_fen == s.serious_illness_fen
    for name, value in ch.as_dict().items():
        if isinstance(value, int):
            assert value >= 0, name


@SETTINGS
@given(cases())
def test_split_invariants_and_determinism(
    case: tuple[Claim, MemberState, Institution, bool],
) -> None:
    """Sums, signs, account bounds; the same input gives the same answer twice."""
    c, m, inst, pin_ok = case
    first = judge(c, m, inst, pin_ok=pin_ok)
    check_answer(first, m, c)
    assert judge(c, m, inst, pin_ok=pin_ok) == first


@st.composite
def cases_with_history(draw: st.DrawFn) -> tuple[Claim, MemberState, Institution, bool]:
    """A case whose member's history bears on the claim, where the engine reads
    it: a stay of the same diagnosis ended 1-6 days before the claim's date
    (the same episode, a split admission), every special disease approved."""
    c, m, inst, pin_ok = draw(cases())
    day = c.admission_date or c.service_date
    assert day is not None
    ended = day - timedelta(days=draw(st.integers(1, 6)))
    stay = InpatientStay("OLD", c.primary_diagnosis, ended - timedelta(days=5), ended, True)
    approved = tuple(
        ApprovedDisease(code, date(YEAR, 1, 1), date(YEAR, 12, 31)) for code in DISEASES
    )
    return c, replace(m, stays=(stay,), special_diseases=approved), inst, pin_ok


@SETTINGS
@given(cases_with_history())
def test_a_claim_that_uses_no_history_is_judged_alike_without_it(
    case: tuple[Claim, MemberState, Institution, bool],
) -> None:
    """The ledger loads no special diseases or stays for a claim that
    uses_member_history says needs neither: its answer must not depend on them."""
    c, m, inst, pin_ok = case
    bare = replace(m, special_diseases=(), stays=())
    alike = judge(c, bare, inst, pin_ok=pin_ok) == judge(c, m, inst, pin_ok=pin_ok)
    assert alike or uses_member_history(c)


@SETTINGS
@given(cases())
def test_settle_then_cancel_restores_the_state(
    case: tuple[Claim, MemberState, Institution, bool],
) -> None:
    """apply_changes then revert_changes gives back exactly the state before."""
    c, m, inst, pin_ok = case
    result = judge(c, m, inst, pin_ok=pin_ok)
    if result.changes is None:
        return
    after = apply_changes(m, result.changes, "NEW")
    assert after.balance_fen >= 0
    assert revert_changes(after, result.changes, "NEW") == m


@SETTINGS
@given(cases())
def test_accepted_claim_rejudged_without_account_only_moves_cash(
    case: tuple[Claim, MemberState, Institution, bool],
) -> None:
    """skip_individual_account changes only the account/cash split, nothing else."""
    c, m, inst, _ = case
    used = judge(replace(c, use_individual_account=True), m, inst)
    skipped = judge(replace(c, use_individual_account=False), m, inst)
    assert used.reasons == skipped.reasons
    if not used.accepted:
        return
    a, b = used.split, skipped.split
    assert b.individual_account_fen == 0
    assert a.patient_cash_fen + a.individual_account_fen == b.patient_cash_fen
    assert replace(a, individual_account_fen=0, patient_cash_fen=0) == replace(
        b, patient_cash_fen=0
    )


# ---------------------------------------------------------------- stateful

OPENING = {
    row.member_id: row
    for row in parse_members(read_text(REFERENCE / "members.csv"), str(REFERENCE / "members.csv"))
}
PLAYERS = ["M0001", "M0002", "M0003", "M0004", "M0006", "M0008"]


class RegionMachine(RuleBasedStateMachine):
    """Settle and cancel random claims of a few members; the books must always agree."""

    settled = Bundle("settled")

    def __init__(self) -> None:
        super().__init__()
        self.region = load_region(REFERENCE)
        self.live: dict[str, Adjudication] = {}
        self.member_of: dict[str, str] = {}

    @rule(target=settled, data=st.data(), who=st.sampled_from(PLAYERS), pin_ok=mostly(True, False))
    def settle(self, data: st.DataObject, who: str, pin_ok: bool) -> str:
        row = OPENING[who]
        c = data.draw(claims(card_no=row.card_no))
        pharmacy = c.visit_type is VisitType.PHARMACY
        codes = [
            code
            for code, inst in self.region.institutions.items()
            if (inst.kind is InstitutionKind.PHARMACY) == pharmacy
        ]
        c = replace(c, institution_code=data.draw(st.sampled_from(sorted(codes))))
        pin = row.pin if pin_ok or data.draw(st.booleans()) else "000000"
        if pin == row.pin:
            # PreSettle and Settle differ only in whether the changes are applied.
            _, preview = self.region.adjudicate(c, pin, apply=False)
        sid, result = self.region.adjudicate(c, pin, apply=True)
        if pin == row.pin:
            assert preview == result
        if result.changes is not None:
            self.live[sid] = result
            self.member_of[sid] = who
        return sid

    @rule(sid=settled)
    def cancel(self, sid: str) -> None:
        self.region.cancel(sid)
        self.live.pop(sid, None)

    @invariant()
    def books_agree(self) -> None:
        for who in PLAYERS:
            record = self.region.members[who]
            mine = [r for sid, r in self.live.items() if self.member_of[sid] == who]
            assert record.balance_fen >= 0
            debits = sum(r.split.individual_account_fen for r in mine)
            assert record.balance_fen == OPENING[who].balance_fen - debits
            acc = record.years.get(YEAR, YearAccumulators(year=YEAR))
            for name in (
                "outpatient_deductible_used_fen",
                "outpatient_pooled_fen",
                "basic_pooled_fen",
                "inpatient_above_deductible_fen",
                "new_admissions",
                "serious_illness_base_fen",
                "serious_illness_paid_fen",
            ):
                expected = sum(getattr(r.changes, name) for r in mine)
                assert getattr(acc, name) == expected, name
            days: dict[date, int] = {}
            for r in mine:
                assert r.changes is not None
                if r.changes.pharmacy_date is not None:
                    days[r.changes.pharmacy_date] = days.get(r.changes.pharmacy_date, 0) + 1
            assert {d: n for d, n in record.pharmacy_days.items() if n} == days
            assert all(n <= 3 for n in days.values())
            assert len(record.stays) == sum(1 for r in mine if r.changes and r.changes.stay)


RegionMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_region_settle_and_cancel = RegionMachine.TestCase
