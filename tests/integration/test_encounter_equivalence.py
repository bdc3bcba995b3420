"""Settling an encounter gives, to the fen, what Settle gives for its one claim.

Random stays (a member and a hospital of the reference region, admission and
discharge dates, fee details uploaded in a few calls, some voided and some of
those uploaded again corrected, the discharge sometimes recorded twice, an
injury cause, the account used or not, now and then a wrong PIN) are run
through the encounter calls on one fresh database, and the claim each stands
for (its admission, discharge and lines not voided) through the plain Settle
on a second. Every answer must be identical but for the settlement id (same
status, reasons, warnings, split, line results, balance), and afterwards the
member's accumulators, stays, balance and every account of the ledger must
be the same on both. A second stay of the same member, and cancellations,
carry the state from one settlement to the next. The admission checks the
member's PIN; the plain side makes the same PIN entry (GetMember) before its
Settle, so PIN failure counts follow the same entries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import asyncpg
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger import db
from ledger.crypto import DataKeys
from ledger.store import Ledger
from switch import convert
from switch.backend import CancelCommand, SettlementView
from switch.proto import medswitch_pb2 as pb
from switch.service import LedgerBackend
from tests.integration.conftest import REFERENCE_TEMPLATE

# (card, PIN): employees, a retiree, residents (one a child) and a retired
# cadre, each twice as likely as the suspended and the deceased member.
ACTIVE = (
    ("C3303990001", "135790"),
    ("C3303990002", "246802"),
    ("C3303990003", "112233"),
    ("C3303990004", "998877"),
    ("C3303990005", "445566"),
    ("C3303990006", "778899"),
    ("C3303990014", "121212"),
)
MEMBERS = (*ACTIVE, *ACTIVE, ("C3303990009", "111111"), ("C3303990010", "222222"))
# L3, L2, L1 hospitals (three times as likely), a clinic and a pharmacy (an
# institution that is not active admits no one: INSTITUTION_NOT_ACTIVE).
HOSPITALS = ("H33039900001", "H33039900002", "H33039900003")
INSTITUTIONS = (*HOSPITALS, *HOSPITALS, *HOSPITALS, "H33039900004", "P33039900005")
# Bed, nursing, procedures, drugs (A, B, C, inpatient-only, restricted,
# child-only), materials, and a code not in the catalog.
ITEMS = (
    ("110900001", 3_000),
    ("111000001", 2_000),
    ("331003001", 150_000),
    ("210300014", 30_000),
    ("XJ01CAA040A001010100001", 900),
    ("XB05BAF001B002010100017", 5_000),
    ("XS01ECA001A001010100024", 1_200),
    ("XR05XAE001A001010100018", 1_500),
    ("C01010003", 800),
    ("NOT-A-CODE-0001", 700),
)
DIAGNOSES = ("K35.8", "J18.9", "I63.9")
CAUSES = (pb.INJURY_CAUSE_NONE,) * 6 + (pb.INJURY_CAUSE_ACCIDENT, pb.INJURY_CAUSE_FIGHT)


@dataclass(frozen=True)
class Stay:
    institution: str
    admitted: date
    days: int
    diagnosis: str
    cause: int
    case_id: str
    lines: tuple[pb.ClaimLine, ...]
    uploads: int  # the lines are sent in this many calls
    voided: frozenset[int]  # indexes into lines
    corrected: frozenset[int]  # voided lines uploaded again at another price
    rediagnosed: bool  # the discharge is recorded twice, the first time wrongly
    skip_account: bool
    wrong_pin: bool
    cancel: bool  # the settlement is cancelled afterwards

    @property
    def discharged(self) -> date:
        return self.admitted + timedelta(days=self.days)

    def live_lines(self) -> list[pb.ClaimLine]:
        """The claim's lines: those not voided, and the corrections."""
        kept = [ln for i, ln in enumerate(self.lines) if i not in self.voided]
        return kept + [self.correction(i) for i in sorted(self.corrected)]

    def correction(self, i: int) -> pb.ClaimLine:
        line = self.lines[i]
        price = line.unit_price_fen // 2 + 1
        return pb.ClaimLine(
            line_no=100 + i, item_code=line.item_code, quantity=line.quantity,
            unit_price_fen=price, amount_fen=price * line.quantity,
            days_supply=line.days_supply, discharge_medication=line.discharge_medication,
        )  # fmt: skip


