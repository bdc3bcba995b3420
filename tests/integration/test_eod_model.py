"""End of day against an in-memory model: random days of settlements and
cancellations (cancellations may reach back to earlier days, as adjustments
do), closed and exported one after another. The database's clearing, payouts
and carried receivables must equal the pure netting applied to the model,
and the ledger's accounts must say the same."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import accounts, db
from ledger.bankfiles import DebtorAccount
from ledger.endofday import close_day, export_payouts
from ledger.payouts import InstitutionDayAmount, net_payouts
from tests.integration.test_eod_db import H1, H2, H3, balance, cancel, settle

INSTITUTIONS = (H1, H2, H3)
settle_op = st.tuples(
    st.just("settle"), st.sampled_from(INSTITUTIONS), st.integers(1, 5000), st.integers(0, 500)
)
cancel_op = st.tuples(st.just("cancel"), st.integers(0, 60), st.just(0), st.just(0))
days_strategy = st.lists(
    st.lists(st.one_of(settle_op, cancel_op), max_size=8), min_size=1, max_size=4
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(days=days_strategy)
async def test_clearing_payouts_and_receivables_follow_the_model(
    make_db: Callable[[str], Awaitable[str]], days: list[list[tuple[str, object, int, int]]]
) -> None:
    conn = await asyncpg.connect(await make_db("ms_reference"))
    try:
        await conn.execute(f"SET ROLE {db.OPERATOR_ROLE}")  # settle and cancel act as the app
        open_settlements: list[tuple[str, str, int, int]] = []
        owed: dict[str, int] = {}
        paid_total_fen = 0
        for day_ops in days:
            touched: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
            for op, arg, pooled, serious in day_ops:
                if op == "settle":
                    code = str(arg)
                    sid = await settle(conn, code, pooled, serious)
                    open_settlements.append((sid, code, pooled, serious))
                    sums = touched[code]
                    sums[0] += pooled
                    sums[1] += serious
                    sums[2] += 1
                elif open_settlements:
                    sid, code, pooled, serious = open_settlements.pop(
                        int(arg) % len(open_settlements)
                    )
                    await cancel(conn, code, sid)
                    sums = touched[code]
                    sums[0] -= pooled
                    sums[1] -= serious
                    sums[2] -= 1
            closed = await close_day(conn)
            model = net_payouts(
                closed.closed_date,
                [
                    InstitutionDayAmount(code, code, s[0], s[1], 0, s[2])
                    for code, s in touched.items()
                ],
                owed,
            )
            owed = model.receivables_fen
            assert closed.receivables_fen == owed
            rows = await conn.fetch(
                "SELECT institution_code, pooled_fund_fen, serious_illness_fen, settlement_count,"
                " payout_fen, receivable_after_fen FROM day_clearing WHERE business_date = $1",
                closed.closed_date,
            )
            assert {
                r["institution_code"]: (
                    r["pooled_fund_fen"],
                    r["serious_illness_fen"],
                    r["settlement_count"],
                )
                for r in rows
            } == {code: tuple(s) for code, s in touched.items()}
            exported = await export_payouts(
                conn,
                closed.closed_date,
                debtor=DebtorAccount("F", "Fund"),
                created_at=datetime.now(UTC),
            )
            assert [(p.institution_code, p.amount_fen) for p in exported.payouts] == [
                (p.institution_code, p.amount_fen) for p in model.payouts
            ]
            paid_total_fen += model.total_fen
        for code in INSTITUTIONS:
            assert await balance(conn, accounts.institution_receivable(code)) == owed.get(code, 0)
            # Everything owed was either paid out or is netted in the receivable.
            assert await balance(conn, accounts.institution_payable(code)) == 0
        assert await balance(conn, accounts.PAYOUTS_IN_TRANSIT) == -paid_total_fen
    finally:
        await conn.close()
