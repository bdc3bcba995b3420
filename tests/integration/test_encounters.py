"""Inpatient stays through the EncounterService, over real gRPC + mTLS + PostgreSQL.

A stay from admission to settlement (uploads answered line by line, a void,
the discharge, a pre-settlement, the settlement, its retry, its
cancellation reopening the stay, a correction and a second settlement);
idempotency and the binding to the registering institution; each refusal;
details that never reach the ledger while a settled stay reconciles and
clears like any settlement; what GetMember says is left; two settlements
of one stay at once; an encounter that changes while it is settled; and a
stay of 20,000 lines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest

from adjudication import limits as alimits
from ledger import chain, db
from ledger.encounters import EncounterChanged, refusal
from ledger.endofday import close_day
from switch import convert
from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from tests.cli import ROOT
from tests.grpc_harness import channel, error_details
from tests.switch_pg import LiveSwitch
from tests.switch_pg import live as live
from tests.switch_pg import switch_certs as switch_certs
from tests.switch_pg import switch_pg as switch_pg

H1, H2 = "H33039900001", "H33039900002"  # L3, L2
ADMITTED, DISCHARGED = "2026-11-10", "2026-11-18"
# (item, unit price fen): a bed (A, cap 3000), an appendectomy (A), an
# inpatient-only amino acid infusion (B 10 %), a class C eye gel, an unknown code.
ITEMS = (
    ("110900001", 3_000),
    ("331003001", 150_000),
    ("XB05BAF001B002010100017", 4_000),
    ("XS01ECA001A001010100024", 1_500),
    ("NOT-A-CODE-0001", 900),
)


class Hospital:
    """One institution's stubs over its own mTLS channel."""

    def __init__(self, ch: grpc.aio.Channel, code: str) -> None:
        self.code = code
        self.enc = pb_grpc.EncounterServiceStub(ch)
        self.settlement = pb_grpc.SettlementServiceStub(ch)
        self.members = pb_grpc.MemberServiceStub(ch)
        self.recon = pb_grpc.ReconciliationServiceStub(ch)

    async def admit(self, rid: str, card: str, pin: str, **extra: Any) -> pb.Encounter:
        answer: pb.Encounter = await self.enc.RegisterAdmission(
            admission(rid, self.code, card, pin, **extra)
        )
        return answer

    async def upload(self, rid: str, encounter_id: str, first: int, count: int) -> Any:
        return await self.enc.UploadFeeDetails(
            pb.UploadFeeDetailsRequest(
                request_id=rid,
                institution_code=self.code,
                encounter_id=encounter_id,
                lines=fee_lines(first, count),
            )
        )

    async def discharge(self, rid: str, encounter_id: str, day: str = DISCHARGED) -> Any:
        return await self.enc.RecordDischarge(
            pb.RecordDischargeRequest(
                request_id=rid,
                institution_code=self.code,
                encounter_id=encounter_id,
                discharge_date=day,
                diagnoses=["K35.8", "I10"],
            )
        )

    def settle_request(self, rid: str, encounter_id: str, card: str, pin: str) -> Any:
        return pb.SettleEncounterRequest(
            request_id=rid,
            institution_code=self.code,
            encounter_id=encounter_id,
            card_no=card,
            pin=pin,
        )


def admission(rid: str, institution: str, card: str, pin: str, **extra: Any) -> Any:
    return pb.RegisterAdmissionRequest(
        request_id=rid,
        institution_code=institution,
        card_no=card,
        pin=pin,
        admission_date=extra.pop("admission_date", ADMITTED),
        department=extra.pop("department", "General surgery"),
        diagnoses=["K35.9"],
        **extra,
    )


def fee_lines(first: int, count: int) -> list[Any]:
    out = []
    for no in range(first, first + count):
        code, price = ITEMS[no % len(ITEMS)]
        quantity = 1 + no % 3
        out.append(
            pb.ClaimLine(
                line_no=no,
                item_code=code,
                quantity=quantity,
                unit_price_fen=price,
                amount_fen=price * quantity,
            )
        )
    return out


async def refused(call: Any) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    try:
        await call
    except grpc.aio.AioRpcError as err:
        details = error_details(err)
        return details.code, details.reason, details.violations
    raise AssertionError("the call succeeded")


@pytest.fixture
async def h1(live: LiveSwitch) -> AsyncIterator[Hospital]:
    async with channel(live.running.port, live.certs.creds(H1)) as ch:
        yield Hospital(ch, H1)


