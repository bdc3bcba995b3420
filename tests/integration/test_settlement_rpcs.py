"""Every RPC besides the worked examples, over real gRPC + mTLS + PostgreSQL.

Idempotency and ALREADY_EXISTS, GetSettlement, CancelSettlement (by id and by
original_request_id, a request cancelled before it arrived then refused with
REQUEST_CANCELLED), PreSettle recording
nothing but PIN failures, GetMember, ListAccountActivity, both
reconciliations and the catalog download.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest

from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from tests.cli import ROOT
from tests.grpc_harness import channel, error_details, pharmacy_request
from tests.switch_pg import LiveSwitch
from tests.switch_pg import live as live
from tests.switch_pg import switch_certs as switch_certs
from tests.switch_pg import switch_pg as switch_pg

P1, P2 = "P33039900005", "P33039900006"


def purchase(
    request_id: str,
    *,
    card: str = "C3303990012",
    pin: str = "808080",
    institution: str = P1,
    quantity: int = 2,
    day: str = "2026-06-01",
) -> pb.SettleRequest:
    request: pb.SettleRequest = pharmacy_request(
        request_id, institution, card, pin, day, quantity=quantity
    )
    return request


async def _code_and_reason(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as err:
        details = error_details(err)
        assert details.domain == "medswitch"
        return details.code, details.reason
    raise AssertionError("the call succeeded")


async def _balance(live: LiveSwitch, member_id: str) -> int:
    conn = await asyncpg.connect(live.db_url)
    try:
        value: int = await conn.fetchval(
            "SELECT b.balance_fen FROM members m JOIN account_balances b USING (account_id)"
            " WHERE m.member_id = $1",
            member_id,
        )
        return value
    finally:
        await conn.close()


async def test_retry_is_idempotent_and_a_reused_id_is_already_exists(live: LiveSwitch) -> None:
    async with channel(live.running.port, live.certs.creds(P1)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        first = await stub.Settle(purchase("idem-1"))
        assert first.status == pb.SETTLEMENT_STATUS_SETTLED
        assert await stub.Settle(purchase("idem-1")) == first
        before = await _balance(live, "M0012")
        code, reason = await _code_and_reason(stub.Settle(purchase("idem-1", quantity=3)))
        assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
        assert await _balance(live, "M0012") == before
        # The same request id at another institution is another request.
    async with channel(live.running.port, live.certs.creds(P2)) as ch2:
        other = await pb_grpc.SettlementServiceStub(ch2).Settle(purchase("idem-1", institution=P2))
        assert other.settlement_id != first.settlement_id


async def test_get_settlement_by_id_and_by_request_id(live: LiveSwitch) -> None:
    async with channel(live.running.port, live.certs.creds(P1)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        settled = await stub.Settle(purchase("get-1"))
        by_id = await stub.GetSettlement(
            pb.GetSettlementRequest(institution_code=P1, settlement_id=settled.settlement_id)
        )
        by_req = await stub.GetSettlement(
            pb.GetSettlementRequest(institution_code=P1, request_id="get-1")
        )
        assert by_id == by_req == settled
        code, reason = await _code_and_reason(
            stub.GetSettlement(pb.GetSettlementRequest(institution_code=P1, settlement_id="S-nope"))
        )
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "SETTLEMENT_NOT_FOUND")
    async with channel(live.running.port, live.certs.creds(P2)) as ch2:
        code, reason = await _code_and_reason(
            pb_grpc.SettlementServiceStub(ch2).GetSettlement(
                pb.GetSettlementRequest(institution_code=P2, settlement_id=settled.settlement_id)
            )
        )
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_SETTLING_INSTITUTION")


async def test_cancel_restores_the_balance_exactly_once(live: LiveSwitch) -> None:
    card, pin, member = "C3303990014", "121212", "M0014"
    before = await _balance(live, member)
    async with channel(live.running.port, live.certs.creds(P1)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        settled = await stub.Settle(purchase("cx-1", card=card, pin=pin))
        assert settled.split.individual_account_fen > 0
        assert await _balance(live, member) == before - settled.split.individual_account_fen
        cancel = pb.CancelSettlementRequest(
            request_id="cx-1-cancel",
            institution_code=P1,
            settlement_id=settled.settlement_id,
            reason="patient returned the drugs",
        )
        done = await stub.CancelSettlement(cancel)
        assert done.status == pb.SETTLEMENT_STATUS_CANCELLED
        assert done.settlement_id == settled.settlement_id and done.reversal_id
        assert done.balance_after_fen == before == await _balance(live, member)
        assert await stub.CancelSettlement(cancel) == done  # a retry
        again = pb.CancelSettlementRequest(
            request_id="cx-1-cancel-2", institution_code=P1, settlement_id=settled.settlement_id
        )
        assert (await stub.CancelSettlement(again)).reversal_id == done.reversal_id
        assert await _balance(live, member) == before
        got = await stub.GetSettlement(
            pb.GetSettlementRequest(institution_code=P1, settlement_id=settled.settlement_id)
        )
        assert got.status == pb.SETTLEMENT_STATUS_CANCELLED
        code, reason = await _code_and_reason(
            stub.CancelSettlement(
                pb.CancelSettlementRequest(
                    request_id="cx-unknown", institution_code=P1, settlement_id="S-nope"
                )
            )
        )
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "SETTLEMENT_NOT_FOUND")
    async with channel(live.running.port, live.certs.creds(P2)) as ch2:
        code, reason = await _code_and_reason(
            pb_grpc.SettlementServiceStub(ch2).CancelSettlement(
                pb.CancelSettlementRequest(
                    request_id="cx-theirs", institution_code=P2, settlement_id=settled.settlement_id
                )
            )
        )
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_SETTLING_INSTITUTION")


async def test_a_request_cancelled_before_it_arrived_never_settles(live: LiveSwitch) -> None:
    """冲正 before the Settle arrived: CANCELLED with no settlement; the Settle, when it
    comes, fails with REQUEST_CANCELLED."""
    async with channel(live.running.port, live.certs.creds(P1)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        done = await stub.CancelSettlement(
            pb.CancelSettlementRequest(
                request_id="rev-1", institution_code=P1, original_request_id="lost-1"
            )
        )
        assert done.status == pb.SETTLEMENT_STATUS_CANCELLED and done.settlement_id == ""
        code, reason = await _code_and_reason(stub.Settle(purchase("lost-1")))
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "REQUEST_CANCELLED")
        # And by original_request_id of a Settle that did arrive: its reversal.
        settled = await stub.Settle(purchase("arrived-1", card="C3303990017", pin="787878"))
        done = await stub.CancelSettlement(
            pb.CancelSettlementRequest(
                request_id="rev-2", institution_code=P1, original_request_id="arrived-1"
            )
        )
        assert done.settlement_id == settled.settlement_id


async def test_cancel_needs_exactly_one_target(live: LiveSwitch) -> None:
    async with channel(live.running.port, live.certs.creds(P1)) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.SettlementServiceStub(ch).CancelSettlement(
                pb.CancelSettlementRequest(request_id="c", institution_code=P1)
            )
    details = error_details(err.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "settlement_id" in details.violations


async def test_presettle_records_nothing_but_pin_failures(live: LiveSwitch) -> None:
    card, member = "C3303990019", "M0019"
    before = await _balance(live, member)
    async with channel(live.running.port, live.certs.creds(P1)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        preview = await stub.PreSettle(purchase("pre-1", card=card, pin="242424"))
        assert preview.status == pb.SETTLEMENT_STATUS_PREVIEW
        assert preview.balance_after_fen == before - preview.split.individual_account_fen
        assert await _balance(live, member) == before
        code, _ = await _code_and_reason(
            stub.GetSettlement(pb.GetSettlementRequest(institution_code=P1, request_id="pre-1"))
        )
        assert code == grpc.StatusCode.NOT_FOUND
        for n in range(5):
            wrong = await stub.PreSettle(purchase(f"pre-w{n}", card=card, pin="000000"))
            assert list(wrong.reasons) == ["R_PIN_INVALID"]
        locked = await stub.PreSettle(purchase("pre-2", card=card, pin="242424"))
        assert list(locked.reasons) == ["R_PIN_LOCKED"]


async def test_get_member_and_statement(live: LiveSwitch) -> None:
    card, pin = "C3303990016", "565656"
    async with channel(live.running.port, live.certs.creds(P1)) as ch:
        members = pb_grpc.MemberServiceStub(ch)
        member = await members.GetMember(
            pb.GetMemberRequest(institution_code=P1, card_no=card, pin=pin)
        )
        assert member.member_id == "M0016"
        assert member.category == pb.MEMBER_CATEGORY_RETIREE
        assert member.status == pb.MEMBER_STATUS_ACTIVE
        # derived from the encrypted name (members.csv: 郭芳); nothing in clear is stored
        assert member.name_masked == "郭*"
        settled = await pb_grpc.SettlementServiceStub(ch).Settle(
            purchase("stmt-1", card=card, pin=pin)
        )
        statement = await members.ListAccountActivity(
            pb.ListAccountActivityRequest(institution_code=P1, card_no=card, pin=pin)
        )
        kinds = [e.kind for e in statement.entries]
        assert kinds == [pb.CREDIT, pb.SETTLEMENT]
        last = statement.entries[-1]
        assert last.settlement_id == settled.settlement_id
        assert last.amount_fen == -settled.split.individual_account_fen
        assert last.balance_after_fen == settled.balance_after_fen
        assert last.institution_code == P1
        code, reason = await _code_and_reason(
            members.GetMember(pb.GetMemberRequest(institution_code=P1, card_no=card, pin="000000"))
        )
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "PIN_INVALID")
        code, reason = await _code_and_reason(
            members.GetMember(pb.GetMemberRequest(institution_code=P1, card_no="C-none", pin=pin))
        )
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "CARD_INVALID")


async def test_reconciliation_totals_and_details(live: LiveSwitch) -> None:
    inst = "P33039900006"
    async with channel(live.running.port, live.certs.creds(inst)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        a = await stub.Settle(purchase("rec-1", institution=inst, card="C3303990001", pin="135790"))
        b = await stub.Settle(
            purchase("rec-2", institution=inst, card="C3303990006", pin="778899", quantity=4)
        )
        recon = pb_grpc.ReconciliationServiceStub(ch)
        day = a.business_date
        ours = await recon.ReconcileTotals(
            pb.ReconcileTotalsRequest(institution_code=inst, business_date=day)
        )
        total = a.split.total_fen + b.split.total_fen
        account = a.split.individual_account_fen + b.split.individual_account_fen
        assert ours.switch_medical_total_fen >= total
        theirs = pb.ReconcileTotalsRequest(
            institution_code=inst,
            business_date=day,
            settlement_count=ours.switch_settlement_count,
            medical_total_fen=ours.switch_medical_total_fen,
            pooled_fund_fen=ours.switch_pooled_fund_fen,
            serious_illness_fen=ours.switch_serious_illness_fen,
            individual_account_fen=ours.switch_individual_account_fen,
        )
        assert (await recon.ReconcileTotals(theirs)).matched
        theirs.individual_account_fen += 1
        off = await recon.ReconcileTotals(theirs)
        assert not off.matched and list(off.differences) == ["individual_account_fen"]
        assert account <= ours.switch_individual_account_fen

        async def records() -> AsyncIterator[pb.ReconcileDetailRecord]:
            for s in (a, b):
                yield pb.ReconcileDetailRecord(
                    institution_code=inst,
                    business_date=day,
                    settlement_id=s.settlement_id,
                    request_id=s.request_id,
                    total_fen=s.split.total_fen,
                    fund_total_fen=s.split.pooled_fund_fen
                    + s.split.serious_illness_fen
                    + s.split.individual_account_fen
                    - (1 if s is b else 0),  # the institution booked b one fen off
                    status=pb.SETTLEMENT_STATUS_SETTLED,
                )
            yield pb.ReconcileDetailRecord(
                institution_code=inst,
                business_date=day,
                request_id="never-sent",
                total_fen=100,
                status=pb.SETTLEMENT_STATUS_SETTLED,
            )

        details = await recon.ReconcileDetails(records())
        assert details.matched_count == 1
        assert list(details.mismatched) == [b.settlement_id]
        assert list(details.missing_at_switch) == ["never-sent"]


async def test_download_catalog_streams_every_item(live: LiveSwitch) -> None:
    async with channel(live.running.port, live.certs.creds(P1)) as ch:
        stream = pb_grpc.CatalogServiceStub(ch).DownloadCatalog(
            pb.DownloadCatalogRequest(since_version=0)
        )
        items = [item async for item in stream]
        newer = [
            i
            async for i in pb_grpc.CatalogServiceStub(ch).DownloadCatalog(
                pb.DownloadCatalogRequest(since_version=items[0].version)
            )
        ]
    expected = sum(len(c.items) for c in live.backend.catalogs.catalogs)
    assert len(items) == expected and newer == []
    by_code = {i.code: i for i in items}
    paracetamol = by_code["XN02BEA001A001010100004"]
    assert (
        paracetamol.kind,
        paracetamol.item_class,
        paracetamol.price_cap_fen,
        paracetamol.rx,
    ) == (pb.DRUG, "A", 500, "OTC")


async def test_readme_python_client_works(live: LiveSwitch) -> None:
    """The README's client example, run as written against a live switch."""
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme[readme.index("## For integrators") :]
    code = section[section.index("```python") + len("```python") : section.index("```\n", 20)]
    live.certs.creds(P1)  # issues clients/P33039900005.* in the switch's TLS dir
    code = code.replace('"var/tls/"', repr(f"{live.certs.tls_dir}/")).replace(
        "127.0.0.1:50051", f"127.0.0.1:{live.running.port}"
    )
    namespace: dict[str, object] = {}
    await asyncio.to_thread(exec, compile(code, "README.md", "exec"), namespace)
    answer = namespace["answer"]
    assert isinstance(answer, pb.SettleResponse)
    assert answer.status == pb.SETTLEMENT_STATUS_SETTLED and answer.settlement_id


