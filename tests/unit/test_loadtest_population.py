"""The load-test population imports with the project's own parsers, and the
load-test workload is what the engine accepts.

A population the switch refuses, or claims the engine rejects for reasons
the load test does not expect, would make every load figure meaningless:
these tests keep the generator and the workload honest without a server.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from adjudication.memory import load_region
from adjudication.model import CardStatus, MemberStatus
from adjudication.reference import (
    parse_institutions,
    parse_members,
    parse_special_diseases,
    read_text,
)
from loadtest import population, workload
from switch import convert
from switch.errors import SwitchError
from switch.proto import medswitch_pb2 as pb
from tests.memory_backend import MemoryBackend

MEMBERS = 3_000


@pytest.fixture(scope="module")
def region_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pop")
    population.main(
        ["--members", str(MEMBERS), "--institutions", "30", "--out", str(out), "--sample", "500"]
    )
    return out


def test_population_files_parse_with_the_reference_parsers(region_dir: Path) -> None:
    """Every file is in the import format: the project's parsers accept all rows."""
    institutions = parse_institutions(read_text(region_dir / "institutions.csv"))
    members = list(parse_members(read_text(region_dir / "members.csv")))
    approvals = list(parse_special_diseases(read_text(region_dir / "member_special_diseases.csv")))
    assert len(members) == MEMBERS
    assert {i.kind.value for i in institutions} == {"HOSPITAL", "CLINIC", "PHARMACY"}
    assert {i.level for i in institutions if i.kind.value != "PHARMACY"} == {"L1", "L2", "L3"}
    assert {m.category.value for m in members} >= {"EMPLOYEE", "RETIREE", "RESIDENT"}
    ids = {m.member_id for m in members}
    assert approvals and all(a.member_id in ids for a in approvals)
    assert all(m.balance_fen >= 0 for m in members)
    # identity numbers carry a valid GB 11643 check character
    assert all(population.id_check_digit(m.id_number[:17]) == m.id_number[17] for m in members)


def test_manifest_lists_only_usable_cards_with_their_pins(region_dir: Path) -> None:
    manifest = json.loads((region_dir / "manifest.json").read_text())
    members = {m.card_no: m for m in parse_members(read_text(region_dir / "members.csv"))}
    approvals: dict[str, set[str]] = {}
    for row in parse_special_diseases(read_text(region_dir / "member_special_diseases.csv")):
        approvals.setdefault(row.member_id, set()).add(row.disease.code)
    sampled = manifest["cards"] + manifest["special_cards"]
    assert len(manifest["cards"]) >= 100 and manifest["special_cards"]
    for card in sampled:
        m = members[card["card_no"]]
        assert card["pin"] == m.pin
        assert m.status is MemberStatus.ACTIVE and m.card_status is CardStatus.ACTIVE
        assert set(card["special_diseases"]) == approvals.get(m.member_id, set())
    load = manifest["load_institutions"]
    active = {
        i.code
        for i in parse_institutions(read_text(region_dir / "institutions.csv"))
        if i.status.value == "ACTIVE"
    }
    assert load["PHARMACY"] and load["PROVIDER"]
    assert set(load["PHARMACY"]) | set(load["PROVIDER"]) <= active