@pytest.fixture
async def h2(live: LiveSwitch) -> AsyncIterator[Hospital]:
    async with channel(live.running.port, live.certs.creds(H2)) as ch:
        yield Hospital(ch, H2)


async def test_a_stay_from_admission_to_settlement_and_back(h1: Hospital) -> None:
    card, pin = "C3303990001", "135790"
    stay = await h1.admit("st-admit", card, pin)
    assert stay.status == pb.ENCOUNTER_STATUS_ADMITTED and stay.encounter_id.startswith("E2026")
    assert (stay.member_id, stay.request_id, stay.line_count) == ("M0001", "st-admit", 0)
    first = await h1.upload("st-up-1", stay.encounter_id, 1, 6)
    assert [r.line_no for r in first.lines] == list(range(1, 7))
    by_no = {r.line_no: r for r in first.lines}
    assert by_no[3].item_class == "C" and list(by_no[3].reasons) == ["L_CLASS_C"]
    assert list(by_no[4].reasons) == ["L_NOT_IN_CATALOG"] and by_no[4].item_class == ""
    assert by_no[2].item_class == "B" and by_no[2].preselfpay_fen > 0
    second = await h1.upload("st-up-2", stay.encounter_id, 7, 4)
    assert second.line_count == 10
    voided = await h1.enc.VoidFeeDetails(
        pb.VoidFeeDetailsRequest(
            request_id="st-void", institution_code=H1, encounter_id=stay.encounter_id,
            line_nos=[2, 9], reason="charged twice",
        )
    )  # fmt: skip
    amounts = {ln.line_no: ln.amount_fen for ln in fee_lines(1, 10)}
    assert list(voided.voided_line_nos) == [2, 9] and voided.line_count == 8
    assert voided.total_fen == sum(a for no, a in amounts.items() if no not in (2, 9))
    code, reason, _ = await refused(
        h1.enc.SettleEncounter(h1.settle_request("st-early", stay.encounter_id, card, pin))
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ENCOUNTER_NOT_READY")
    out = await h1.discharge("st-out", stay.encounter_id)
    assert out.status == pb.ENCOUNTER_STATUS_DISCHARGED and out.discharge_date == DISCHARGED
    request = h1.settle_request("st-settle", stay.encounter_id, card, pin)
    preview = await h1.enc.PreSettleEncounter(request)
    settled = await h1.enc.SettleEncounter(request)
    assert preview.status == pb.SETTLEMENT_STATUS_PREVIEW
    assert settled.status == pb.SETTLEMENT_STATUS_SETTLED and settled.settlement_id
    assert settled.split == preview.split and settled.split.total_fen == voided.total_fen
    assert [ln.line_no for ln in settled.lines] == [1, 3, 4, 5, 6, 7, 8, 10]
    assert settled.split.pooled_fund_fen > 0 and settled.split.deductible_fen == 90_000  # L3
    assert await h1.enc.SettleEncounter(request) == settled  # a retry: the same answer
    fetched = await h1.settlement.GetSettlement(
        pb.GetSettlementRequest(institution_code=H1, settlement_id=settled.settlement_id)
    )
    assert fetched.split == settled.split
    now = await h1.enc.GetEncounter(
        pb.GetEncounterRequest(institution_code=H1, encounter_id=stay.encounter_id)
    )
    assert now.status == pb.ENCOUNTER_STATUS_SETTLED and now.settlement_id == settled.settlement_id
    code, reason, _ = await refused(h1.upload("st-late", stay.encounter_id, 11, 1))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ENCOUNTER_CLOSED")
    code, reason, _ = await refused(
        h1.enc.SettleEncounter(h1.settle_request("st-twice", stay.encounter_id, card, pin))
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ENCOUNTER_CLOSED")


async def test_cancelling_the_settlement_reopens_the_stay_for_correction(h1: Hospital) -> None:
    """2305: CancelSettlement gives back what the settlement took; the stay is open
    again, takes a correction and settles again under a new request id."""
    card, pin = "C3303990014", "121212"
    stay = await h1.admit("re-admit", card, pin)
    await h1.upload("re-up", stay.encounter_id, 1, 4)
    await h1.discharge("re-out", stay.encounter_id)
    settled = await h1.enc.SettleEncounter(
        h1.settle_request("re-settle", stay.encounter_id, card, pin)
    )
    await h1.settlement.CancelSettlement(
        pb.CancelSettlementRequest(
            request_id="re-cancel", institution_code=H1, settlement_id=settled.settlement_id
        )
    )
    reopened = await h1.enc.GetEncounter(
        pb.GetEncounterRequest(institution_code=H1, encounter_id=stay.encounter_id)
    )
    assert reopened.status == pb.ENCOUNTER_STATUS_DISCHARGED and not reopened.settlement_id
    await h1.upload("re-fix", stay.encounter_id, 11, 2)
    again = await h1.enc.SettleEncounter(
        h1.settle_request("re-settle-2", stay.encounter_id, card, pin)
    )
    assert again.status == pb.SETTLEMENT_STATUS_SETTLED
    assert again.settlement_id != settled.settlement_id
    extra = sum(ln.amount_fen for ln in fee_lines(11, 2))
    assert again.split.total_fen == settled.split.total_fen + extra
    # The cancellation gave back the deductible and the admission: the same
    # deductible again, and the balance counted from where it was before.
    assert again.split.deductible_fen == settled.split.deductible_fen
    before = settled.balance_after_fen + settled.split.individual_account_fen
    assert again.balance_after_fen == before - again.split.individual_account_fen


async def test_calls_are_idempotent_and_bound_to_the_registering_institution(
    h1: Hospital, h2: Hospital
) -> None:
    card, pin = "C3303990006", "778899"
    stay = await h1.admit("id-admit", card, pin)
    assert await h1.admit("id-admit", card, pin) == stay  # a retry: the same encounter
    code, reason, _ = await refused(h1.admit("id-admit", card, pin, department="ICU"))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    first = await h1.upload("id-up", stay.encounter_id, 1, 3)
    assert await h1.upload("id-up", stay.encounter_id, 1, 3) == first
    code, reason, _ = await refused(h1.upload("id-up", stay.encounter_id, 1, 2))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    for call in (
        h2.enc.GetEncounter(
            pb.GetEncounterRequest(institution_code=H2, encounter_id=stay.encounter_id)
        ),
        h2.upload("id-other", stay.encounter_id, 10, 1),
        h2.discharge("id-other-out", stay.encounter_id),
        h2.enc.SettleEncounter(h2.settle_request("id-other-s", stay.encounter_id, card, pin)),
    ):
        code, reason, _ = await refused(call)
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_ADMITTING_INSTITUTION")
    # The request names the certificate's institution (the edge's binding).
    code, reason, _ = await refused(
        h2.enc.GetEncounter(
            pb.GetEncounterRequest(institution_code=H1, encounter_id=stay.encounter_id)
        )
    )
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "INSTITUTION_MISMATCH")
    code, reason, _ = await refused(
        h1.enc.GetEncounter(pb.GetEncounterRequest(institution_code=H1, encounter_id="E-none"))
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "ENCOUNTER_NOT_FOUND")
    code, reason, _ = await refused(h1.admit("id-wrong-pin", card, "000000"))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "PIN_INVALID")


