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

import random
from typing import Any

from adjudication.memory import load_region
from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from tests.grpc_harness import channel
from tests.random_claims import ClaimMaker, answer_fields, model_answer
from tests.switch_pg import REFERENCE, LiveSwitch
from tests.switch_pg import live as live
from tests.switch_pg import switch_certs as switch_certs
from tests.switch_pg import switch_pg as switch_pg

SEED = 20260510
CLAIMS = 200


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
            model_id, expected = model_answer(model, req)
            got = await stub.Settle(req)
            assert answer_fields(got) == answer_fields(expected), req
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