def test_same_seed_same_region(tmp_path: Path) -> None:
    """The generator is a function of its seed: two runs write identical files."""
    for name in ("a", "b"):
        population.main(
            [
                "--members",
                "200",
                "--institutions",
                "10",
                "--out",
                str(tmp_path / name),
                "--seed",
                "7",
                "--today",
                "2026-11-23",
            ]
        )
    for f in ("members.csv", "institutions.csv", "member_special_diseases.csv"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def _engine_answer(
    region: Any, manifest: workload.Manifest, req: pb.SettleRequest, preview: bool
) -> tuple[pb.SettleResponse, Any]:
    """What the switch would answer, from the engine over the in-memory region."""
    claim, violations = convert.claim_from_request(req)
    assert claim is not None, violations
    sid, result = region.adjudicate(claim, req.pin, apply=not preview)
    resp = pb.SettleResponse(
        settlement_id=sid,
        request_id=req.request_id,
        institution_code=req.institution_code,
        business_date="" if preview else manifest.today.isoformat(),
        status=(
            pb.SETTLEMENT_STATUS_REJECTED
            if not result.accepted
            else pb.SETTLEMENT_STATUS_PREVIEW
            if preview
            else pb.SETTLEMENT_STATUS_SETTLED
        ),
        reasons=list(result.reasons),
        balance_after_fen=result.balance_after_fen,
    )
    if result.accepted:
        resp.split.CopyFrom(convert.split_to_pb(result.split))
        resp.lines.extend(convert.line_to_pb(line) for line in result.lines)
    else:
        resp.split.total_fen = resp.split.patient_cash_fen = result.split.total_fen
    return resp, result


def test_workload_claims_are_accepted_and_judged_right_by_the_engine(region_dir: Path) -> None:
    """The engine settles every claim of the full mix (but the pharmacy purchase
    over the daily limit, which the session predicts), and the checks the load
    clients apply find nothing wrong with the engine's answers -- while a
    tampered answer is caught."""
    region = load_region(region_dir)
    manifest = workload.Manifest.load(region_dir)
    session = workload.Session(manifest, seed=3)
    rng = random.Random(5)
    outcomes: Counter[str] = Counter()
    for _ in range(1_500):
        action = session.action(workload.pick_kind(rng, workload.FULL_MIX))
        if action.method not in ("Settle", "PreSettle") or action.kind is workload.Kind.RETRY:
            continue  # idempotency, cancel and get need the server: the smoke test
        req = action.request
        resp, result = _engine_answer(region, manifest, req, action.method == "PreSettle")
        assert action.check(resp) is None, (action.name, list(result.reasons))
        outcomes[f"{action.kind}:{pb.SettlementStatus.Name(resp.status)}"] += 1
        if result.accepted and resp.split.total_fen > 0:
            bad = pb.SettleResponse()
            bad.CopyFrom(resp)
            bad.split.patient_cash_fen += 1
            assert action.check(bad) is not None
    for kind in ("pharmacy", "outpatient", "special_disease", "inpatient"):
        assert outcomes[f"{kind}:SETTLEMENT_STATUS_SETTLED"] > 0, outcomes


def test_a_lookup_of_a_live_settlement_answered_cancelled_is_a_wrong_answer(
    region_dir: Path,
) -> None:
    region = load_region(region_dir)
    manifest = workload.Manifest.load(region_dir)
    session = workload.Session(manifest, seed=4)
    settle = session.action(workload.Kind.PHARMACY)
    answer, result = _engine_answer(region, manifest, settle.request, preview=False)
    assert result.accepted and settle.check(answer) is None
    get = session.action(workload.Kind.GET)
    assert get.method == "GetSettlement" and get.check(answer) is None
    cancelled = pb.SettleResponse()
    cancelled.CopyFrom(answer)
    cancelled.status = pb.SETTLEMENT_STATUS_CANCELLED
    assert "status" in (get.check(cancelled) or "")


def test_cards_used_today_accept_the_daily_limit_refusal(region_dir: Path) -> None:
    manifest = workload.Manifest.load(region_dir)
    for fresh, ok in ((True, False), (False, True)):
        session = workload.Session(manifest, seed=5, fresh_day=fresh)
        settle = session.action(workload.Kind.PHARMACY)
        total = sum(line.amount_fen for line in settle.request.lines)
        refused = pb.SettleResponse(
            settlement_id="S2",
            request_id=settle.request.request_id,
            institution_code=settle.request.institution_code,
            business_date=manifest.today.isoformat(),
            status=pb.SETTLEMENT_STATUS_REJECTED,
            reasons=["R_FREQUENT_PURCHASE"],
        )
        refused.split.total_fen = refused.split.patient_cash_fen = total
        assert (settle.check(refused) is None) == ok


async def _encounter_answer(backend: MemoryBackend, action: workload.Action) -> Any:
    """What the switch answers a stay's call, from the in-memory encounters."""
    enc, req = backend.encounters, action.request
    digest = convert.request_digest(req)
    if action.method == "RegisterAdmission":
        view = await enc.register_admission(convert.admission_command(req), digest)
        return convert.encounter_to_pb(view)
    if action.method == "UploadFeeDetails":
        return convert.upload_response(
            await enc.upload_fee_details(convert.upload_command(req), digest)
        )
    if action.method == "VoidFeeDetails":
        return convert.void_response(await enc.void_fee_details(convert.void_command(req), digest))
    if action.method == "CancelAdmission":
        call = convert.cancel_admission_call(req)
        return convert.encounter_to_pb(await enc.cancel_admission(call, req.reason, digest))
    if action.method == "RecordDischarge":
        view = await enc.record_discharge(convert.discharge_command(req), digest)
        return convert.encounter_to_pb(view)
    assert action.method == "SettleEncounter", action.name
    command = convert.settle_encounter_command(req)
    return convert.settle_response(await enc.settle_encounter(command, digest))


def _open_stay_of(backend: MemoryBackend, req: Any) -> pb.Member:
    """GetMember as far as the cleanup reads it, its open stay (the in-memory
    backend has no GetMember of its own)."""
    member = backend.region.member_by_card(req.card_no)
    assert member is not None and member.pin == req.pin
    answer = pb.Member(member_id=member.member_id)
    if (held := backend.encounters.open_of(member.member_id)) is not None:
        answer.open_encounter.CopyFrom(convert.encounter_to_pb(held))
    return answer


async def test_stays_given_up_are_cancelled_so_their_members_are_admitted_again(
    region_dir: Path,
) -> None:
    """A stay whose answer was lost, or whose call was refused, is given up; before
    the next stay the session cancels its admission, so the member (one stay at
    a time) is not refused again: it sends the admission again to learn a lost
    encounter id, and asks GetMember for a stay another run left open. A quarter
    of the answers are lost here, by a session of four cards, one of whose
    members was left in hospital before it began."""
    backend = MemoryBackend(load_region(region_dir))
    manifest = workload.Manifest.load(region_dir)
    slots = len(manifest.cards) // 4  # four cards of its own: each stays every fourth stay
    session = workload.Session(manifest, slot=0, slots=slots, seed=7)
    left = manifest.cards[0]  # the session's first card, in hospital since an earlier run
    leftover = pb.RegisterAdmissionRequest(
        request_id="earlier-run", institution_code=manifest.providers[-1], card_no=left.card_no,
        pin=left.pin, admission_date=manifest.today.isoformat(), department="Ward",
        diagnoses=["K35.8"],
    )  # fmt: skip
    await backend.encounters.register_admission(
        convert.admission_command(leftover), convert.request_digest(leftover)
    )
    rng = random.Random(3)
    calls: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for _ in range(500):
        action = session.action(workload.Kind.STAY)
        calls[action.method] += 1
        try:
            if action.method == "GetMember":
                answer: Any = _open_stay_of(backend, action.request)
            else:
                answer = await _encounter_answer(backend, action)
        except SwitchError as err:
            refused[f"{action.method} {err.reason.value}"] += 1
            continue  # an error: nothing to judge, the stay is given up
        if rng.random() < 0.25:
            continue  # the answer was lost: the call happened, nobody judged it
        assert action.check(answer) is None, action.name
    # The leftover refused the first admission of its card and the same one sent
    # again; then it was found and cancelled, and nothing was refused after.
    assert refused == {"RegisterAdmission MEMBER_IN_HOSPITAL": 2}, refused
    assert backend.encounters.stays["E00000001"].cancelled
    assert calls["CancelAdmission"] >= 20 and calls["SettleEncounter"] >= 20, calls
    assert calls["GetMember"] >= 1, calls
    open_stays = [s for s in backend.encounters.stays.values() if not s.cancelled]
    assert sum(1 for s in open_stays if not s.encounter.discharge_date) <= 2  # in hand, given up


def _tampered(answer: Any) -> Any:
    """The same answer one fen (or one line) off."""
    bad = type(answer)()
    bad.CopyFrom(answer)
    if isinstance(bad, pb.SettleResponse):
        bad.split.patient_cash_fen += 1
    elif isinstance(bad, pb.UploadFeeDetailsResponse):
        bad.lines[0].in_scope_fen += 1
    else:
        bad.total_fen += 1
    return bad


async def test_stays_through_the_encounter_calls_are_judged_right(region_dir: Path) -> None:
    """The full mix's stays (admission, uploads, a void now and then, discharge,
    settlement), answered by encounters kept in memory, pass every check the
    load clients apply, call after call; an answer a fen off does not."""
    backend = MemoryBackend(load_region(region_dir))
    session = workload.Session(workload.Manifest.load(region_dir), seed=6)
    calls: Counter[str] = Counter()
    for _ in range(150):
        action = session.action(workload.Kind.STAY)
        assert action.service == "EncounterService"
        answer = await _encounter_answer(backend, action)
        assert action.check(_tampered(answer)) is not None, action.name
        assert action.check(answer) is None, action.name
        calls[action.method] += 1
        if action.method == "SettleEncounter":
            assert answer.status == pb.SETTLEMENT_STATUS_SETTLED
    assert calls["SettleEncounter"] >= 15 and calls["VoidFeeDetails"] > 0, calls
    assert calls["UploadFeeDetails"] > calls["RegisterAdmission"], calls
    # A client retry of a stay's settlement is the same SettleEncounter, answered the same.
    retry = next(
        a for a in (session.action(workload.Kind.RETRY) for _ in range(200))
        if a.method == "SettleEncounter"
    )  # fmt: skip
    assert retry.check(await _encounter_answer(backend, retry)) is None