async def test_a_member_in_hospital_is_not_admitted_again(h1: Hospital, h2: Hospital) -> None:
    """One stay at a time (在院): while an admission has no discharge recorded, a
    second one, here or at another hospital, is refused and changes nothing; a
    retry of the first still gets its answer; once the stay is discharged, or an
    admission cancelled, the member is admitted again."""
    card, pin = "C3303990003", "112233"
    first = await h1.admit("ih-admit", card, pin)
    for hospital, rid in ((h1, "ih-again"), (h2, "ih-there")):
        code, reason, _ = await refused(hospital.admit(rid, card, pin))
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MEMBER_IN_HOSPITAL")
    assert await h1.admit("ih-admit", card, pin) == first  # the retry: its answer
    ask = pb.GetMemberRequest(institution_code=h2.code, card_no=card, pin=pin)
    assert (await h2.members.GetMember(ask)).open_encounter.encounter_id == first.encounter_id
    # Two hospitals at once: one admission passes, the other is refused.
    await h1.enc.CancelAdmission(
        pb.CancelAdmissionRequest(
            request_id="ih-cancel", institution_code=h1.code,
            encounter_id=first.encounter_id, reason="registered in error",
        )
    )  # fmt: skip
    both = await asyncio.gather(
        h1.admit("ih-race-1", card, pin), h2.admit("ih-race-2", card, pin),
        return_exceptions=True,
    )  # fmt: skip
    admitted = [a for a in both if isinstance(a, pb.Encounter)]
    refusals = [error_details(e).reason for e in both if isinstance(e, grpc.aio.AioRpcError)]
    assert len(admitted) == 1 and refusals == ["MEMBER_IN_HOSPITAL"], both
    # Discharged (not yet settled): the member may be admitted again, anywhere.
    (stay,) = admitted
    owner = h1 if stay.institution_code == h1.code else h2
    await owner.discharge("ih-out", stay.encounter_id)
    again = await (h2 if owner is h1 else h1).admit("ih-next", card, pin)
    assert again.status == pb.ENCOUNTER_STATUS_ADMITTED