@st.composite
def lines(draw: st.DrawFn) -> tuple[pb.ClaimLine, ...]:
    out = []
    for no in range(1, draw(st.integers(1, 12)) + 1):
        code, cap = draw(st.sampled_from(ITEMS))
        price = draw(st.sampled_from([cap // 2, cap, cap + cap // 5 + 1, 1]))
        quantity = draw(st.integers(1, 4))
        out.append(
            pb.ClaimLine(
                line_no=no, item_code=code, quantity=quantity, unit_price_fen=price,
                amount_fen=price * quantity, days_supply=draw(st.sampled_from([0, 7, 40])),
                approved=draw(st.booleans()), discharge_medication=draw(st.booleans()),
            )
        )  # fmt: skip
    return tuple(out)


@st.composite
def stays(draw: st.DrawFn, admitted: date) -> Stay:
    fee_lines = draw(lines())
    indexes = range(len(fee_lines))
    voided = draw(st.frozensets(st.sampled_from(indexes), max_size=len(fee_lines) - 1))
    return Stay(
        institution=draw(st.sampled_from(INSTITUTIONS)),
        admitted=admitted,
        days=draw(st.integers(0, 14)),
        diagnosis=draw(st.sampled_from(DIAGNOSES)),
        cause=draw(st.sampled_from(CAUSES)),
        case_id=draw(st.sampled_from(["", "ACC-7"])),
        lines=fee_lines,
        uploads=draw(st.integers(1, 3)),
        voided=voided,
        corrected=draw(st.frozensets(st.sampled_from(sorted(voided)))) if voided else frozenset(),
        rediagnosed=draw(st.booleans()),
        skip_account=draw(st.integers(0, 9)) == 0,
        wrong_pin=draw(st.integers(0, 14)) == 0,
        cancel=draw(st.integers(0, 3)) == 0,
    )


@st.composite
def histories(draw: st.DrawFn) -> tuple[tuple[str, str], list[Stay]]:
    """A member and one or two stays, the second soon after the first."""
    member = draw(st.sampled_from(MEMBERS))
    first = draw(stays(date(2026, 1, 5) + timedelta(days=draw(st.integers(0, 300)))))
    out = [first]
    if draw(st.booleans()):
        gap = draw(st.integers(0, 15))
        out.append(draw(stays(first.discharged + timedelta(days=gap))))
    return member, out


@asynccontextmanager
async def backend_on(url: str, data_key: bytes) -> AsyncIterator[LedgerBackend]:
    pool = await db.open_database(url, min_size=1, max_size=4)
    backend = await LedgerBackend.open(
        pool, Ledger(pool, DataKeys(data_key)), probe=db.Probe(url), group_commit=False
    )
    try:
        yield backend
    finally:
        await backend.close()
        await pool.close()


async def settle_as_encounter(
    backend: LedgerBackend, member: tuple[str, str], stay: Stay, rid: str
) -> SettlementView:
    """The stay through the encounter calls, as the servicer converts them."""
    card, pin = member
    desk = backend.encounters
    admit = pb.RegisterAdmissionRequest(
        request_id=f"{rid}-a", institution_code=stay.institution, card_no=card, pin=pin,
        admission_date=stay.admitted.isoformat(), department="Ward 3", diagnoses=["R10.4"],
        injury_cause=stay.cause, accident_case_id=stay.case_id,
    )  # fmt: skip
    encounter = await desk.register_admission(
        convert.admission_command(admit), convert.request_digest(admit)
    )
    call = dict(institution_code=stay.institution, encounter_id=encounter.encounter_id)
    size = -(-len(stay.lines) // stay.uploads)
    for n, start in enumerate(range(0, len(stay.lines), size)):
        upload = pb.UploadFeeDetailsRequest(
            request_id=f"{rid}-u{n}", lines=stay.lines[start : start + size], **call
        )
        await desk.upload_fee_details(
            convert.upload_command(upload), b"u" + upload.request_id.encode()
        )
    if stay.voided:
        void = pb.VoidFeeDetailsRequest(
            request_id=f"{rid}-v", line_nos=[stay.lines[i].line_no for i in sorted(stay.voided)],
            **call,
        )  # fmt: skip
        await desk.void_fee_details(convert.void_command(void), convert.request_digest(void))
    if stay.corrected:
        fix = pb.UploadFeeDetailsRequest(
            request_id=f"{rid}-c", lines=[stay.correction(i) for i in sorted(stay.corrected)],
            **call,
        )  # fmt: skip
        await desk.upload_fee_details(convert.upload_command(fix), convert.request_digest(fix))
    for n, diagnosis in enumerate(
        ["Z00.0", stay.diagnosis] if stay.rediagnosed else [stay.diagnosis]
    ):
        out = pb.RecordDischargeRequest(
            request_id=f"{rid}-d{n}", discharge_date=stay.discharged.isoformat(),
            diagnoses=[diagnosis, "I10"], **call,
        )  # fmt: skip
        await desk.record_discharge(convert.discharge_command(out), convert.request_digest(out))
    settle = pb.SettleEncounterRequest(
        request_id=rid, card_no=card, pin="000000" if stay.wrong_pin else pin,
        skip_individual_account=stay.skip_account, **call,
    )  # fmt: skip
    command = convert.settle_encounter_command(settle)
    return await desk.settle_encounter(command, convert.request_digest(settle))


async def settle_as_claim(
    backend: LedgerBackend, member: tuple[str, str], stay: Stay, rid: str
) -> SettlementView:
    """The claim the stay stands for, through the plain Settle (after the PIN
    entry the admission made on the other side: a right PIN resets the count)."""
    card, pin = member
    await backend.get_member(stay.institution, card, pin)
    request = pb.SettleRequest(
        request_id=rid, institution_code=stay.institution, card_no=card,
        pin="000000" if stay.wrong_pin else pin, visit_type=pb.VISIT_TYPE_INPATIENT,
        admission_date=stay.admitted.isoformat(), discharge_date=stay.discharged.isoformat(),
        diagnoses=[stay.diagnosis, "I10"], injury_cause=stay.cause,
        accident_case_id=stay.case_id, skip_individual_account=stay.skip_account,
        lines=sorted(stay.live_lines(), key=lambda ln: ln.line_no),
    )  # fmt: skip
    claim, violations = convert.claim_from_request(request)
    assert claim is not None, violations
    return await backend.settle(claim, request.pin, convert.request_digest(request))


def answer(view: SettlementView) -> dict[str, Any]:
    return {
        "status": view.status,
        "reasons": view.reasons,
        "warnings": view.warnings,
        "split": view.split,
        "lines": view.lines,
        "balance_after_fen": view.balance_after_fen,
        "member_id": view.member_id,
        "business_date": view.business_date,
    }


async def books(url: str) -> dict[str, Any]:
    """What the settlements changed: accumulators, stays, balances, every account."""
    conn = await asyncpg.connect(url)
    try:
        years = await conn.fetch("SELECT * FROM member_year ORDER BY member_id, year")
        stays_ = await conn.fetch(
            "SELECT member_id, primary_diagnosis, admission_date, discharge_date, new_admission"
            " FROM inpatient_stays ORDER BY member_id, admission_date, discharge_date"
        )
        accounts = await conn.fetch(
            "SELECT a.account_key, sum(p.amount_fen) AS fen FROM postings p"
            " JOIN accounts a USING (account_id) GROUP BY 1 ORDER BY 1"
        )
        members = await conn.fetch("SELECT member_id, pin_failures FROM members ORDER BY 1")
    finally:
        await conn.close()
    return {
        "years": [tuple(r) for r in years],
        "stays": [tuple(r) for r in stays_],
        "accounts": [tuple(r) for r in accounts],
        "members": [tuple(r) for r in members],
    }


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories())
async def test_an_encounter_settles_as_the_claim_it_stands_for(
    make_db: Callable[[str], Awaitable[str]],
    data_key: bytes,
    history: tuple[tuple[str, str], list[Stay]],
) -> None:
    member, stays_ = history
    url_a, url_b = await make_db(REFERENCE_TEMPLATE), await make_db(REFERENCE_TEMPLATE)
    async with backend_on(url_a, data_key) as a, backend_on(url_b, data_key) as b:
        for n, stay in enumerate(stays_):
            rid = f"eq-{n}"
            via_encounter = await settle_as_encounter(a, member, stay, rid)
            via_claim = await settle_as_claim(b, member, stay, rid)
            assert answer(via_encounter) == answer(via_claim), stay
            event(f"{via_claim.status.value} {' '.join(via_claim.reasons + via_claim.warnings)}")
            if stay.cancel and via_claim.status.value == "SETTLED":
                for backend, view in ((a, via_encounter), (b, via_claim)):
                    command = CancelCommand(
                        f"{rid}-x", stay.institution, view.settlement_id, "", ""
                    )
                    await backend.cancel(command, f"{rid}-x".encode())
    assert await books(url_a) == await books(url_b)
