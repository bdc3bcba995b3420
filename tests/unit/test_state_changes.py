"""StateChanges survive storage: the JSON the ledger keeps gives back the very
changes a cancellation must undo."""

from __future__ import annotations

import json
from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from adjudication.model import InpatientStay, StateChanges

fen = st.integers(min_value=0, max_value=10**12)
days = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))


@st.composite
def stays(draw: st.DrawFn) -> InpatientStay:
    admitted = draw(days)
    return InpatientStay(
        settlement_id=draw(st.text(min_size=0, max_size=20)),
        primary_diagnosis=draw(st.text(min_size=1, max_size=8)),
        admission_date=admitted,
        discharge_date=admitted + timedelta(days=draw(st.integers(0, 60))),
        new_admission=draw(st.booleans()),
    )


changes = st.builds(
    StateChanges,
    member_id=st.text(min_size=1, max_size=16),
    benefit_year=st.integers(2000, 2099),
    outpatient_deductible_used_fen=fen,
    outpatient_pooled_fen=fen,
    basic_pooled_fen=fen,
    inpatient_above_deductible_fen=fen,
    new_admissions=st.integers(0, 1),
    serious_illness_base_fen=fen,
    serious_illness_paid_fen=fen,
    pharmacy_date=st.none() | days,
    account_debit_fen=fen,
    stay=st.none() | stays(),
)


@given(changes)
def test_changes_round_trip_through_json(original: StateChanges) -> None:
    stored = json.loads(json.dumps(original.as_dict()))
    assert StateChanges.from_dict(stored) == original
