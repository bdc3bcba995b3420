"""The settlement API end to end: real gRPC with mTLS, real PostgreSQL, real engine.

shared/reference/examples.json is one ordered run against a fresh switch; it
is replayed here through the API and every field of the response is compared,
lines included; retries must return the first answer, settlement id and all.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from tests.grpc_harness import channel, error_details
from tests.switch_pg import REFERENCE, LiveSwitch
from tests.switch_pg import live as live
from tests.switch_pg import switch_certs as switch_certs
from tests.switch_pg import switch_pg as switch_pg

EXAMPLES = json.loads((REFERENCE / "examples.json").read_text("utf-8"))["steps"]
SPLIT_FIELDS = [f.name for f in pb.Split.DESCRIPTOR.fields]


def _expected_split(expect: dict[str, Any]) -> dict[str, int]:
    split = expect.get("split", {})
    return {name: int(split.get(name, 0)) for name in SPLIT_FIELDS}


def _lines(resp: pb.SettleResponse) -> list[dict[str, Any]]:
    return [
        {
            "line_no": line.line_no,
            "item_class": line.item_class,
            "full_selfpay_fen": line.full_selfpay_fen,
            "overlimit_selfpay_fen": line.overlimit_selfpay_fen,
            "preselfpay_fen": line.preselfpay_fen,
            "in_scope_fen": line.in_scope_fen,
            "reasons": list(line.reasons),
        }
        for line in resp.lines
    ]


async def _run_step(
    live: LiveSwitch, answers: dict[int, Any], i: int, step: dict[str, Any]
) -> None:
    """One step; `answers` holds the earlier steps' answers (retries and cancels refer back)."""
    req_json = dict(step["request"])
    expect = step["expect"]
    code = req_json["institution_code"]
    where = f"step {i} ({step['note']})"
    async with channel(live.running.port, live.certs.creds(code)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        if step["op"] == "cancel":
            ref = answers[step["ref"]]
            cancel = pb.CancelSettlementRequest(
                request_id=req_json["request_id"],
                institution_code=code,
                settlement_id=req_json.get("settlement_id") or ref.settlement_id,
                reason=req_json.get("reason", ""),
            )
            done = await stub.CancelSettlement(cancel)
            assert done.status == pb.SettlementStatus.Value(expect["status"]), where
            assert done.settlement_id == ref.settlement_id, where
            assert done.reversal_id, where
            if "balance_after_fen" in expect:
                assert done.balance_after_fen == expect["balance_after_fen"], where
            answers[i] = done
            return
        req = json_format.ParseDict(req_json, pb.SettleRequest())
        call = stub.PreSettle if step["op"] == "presettle" else stub.Settle
        if "grpc_code" in expect:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(req)
            assert err.value.code().name == expect["grpc_code"], where
            assert error_details(err.value).domain == "medswitch", where
            return
        resp = await call(req)
    answers[i] = resp
    assert pb.SettlementStatus.Name(resp.status) == expect["status"], where
    assert list(resp.reasons) == expect.get("reasons", []), where
    assert list(resp.warnings) == expect.get("warnings", []), where
    got_split = json_format.MessageToDict(
        resp.split,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    assert {k: int(v) for k, v in got_split.items()} == _expected_split(expect), where
    assert _lines(resp) == expect.get("lines", []), where
    if "balance_after_fen" in expect:
        assert resp.balance_after_fen == expect["balance_after_fen"], where
    assert resp.request_id == req.request_id, where
    assert resp.institution_code == code, where
    if step["op"] == "settle":
        assert resp.settlement_id, where
        assert resp.business_date, where
    if "retry_of" in step:
        assert resp == answers[step["retry_of"]], where


async def test_worked_examples_through_the_api(live: LiveSwitch) -> None:
    """Every step of examples.json, in order (cancellations included), answered exactly."""
    answers: dict[int, Any] = {}
    for i, step in enumerate(EXAMPLES):
        await _run_step(live, answers, i, step)
    assert {s["op"] for s in EXAMPLES} >= {"settle", "cancel"}
