"""Several `medswitch serve` processes on one port and one database, settling for
the same members at once.

Nothing a process keeps in memory may be needed by another: each process's
settlement writer records what it decided only if every member is still at
the version it loaded (members.state_seq; else it loads and decides again),
and PIN checks are counted and judged in the database. Three processes share
one port (--reuse-port); clients on many connections, which the kernel
spreads over them, send a seeded mix of claims of every kind for six members
at once, on four days, so that accounts, yearly accumulators, daily purchase
counts, stays and PIN counts of one member are moved by every process. The
answers are then replayed through the engine's in-memory model in the order
the database recorded them: every answer must be the model's, and so must
every balance, accumulator, purchase count, stay and PIN count left in the
database; no account goes below zero. Then wrong PINs at once, spread over
the processes, lock a card at the fifth: every other, and the right PIN
after them, find it locked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import pytest

from adjudication import limits as alimits
from adjudication.memory import InMemoryRegion, load_region
from switch.proto import medswitch_pb2 as pb
from switch.proto import medswitch_pb2_grpc as pb_grpc
from tests.cli import ServeProcess, medswitch
from tests.faults.settle_load import LoadRecord, settle_until_answered
from tests.grpc_harness import Pki, error_details, free_port, pharmacy_request
from tests.random_claims import ClaimMaker, answer_fields, model_answer
from tests.switch_pg import REFERENCE, SwitchPg, serve_env
from tests.switch_pg import switch_certs as switch_certs
from tests.switch_pg import switch_pg as switch_pg
from tests.waiting import until

pytestmark = pytest.mark.slow
PROCESSES = 3
CONNECTIONS = 12  # clients, each on its own connection per institution
CLAIMS = 360
MEMBERS = frozenset({"M0001", "M0002", "M0006", "M0014", "M0017", "M0019"})  # M0014: 50 yuan
DAYS = 4
# Members of none of MEMBERS, for the PIN lock: (member, card, right PIN)
PIN_CARDS = [
    ("M0004", "C3303990004", "998877"),
    ("M0007", "C3303990007", "102938"),
    ("M0008", "C3303990008", "564738"),
]
GUESSES = 12  # wrong PINs at once, per card
PHARMACY = "P33039900005"


@dataclass
class Processes:
    port: int
    db_url: str
    serves: list[ServeProcess]

    def answered(self, method: str) -> list[list[dict[str, Any]]]:
        """For each process, the `rpc` events (its log) of the `method` calls it answered."""
        return [
            [
                event
                for event in serve.output.events()
                if event.get("event") == "rpc" and event.get("method") == method
            ]
            for serve in self.serves
        ]

    async def logged(self, method: str, count: int) -> list[list[dict[str, Any]]]:
        """answered(method) once `count` such calls are logged in all (a process
        logs a call as it answers it; its output is read a moment later)."""
        await until(
            lambda: sum(map(len, self.answered(method))) >= count, f"{count} {method} rpc events"
        )
        return self.answered(method)


@pytest.fixture(scope="module")
async def processes(
    switch_pg: SwitchPg, switch_certs: Pki, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Processes]:
    db_url = await switch_pg.fresh_db()
    port = free_port()
    tmp = tmp_path_factory.mktemp("processes")
    env = serve_env(switch_pg, switch_certs, tmp, db_url, port, MEDSWITCH_REUSE_PORT="1")
    serves: list[ServeProcess] = []
    try:
        for _ in range(PROCESSES):
            serve = await ServeProcess.start(
                {**env, "MEDSWITCH_METRICS_LISTEN": f"127.0.0.1:{free_port()}"}
            )
            serves.append(serve)
            await serve.serving()  # the port answers already (another's): wait for its word
        yield Processes(port, db_url, serves)
    finally:
        for serve in serves:
            if serve.proc.returncode is None:
                serve.proc.send_signal(signal.SIGTERM)
        for serve in serves:
            await serve.exit_code()
            await serve.close()


def _connection(port: int, creds: grpc.ChannelCredentials) -> grpc.aio.Channel:
    """A channel with a connection of its own (grpc shares them between channels
    by default), so the kernel places each one on a process of its choice."""
    return grpc.aio.secure_channel(
        f"127.0.0.1:{port}", creds, options=[("grpc.use_local_subchannel_pool", 1)]
    )


async def _send_all(
    port: int, certs: Pki, requests: list[pb.SettleRequest], record: LoadRecord
) -> None:
    """CONNECTIONS clients at once, each sending its share in turn."""

    async def client(share: list[pb.SettleRequest]) -> None:
        channels: dict[str, grpc.aio.Channel] = {}
        try:
            for request in share:
                code = request.institution_code
                if code not in channels:
                    channels[code] = _connection(port, certs.creds(code))
                stub = pb_grpc.SettlementServiceStub(channels[code])
                await settle_until_answered(stub, request, record)
        finally:
            for ch in channels.values():
                await ch.close()

    await asyncio.gather(*(client(requests[c::CONNECTIONS]) for c in range(CONNECTIONS)))


async def test_processes_settling_for_the_same_members_agree_with_the_model(
    processes: Processes, switch_certs: Pki
) -> None:
    maker = ClaimMaker(random.Random(20261203), member_ids=MEMBERS, days=DAYS, prefix="multi")
    requests = [maker.claim() for _ in range(CLAIMS)]
    record = LoadRecord()
    await _send_all(processes.port, switch_certs, requests, record)
    assert not record.unanswered, record.unanswered[:5]
    assert len(record.acknowledged) == CLAIMS
    # every process settled for every member: the members were moved from all sides
    card_member = {m["card_no"]: m["member_id"] for m in maker.members}
    for events in await processes.logged("Settle", CLAIMS):
        members = {card_member[record.requests[e["request_id"]].card_no] for e in events}
        assert members == MEMBERS, members

    conn = await asyncpg.connect(processes.db_url)
    try:
        order = await conn.fetch(
            "SELECT request_id FROM settlements ORDER BY created_at, settlement_id"
        )
        model = load_region(REFERENCE)
        assert sorted(r["request_id"] for r in order) == sorted(record.acknowledged)
        for row in order:  # the order of the commits: each member's state moved in it
            request_id = row["request_id"]
            _, expected = model_answer(model, record.requests[request_id])
            got = record.acknowledged[request_id]
            assert answer_fields(got) == answer_fields(expected), record.requests[request_id]
            assert got.balance_after_fen >= 0
        assert await _stored_state(conn) == _model_state(model)
    finally:
        await conn.close()
    outcomes = {a.status for a in record.acknowledged.values()}
    assert outcomes == {pb.SETTLEMENT_STATUS_SETTLED, pb.SETTLEMENT_STATUS_REJECTED}
    verify = medswitch("ledger", "verify", env={"MEDSWITCH_DATABASE_URL": processes.db_url})
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def _stored_state(conn: asyncpg.Connection) -> dict[str, Any]:
    """What the database holds of MEMBERS: balance, PIN count, years, days, stays."""
    state: dict[str, Any] = {}
    for member_id in sorted(MEMBERS):
        member = await conn.fetchrow(
            "SELECT b.balance_fen, m.pin_failures FROM members m"
            " JOIN account_balances b USING (account_id) WHERE m.member_id = $1",
            member_id,
        )
        years = await conn.fetch(
            "SELECT * FROM member_year WHERE member_id = $1 ORDER BY year", member_id
        )
        days = await conn.fetch(
            "SELECT service_date, purchases FROM pharmacy_daily"
            " WHERE member_id = $1 AND purchases > 0 ORDER BY service_date",
            member_id,
        )
        stays = await conn.fetch(
            "SELECT admission_date, discharge_date, new_admission FROM inpatient_stays"
            " WHERE member_id = $1 ORDER BY admission_date, discharge_date",
            member_id,
        )
        state[member_id] = {
            "balance_fen": member["balance_fen"],
            "pin_failures": member["pin_failures"],
            "years": [{k: v for k, v in dict(y).items() if k != "member_id"} for y in years],
            "pharmacy_days": [(d["service_date"], d["purchases"]) for d in days],
            "stays": sorted(tuple(s) for s in stays),
        }
    return state


def _model_state(model: InMemoryRegion) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for member_id in sorted(MEMBERS):
        m = model.members[member_id]
        state[member_id] = {
            "balance_fen": m.balance_fen,
            "pin_failures": m.pin_failures,
            "years": [dataclasses.asdict(m.years[y]) for y in sorted(m.years)],
            "pharmacy_days": sorted((day, n) for day, n in m.pharmacy_days.items() if n > 0),
            "stays": sorted((s.admission_date, s.discharge_date, s.new_admission) for s in m.stays),
        }
    return state


async def test_wrong_pins_spread_over_the_processes_lock_the_card_at_the_fifth(
    processes: Processes, switch_certs: Pki
) -> None:
    creds = switch_certs.creds(PHARMACY)
    before = [len(events) for events in processes.answered("GetMember")]

    async def get_member(card: str, pin: str) -> str:
        async with _connection(processes.port, creds) as ch:
            try:
                await pb_grpc.MemberServiceStub(ch).GetMember(
                    pb.GetMemberRequest(institution_code=PHARMACY, card_no=card, pin=pin),
                    timeout=30,
                )
            except grpc.aio.AioRpcError as err:
                return error_details(err).reason
            return "OK"

    conn = await asyncpg.connect(processes.db_url)
    try:
        for member_id, card, pin in PIN_CARDS:
            wrong = [f"{n:06d}" for n in range(GUESSES)]
            outcomes = await asyncio.gather(*(get_member(card, guess) for guess in wrong))
            limit = alimits.pin_failures_max
            assert sorted(outcomes) == ["PIN_INVALID"] * limit + ["PIN_LOCKED"] * (
                GUESSES - limit
            ), outcomes
            assert await get_member(card, pin) == "PIN_LOCKED"
            stored = await conn.fetchval(
                "SELECT pin_failures FROM members WHERE member_id = $1", member_id
            )
            assert stored == limit
    finally:
        await conn.close()
    calls = sum(before) + len(PIN_CARDS) * (GUESSES + 1)
    after = [len(events) for events in await processes.logged("GetMember", calls)]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)


async def test_one_request_sent_to_every_process_at_once_settles_once(
    processes: Processes, switch_certs: Pki
) -> None:
    """A resend that lands on another process while the first is still in flight
    gets the same answer; the database holds one settlement, the account paid once."""
    request = pharmacy_request("twice-1", PHARMACY, "C3303990012", "808080", "2026-01-05")
    creds = switch_certs.creds(PHARMACY)

    async def send() -> pb.SettleResponse:
        async with _connection(processes.port, creds) as ch:
            answer: pb.SettleResponse = await pb_grpc.SettlementServiceStub(ch).Settle(
                request, timeout=30
            )
            return answer

    before = [len(events) for events in processes.answered("Settle")]
    answers = await asyncio.gather(*(send() for _ in range(3 * PROCESSES)))
    calls = sum(before) + len(answers)
    after = [len(events) for events in await processes.logged("Settle", calls)]
    assert sum(a > b for a, b in zip(after, before, strict=True)) >= 2, "one process took all"
    assert all(answer == answers[0] for answer in answers)
    assert answers[0].status == pb.SETTLEMENT_STATUS_SETTLED
    conn = await asyncpg.connect(processes.db_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM settlements WHERE request_id = $1", request.request_id
        )
        balance = await conn.fetchval(
            "SELECT b.balance_fen FROM members m JOIN account_balances b USING (account_id)"
            " WHERE m.member_id = 'M0012'"
        )
    finally:
        await conn.close()
    assert stored == 1
    assert balance == answers[0].balance_after_fen == 1_200_000 - 450
