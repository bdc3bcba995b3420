"""The ledger's stored state of a card, as the engine's inputs.

`Ledger.load_states` returns typed rows (`StateRow`) of what is stored; the
engine reads `adjudication.model` values. This is the one place that turns
one into the other (Settle, PreSettle, GetMember all read through it).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from adjudication.model import (
    ApprovedDisease,
    CardStatus,
    Context,
    InpatientStay,
    Institution,
    InstitutionKind,
    InstitutionStatus,
    MemberCategory,
    MemberState,
    MemberStatus,
    YearAccumulators,
)
from ledger.store import StateRow


def _known(value: str | None) -> str:
    """A column that is set whenever the row's member (or institution) is."""
    assert value is not None
    return value


def _date(value: Any) -> date:
    """A date from its ISO text (as jsonb carries it) or a date."""
    return value if isinstance(value, date) else date.fromisoformat(value)


def institution(state: StateRow) -> Institution | None:
    if state.institution_code is None:
        return None
    return Institution(
        code=state.institution_code,
        kind=InstitutionKind(_known(state.institution_kind)),
        level=state.institution_level or "",
        status=InstitutionStatus(_known(state.institution_status)),
        name=state.institution_name or "",
        region=state.institution_region or "",
    )


def special_diseases(state: StateRow) -> tuple[ApprovedDisease, ...]:
    return tuple(
        ApprovedDisease(d["code"], _date(d["valid_from"]), _date(d["valid_to"]))
        for d in state.special_diseases or ()
    )


def year_accumulators(state: StateRow, year: int) -> YearAccumulators:
    return YearAccumulators(
        year=year,
        outpatient_deductible_used_fen=state.outpatient_deductible_used_fen or 0,
        outpatient_pooled_fen=state.outpatient_pooled_fen or 0,
        basic_pooled_fen=state.basic_pooled_fen or 0,
        inpatient_above_deductible_fen=state.inpatient_above_deductible_fen or 0,
        new_admissions=state.new_admissions or 0,
        serious_illness_base_fen=state.serious_illness_base_fen or 0,
        serious_illness_paid_fen=state.serious_illness_paid_fen or 0,
    )


def member_state(state: StateRow, year: int) -> MemberState | None:
    if state.member_id is None:
        return None
    assert state.birth_date is not None and state.balance_fen is not None
    return MemberState(
        member_id=state.member_id,
        category=MemberCategory(_known(state.category)),
        status=MemberStatus(_known(state.status)),
        card_status=CardStatus(_known(state.card_status)),
        birth_date=state.birth_date,
        balance_fen=state.balance_fen,
        year=year_accumulators(state, year),
        pin_failures=state.pin_failures or 0,
        special_diseases=special_diseases(state),
        stays=tuple(
            InpatientStay(
                settlement_id=s["settlement_id"],
                primary_diagnosis=s["primary_diagnosis"],
                admission_date=_date(s["admission_date"]),
                discharge_date=_date(s["discharge_date"]),
                new_admission=bool(s["new_admission"]),
            )
            for s in state.stays or ()
        ),
        pharmacy_purchases_today=state.pharmacy_purchases_today,
    )


def engine_context(state: StateRow, year: int, *, pin_ok: bool) -> Context:
    """The engine's Context for a claim of the benefit `year` from the card's stored state."""
    return Context(
        institution=institution(state),
        member=member_state(state, year),
        pin_ok=pin_ok,
    )