async def test_a_retry_with_another_pin_is_another_request(live: LiveSwitch) -> None:
    # a stored answer is handed back only to a caller who gave the same PIN
    async with channel(live.running.port, live.certs.creds(P1)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        first = await stub.Settle(purchase("pin-retry-1", day="2026-07-15"))
        assert first.status == pb.SETTLEMENT_STATUS_SETTLED
        before = await _balance(live, "M0012")
        code, reason = await _code_and_reason(
            stub.Settle(purchase("pin-retry-1", pin="000000", day="2026-07-15"))
        )
        assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
        assert await _balance(live, "M0012") == before
        assert await stub.Settle(purchase("pin-retry-1", day="2026-07-15")) == first  # a resend


async def _pin_failures(live: LiveSwitch, member_id: str) -> int:
    conn = await asyncpg.connect(live.db_url)
    try:
        value: int = await conn.fetchval(
            "SELECT pin_failures FROM members WHERE member_id = $1", member_id
        )
    finally:
        await conn.close()
    return value


async def test_a_retry_with_another_pin_counts_as_a_wrong_pin(live: LiveSwitch) -> None:
    # resending a settled request id with guessed PINs is PIN guessing: each
    # guess counts toward the card's lock, and a locked card gets no answer
    CARD, PIN = "C3303990013", "909090"
    async with channel(live.running.port, live.certs.creds(P1)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        first = await stub.Settle(purchase("guess-1", day="2026-07-17", card=CARD, pin=PIN))
        assert await _pin_failures(live, "M0013") == 0
        for n in range(1, 6):
            guess = purchase("guess-1", card=CARD, pin=f"00000{n}", day="2026-07-17")
            code, reason = await _code_and_reason(stub.Settle(guess))
            assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
            assert await _pin_failures(live, "M0013") == n
        for pin in (PIN, "000009"):  # the right PIN too, once the card is locked
            code, reason = await _code_and_reason(
                stub.Settle(purchase("guess-1", card=CARD, pin=pin, day="2026-07-17"))
            )
            assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PIN_LOCKED")
        assert await _pin_failures(live, "M0013") == 5
        # the outcome stays readable by the settling institution, without the PIN
        got = await stub.GetSettlement(
            pb.GetSettlementRequest(institution_code=P1, request_id="guess-1")
        )
        assert got.settlement_id == first.settlement_id
        # a different claim under the id is still just a reused id, counting nothing
        other = purchase("guess-2", day="2026-07-17", card="C3303990014", pin="121212")
        await stub.Settle(other)
        other.lines[0].quantity = 3
        other.lines[0].amount_fen *= 3
        other.lines[0].amount_fen //= 2
        code, reason = await _code_and_reason(stub.Settle(other))
        assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
        assert await _pin_failures(live, "M0014") == 0


@pytest.mark.parametrize("code", ["H33039900008", "P33039900009", "P33039900999"])
async def test_only_an_active_institution_reads_members(live: LiveSwitch, code: str) -> None:
    # suspended, revoked and unknown institutions learn nothing of a member,
    # and their wrong PINs lock no card
    card, pin = "C3303990016", "565656"
    failures = await _pin_failures(live, "M0016")
    async with channel(live.running.port, live.certs.creds(code)) as ch:
        members = pb_grpc.MemberServiceStub(ch)
        for guess in (pin, "000000", "000001", "000002", "000003", "000004", "000005"):
            for call in (
                members.GetMember(
                    pb.GetMemberRequest(institution_code=code, card_no=card, pin=guess)
                ),
                members.ListAccountActivity(
                    pb.ListAccountActivityRequest(institution_code=code, card_no=card, pin=guess)
                ),
            ):
                assert await _code_and_reason(call) == (
                    grpc.StatusCode.PERMISSION_DENIED,
                    "INSTITUTION_NOT_ACTIVE",
                )
    assert await _pin_failures(live, "M0016") == failures
    async with channel(live.running.port, live.certs.creds(P1)) as ch:
        member = await pb_grpc.MemberServiceStub(ch).GetMember(
            pb.GetMemberRequest(institution_code=P1, card_no=card, pin=pin)
        )
        assert member.member_id == "M0016"
        code_, reason = await _code_and_reason(
            pb_grpc.MemberServiceStub(ch).ListAccountActivity(
                pb.ListAccountActivityRequest(card_no=card, pin=pin)
            )
        )
        assert (code_, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")


async def test_no_member_id_before_the_pin_is_proved(live: LiveSwitch) -> None:
    async with channel(live.running.port, live.certs.creds(P1)) as ch:
        stub = pb_grpc.SettlementServiceStub(ch)
        wrong_visit = purchase("who-1", day="2026-07-16")
        wrong_visit.visit_type = pb.VISIT_TYPE_OUTPATIENT  # not at a pharmacy
        wrong_visit.diagnoses.append("J06.9")
        refused = await stub.PreSettle(wrong_visit)
        assert list(refused.reasons) == ["R_VISIT_TYPE_NOT_ALLOWED"]
        assert refused.member_id == "" and refused.balance_after_fen == 0
        bad_pin = await stub.PreSettle(purchase("who-2", pin="000000", day="2026-07-16"))
        assert list(bad_pin.reasons) == ["R_PIN_INVALID"] and bad_pin.member_id == ""
        # with the right PIN a rejection may name the member
        goods = purchase("who-3", day="2026-07-16")
        goods.lines.append(
            pb.ClaimLine(
                line_no=2, item_code="G00000001", quantity=1, unit_price_fen=1200, amount_fen=1200
            )
        )
        rejected = await stub.PreSettle(goods)
        assert list(rejected.reasons) == ["R_NON_MEDICAL_GOODS"]
        assert rejected.member_id == "M0012"
