"""The database-backed switch agrees with the engine's in-memory model, claim by claim.

A seeded random run of a few hundred claims (every visit type, every kind of
institution and member, wrong PINs, over-cap prices, restricted items,
special diseases, inpatient stays) is sent through gRPC + mTLS to a fresh
switch on PostgreSQL and, in the same order, to adjudication.memory's
InMemoryRegion. Every answer must be identical field by field (settlement
ids aside), so the state the ledger keeps between claims (balances,
accumulators, stays, daily purchase counts, PIN failures) is exactly the
model's. Some settlements are cancelled on the way, and the model cancels
them too.
"""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
from typing import Any

from adjudication.memory import load_region
from switch.backend import settlement_view
from switch.convert import claim_from_request, settle_response
from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from tests.grpc_harness import channel
from tests.switch_pg import REFERENCE, LiveSwitch
from tests.switch_pg import live as live
from tests.switch_pg import switch_certs as switch_certs
from tests.switch_pg import switch_pg as switch_pg

SEED = 20260510
CLAIMS = 200


def _rows(name: str) -> list[dict[str, str]]:
    with (REFERENCE / name).open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


class ClaimMaker:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.members = _rows("members.csv")
        self.institutions = _rows("institutions.csv")
        self.items = _rows("catalog.csv")
        self.diseases = _rows("member_special_diseases.csv")
        self.n = 0

    def claim(self) -> pb.SettleRequest:
        rng = self.rng
        self.n += 1
        member = rng.choice(self.members)
        inst = rng.choice(self.institutions)
        pharmacy = inst["kind"] == "PHARMACY"
        if rng.random() < 0.05:  # the wrong kind of visit for the institution
            pharmacy = not pharmacy
        visit = (
            pb.VISIT_TYPE_PHARMACY
            if pharmacy
            else rng.choice(
                [
                    pb.VISIT_TYPE_OUTPATIENT,
                    pb.VISIT_TYPE_OUTPATIENT,
                    pb.VISIT_TYPE_INPATIENT,
                    pb.VISIT_TYPE_SPECIAL_DISEASE,
                ]
            )
        )
        day = date(2026, 1, 1) + timedelta(days=rng.randrange(0, 180))
        req = pb.SettleRequest(
            request_id=f"model-{self.n:04d}",
            institution_code=inst["code"],
            card_no=member["card_no"],
            pin=member["pin"] if rng.random() > 0.03 else "000000",
            visit_type=visit,
        )
        if visit == pb.VISIT_TYPE_INPATIENT:
            req.admission_date = day.isoformat()
            req.discharge_date = (day + timedelta(days=rng.randrange(0, 12))).isoformat()
        else:
            req.service_date = day.isoformat()
        if visit != pb.VISIT_TYPE_PHARMACY:
            own = [
                d["disease_code"] for d in self.diseases if d["member_id"] == member["member_id"]
            ]
            codes = [*own, "J06.9", "K29.7", "I10", "E11.9"]
            req.diagnoses.append(rng.choice(codes))
        if rng.random() < 0.08:
            req.injury_cause = rng.choice(list(pb.InjuryCause.values()))
            if rng.random() < 0.5:
                req.accident_case_id = f"ACC-{self.n}"
        if pharmacy and rng.random() < 0.7:
            req.prescription_ref = f"RX-{self.n}"
        req.skip_individual_account = rng.random() < 0.05
        if pharmacy:  # mostly drugs; now and then toothpaste slips in (套刷)
            kinds = ("DRUG", "GOODS") if rng.random() < 0.05 else ("DRUG",)
        else:
            kinds = ("DRUG", "TREATMENT", "FACILITY", "MATERIAL")
        candidates = [i for i in self.items if i["kind"] in kinds]
        for line_no in range(1, rng.randrange(2, 5)):
            item = rng.choice(candidates)
            cap = int(item["price_cap_fen"] or 2000)
            price = max(1, int(cap * rng.choice([0.5, 0.9, 1.0, 1.2])))
            quantity = rng.randrange(1, 4)
            req.lines.add(
                line_no=line_no,
                item_code=item["code"],
                quantity=quantity,
                unit_price_fen=price,
                amount_fen=price * quantity,
                days_supply=rng.choice([0, 3, 7, 10, 30, 40]) if item["kind"] == "DRUG" else 0,
                approved=rng.random() < 0.5,
                discharge_medication=rng.random() < 0.2,
            )
        return req


def _without_ids(resp: pb.SettleResponse) -> dict[str, Any]:
    return {
        "status": resp.status,
        "reasons": list(resp.reasons),
        "warnings": list(resp.warnings),
        "member_id": resp.member_id,
        "split": resp.split,
        "lines": list(resp.lines),
        "balance_after_fen": resp.balance_after_fen,
    }


async def test_switch_answers_like_the_model(live: LiveSwitch) -> None:
    rng = random.Random(SEED)
    maker = ClaimMaker(rng)
    model = load_region(REFERENCE)
    outcomes: dict[int, int] = {}
    cancelled = 0
    ours_by_model_id: dict[str, pb.SettleResponse] = {}
    chans: dict[str, Any] = {}
    try:
        for _ in range(CLAIMS):
            req = maker.claim()
            code = req.institution_code
            if code not in chans:
                chans[code] = channel(live.running.port, live.certs.creds(code))
            stub = pb_grpc.SettlementServiceStub(chans[code])
            claim, violations = claim_from_request(req)
            assert claim is not None, violations
            model_id, result = model.adjudicate(claim, req.pin, apply=True)
            expected = settle_response(
                settlement_view(
                    result,
                    settlement_id=model_id,
                    request_id=req.request_id,
                    institution_code=code,
                    business_date=None,
                    preview=False,
                )
            )
            got = await stub.Settle(req)
            assert _without_ids(got) == _without_ids(expected), req
            outcomes[got.status] = outcomes.get(got.status, 0) + 1
            ours_by_model_id[model_id] = got
            # Now and then the institution cancels a settlement the same day; the
            # exact undo of its state changes shows in every later answer.
            if got.status == pb.SETTLEMENT_STATUS_SETTLED and rng.random() < 0.2:
                done = await stub.CancelSettlement(
                    pb.CancelSettlementRequest(
                        request_id=f"{req.request_id}-x",
                        institution_code=code,
                        settlement_id=got.settlement_id,
                    )
                )
                assert done.balance_after_fen == model.cancel(model_id)
                cancelled += 1
    finally:
        for ch in chans.values():
            await ch.close()
    # The run exercised both outcomes and cancellations, not a degenerate path.
    assert outcomes.get(pb.SETTLEMENT_STATUS_SETTLED, 0) > CLAIMS // 4
    assert outcomes.get(pb.SETTLEMENT_STATUS_REJECTED, 0) > CLAIMS // 20
    assert cancelled > 3