async def test_refusals_name_the_field_or_the_state(h1: Hospital) -> None:
    card, pin = "C3303990008", "564738"
    stay = await h1.admit("rf-admit", card, pin)
    eid = stay.encounter_id
    await h1.upload("rf-up", eid, 1, 3)
    code, _, fields = await refused(h1.upload("rf-dup", eid, 3, 2))  # line 3 again
    assert code == grpc.StatusCode.INVALID_ARGUMENT and set(fields) == {"lines[0].line_no"}
    too_many = pb.UploadFeeDetailsRequest(
        request_id="rf-big", institution_code=H1, encounter_id=eid,
        lines=fee_lines(100, alimits.upload_lines_max + 1),
    )  # fmt: skip
    code, _, fields = await refused(h1.enc.UploadFeeDetails(too_many))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "lines" in fields
    code, _, fields = await refused(
        h1.enc.VoidFeeDetails(
            pb.VoidFeeDetailsRequest(
                request_id="rf-void", institution_code=H1, encounter_id=eid, line_nos=[1, 77]
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and set(fields) == {"line_nos[1]"}
    code, _, fields = await refused(h1.discharge("rf-out-early", eid, "2026-11-01"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and set(fields) == {"discharge_date"}
    await h1.discharge("rf-out", eid)
    other_card = h1.settle_request("rf-s", eid, "C3303990012", "808080")
    code, _, fields = await refused(h1.enc.SettleEncounter(other_card))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and set(fields) == {"card_no"}
    cancelled = await h1.enc.CancelAdmission(
        pb.CancelAdmissionRequest(request_id="rf-cancel", institution_code=H1, encounter_id=eid)
    )
    assert cancelled.status == pb.ENCOUNTER_STATUS_CANCELLED
    for call in (
        h1.upload("rf-after", eid, 50, 1),
        h1.enc.SettleEncounter(h1.settle_request("rf-s2", eid, card, pin)),
    ):
        code, reason, _ = await refused(call)
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ENCOUNTER_CLOSED")


async def _entries_and_postings(url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM entries) AS e, (SELECT count(*) FROM postings) AS p"
        )
        return int(row["e"]), int(row["p"])
    finally:
        await conn.close()


async def test_details_never_reach_the_ledger_and_a_settled_stay_reconciles(
    live: LiveSwitch, h2: Hospital
) -> None:
    """Uploads, voids and the discharge post nothing; the stay's settlement is one
    settlement in ReconcileTotals, ReconcileDetails, the day's clearing and
    `ledger verify`."""
    card, pin = "C3303990012", "808080"
    before = await _entries_and_postings(live.db_url)
    stay = await h2.admit("rc-admit", card, pin)
    for i in range(3):
        await h2.upload(f"rc-up-{i}", stay.encounter_id, 1 + 10 * i, 10)
    await h2.enc.VoidFeeDetails(
        pb.VoidFeeDetailsRequest(
            request_id="rc-void", institution_code=H2, encounter_id=stay.encounter_id, line_nos=[5]
        )
    )
    await h2.discharge("rc-out", stay.encounter_id)
    await h2.enc.PreSettleEncounter(h2.settle_request("rc-pre", stay.encounter_id, card, pin))
    assert await _entries_and_postings(live.db_url) == before
    day = (await h2.enc.GetEncounter(
        pb.GetEncounterRequest(institution_code=H2, encounter_id=stay.encounter_id)
    )).admission_date  # fmt: skip
    empty = await h2.recon.ReconcileTotals(
        pb.ReconcileTotalsRequest(institution_code=H2, business_date="2026-11-20")
    )
    assert empty.switch_settlement_count == 0 and day == ADMITTED

    settled = await h2.enc.SettleEncounter(h2.settle_request("rc-s", stay.encounter_id, card, pin))
    s = settled.split
    fund = s.pooled_fund_fen + s.serious_illness_fen + s.individual_account_fen
    totals = await h2.recon.ReconcileTotals(
        pb.ReconcileTotalsRequest(
            institution_code=H2, business_date=settled.business_date, settlement_count=1,
            medical_total_fen=s.total_fen, pooled_fund_fen=s.pooled_fund_fen,
            serious_illness_fen=s.serious_illness_fen,
            individual_account_fen=s.individual_account_fen,
        )
    )  # fmt: skip
    assert totals.matched, totals

    async def records() -> AsyncIterator[pb.ReconcileDetailRecord]:
        yield pb.ReconcileDetailRecord(
            institution_code=H2, business_date=settled.business_date,
            settlement_id=settled.settlement_id, request_id="rc-s", total_fen=s.total_fen,
            fund_total_fen=fund, status=pb.SETTLEMENT_STATUS_SETTLED,
        )  # fmt: skip

    details = await h2.recon.ReconcileDetails(records())
    assert details.matched_count == 1 and not details.mismatched
    assert not details.missing_at_switch and not details.missing_at_institution

    conn = await asyncpg.connect(live.db_url)
    try:
        report = await chain.verify(conn)
        assert report.sound, report.problems
        await conn.execute(f"SET ROLE {db.OPERATOR_ROLE}")  # as `medswitch day close`
        closed = await close_day(conn)
        row = await conn.fetchrow(
            "SELECT pooled_fund_fen, serious_illness_fen, individual_account_fen, settlement_count"
            " FROM day_clearing WHERE business_date = $1 AND institution_code = $2",
            closed.closed_date,
            H2,
        )
    finally:
        await conn.close()
    assert tuple(row) == (s.pooled_fund_fen, s.serious_illness_fen, s.individual_account_fen, 1)


async def test_get_member_shows_the_year_left_and_the_open_stay(h1: Hospital) -> None:
    card, pin = "C3303990017", "787878"
    ask = pb.GetMemberRequest(institution_code=H1, card_no=card, pin=pin)
    fresh = await h1.members.GetMember(ask)
    b = fresh.benefits
    assert (b.benefit_year, b.new_admissions, b.basic_pooled_fen) == (2026, 0, 0)
    assert b.outpatient_deductible_left_fen == 100_000 and b.outpatient_pooled_left_fen == 500_000
    assert (b.inpatient_deductible_fen, b.inpatient_deductible_level) == (90_000, "L3")
    assert b.basic_pooled_left_fen == 40_000_000 and not b.basic_pooled_unlimited
    assert not fresh.HasField("open_encounter")
    stay = await h1.admit("gm-admit", card, pin)
    await h1.upload("gm-up", stay.encounter_id, 1, 5)
    during = await h1.members.GetMember(ask)
    assert during.open_encounter.encounter_id == stay.encounter_id
    assert during.open_encounter.status == pb.ENCOUNTER_STATUS_ADMITTED
    assert during.open_encounter.line_count == 5
    await h1.discharge("gm-out", stay.encounter_id)
    settled = await h1.enc.SettleEncounter(h1.settle_request("gm-s", stay.encounter_id, card, pin))
    after = await h1.members.GetMember(ask)
    assert not after.HasField("open_encounter")
    b = after.benefits
    assert b.new_admissions == 1 and b.basic_pooled_fen == settled.split.pooled_fund_fen
    assert b.basic_pooled_left_fen == 40_000_000 - settled.split.pooled_fund_fen
    assert b.inpatient_deductible_fen == 45_000  # a second admission this year: half
    assert b.serious_illness_paid_fen == settled.split.serious_illness_fen
    assert after.balance_fen == fresh.balance_fen - settled.split.individual_account_fen


async def test_two_settlements_of_one_stay_at_once_settle_it_once(h2: Hospital) -> None:
    card, pin = "C3303990019", "242424"
    stay = await h2.admit("tw-admit", card, pin)
    await h2.upload("tw-up", stay.encounter_id, 1, 4)
    await h2.discharge("tw-out", stay.encounter_id)
    calls = [
        h2.enc.SettleEncounter(h2.settle_request(f"tw-s{i}", stay.encounter_id, card, pin))
        for i in range(4)
    ]
    answers = await asyncio.gather(*calls, return_exceptions=True)
    settled = [a for a in answers if isinstance(a, pb.SettleResponse)]
    assert len(settled) == 1 and settled[0].status == pb.SETTLEMENT_STATUS_SETTLED, answers
    for other in answers:
        if isinstance(other, grpc.aio.AioRpcError):
            assert error_details(other).reason == "ENCOUNTER_CLOSED"
    now = await h2.enc.GetEncounter(
        pb.GetEncounterRequest(institution_code=H2, encounter_id=stay.encounter_id)
    )
    assert now.settlement_id == settled[0].settlement_id


async def test_a_stay_that_changes_while_it_settles_records_nothing(
    live: LiveSwitch, h1: Hospital
) -> None:
    """The claim is built, an upload lands, then the settlement is recorded:
    the record statement refuses it (nothing written); the same request again
    settles what the stay holds now."""
    card, pin = "C3303990015", "343434"
    stay = await h1.admit("ch-admit", card, pin)
    await h1.upload("ch-up", stay.encounter_id, 1, 3)
    await h1.discharge("ch-out", stay.encounter_id)
    request = h1.settle_request("ch-s", stay.encounter_id, card, pin)
    desk = live.backend.encounters
    command = convert.settle_encounter_command(request)
    fingerprint = live.backend.fingerprint(convert.request_digest(request), card, pin)
    stored = await desk.store.settle_intent(
        (H1, "ch-s"), fingerprint, stay.encounter_id, desk._card(card)
    )
    claim = await desk._claim(stored, command)
    await h1.upload("ch-late", stay.encounter_id, 4, 1)
    before = await _entries_and_postings(live.db_url)
    with pytest.raises(asyncpg.PostgresError) as caught:
        await live.backend.writer.settle(claim, pin, fingerprint)
    assert isinstance(refusal(caught.value), EncounterChanged)
    assert await _entries_and_postings(live.db_url) == before
    settled = await h1.enc.SettleEncounter(request)
    assert settled.status == pb.SETTLEMENT_STATUS_SETTLED and len(settled.lines) == 4


async def test_a_stay_of_20000_lines_settles(h2: Hospital) -> None:
    card, pin = "C3303990002", "246802"
    stay = await h2.admit("big-admit", card, pin)
    started = time.perf_counter()
    per_upload = alimits.upload_lines_max
    for i in range(alimits.encounter_lines_max // per_upload):
        answer = await h2.upload(f"big-up-{i}", stay.encounter_id, 1 + i * per_upload, per_upload)
    uploaded_s = time.perf_counter() - started
    assert answer.line_count == alimits.encounter_lines_max
    code, reason, _ = await refused(h2.upload("big-over", stay.encounter_id, 50_000, 1))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ENCOUNTER_FULL")
    await h2.discharge("big-out", stay.encounter_id)
    started = time.perf_counter()
    settled = await h2.enc.SettleEncounter(
        h2.settle_request("big-s", stay.encounter_id, card, pin), timeout=60
    )
    settle_s = time.perf_counter() - started
    assert settled.status == pb.SETTLEMENT_STATUS_SETTLED
    assert len(settled.lines) == alimits.encounter_lines_max
    assert settled.split.total_fen == answer.total_fen
    print(f"20,000 lines: uploads {uploaded_s:.1f} s, settlement {settle_s:.2f} s")
    assert settle_s < 20, settle_s


async def test_the_documented_stay_example_works(live: LiveSwitch) -> None:
    """docs/integrators.md's stay example, run as written against a live switch."""
    doc = (ROOT / "docs" / "integrators.md").read_text("utf-8")
    section = doc[doc.index("## Inpatient stays (encounters)") :]
    code = section[section.index("```python") + len("```python") : section.index("```\n", 20)]

    def run() -> dict[str, object]:
        with grpc.secure_channel(f"127.0.0.1:{live.running.port}", live.certs.creds(H1)) as ch:
            namespace: dict[str, object] = {"channel": ch, "pb": pb, "pb_grpc": pb_grpc}
            exec(compile(code, "README.md", "exec"), namespace)
            return namespace

    namespace = await asyncio.to_thread(run)
    answer = namespace["answer"]
    assert isinstance(answer, pb.SettleResponse)
    assert answer.status == pb.SETTLEMENT_STATUS_SETTLED and answer.split.total_fen == 3000
