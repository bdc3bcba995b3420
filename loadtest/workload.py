"""What a province's front-end machines send at peak, and what a right answer is.

One module serves every load client (the gevent locustfile and the grpc.aio
benchmark): it builds SettleRequests the way hospitals and pharmacies do,
and judges each answer. A load test that only counts gRPC errors would call
a switch fast that answers quickly and wrongly, so every answer is checked
against what the request implies: the split adds up to the claim total and
line by line, funds that the visit type cannot use are zero, a retry returns
the very same settlement, a cancellation names the settlement it cancels,
and a rejection only happens where the request makes it the right answer.

A `Session` is one client's state (one locust user, one benchmark worker):
its own slice of the manifest's cards, so the pharmacy rule "at most N
purchases a day" (policy.toml) can be predicted exactly, and its recent
settlements to retry, cancel and fetch. `Session.action(kind)` returns an
`Action`: the RPC to call, the request, and `check(response) -> problem or
None`. Transports call it and report; nothing here does I/O but reading the
manifest.
"""

from __future__ import annotations

import json
import random
import sys
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adjudication.catalog import (  # noqa: E402
    CatalogItem,
    ItemClass,
    ItemKind,
    Restriction,
    Rx,
    load_catalog,
)
from adjudication.policy import load_policy  # noqa: E402
from switch.proto import medswitch_pb2 as pb  # noqa: E402


class Kind(StrEnum):
    PHARMACY = "pharmacy"
    OUTPATIENT = "outpatient"
    SPECIAL_DISEASE = "special_disease"
    INPATIENT = "inpatient"
    STAY = "stay"  # an inpatient stay through the EncounterService, one call at a time
    RETRY = "retry"
    CANCEL = "cancel"
    PRESETTLE = "presettle"
    GET = "get"


# Percent of requests by kind (issue 6): the remaining 5 % after the visit
# types are client retries, cancellations and look-ups. Inpatient care is
# 5 %: discharges settled as one claim 2 %, and 3 % the calls of stays run
# through the encounter API (admission, 1-3 uploads, now and then a void,
# discharge, settlement: about six calls a stay).
FULL_MIX: tuple[tuple[Kind, int], ...] = (
    (Kind.PHARMACY, 60),
    (Kind.OUTPATIENT, 25),
    (Kind.SPECIAL_DISEASE, 5),
    (Kind.INPATIENT, 2),
    (Kind.STAY, 3),
    (Kind.RETRY, 2),
    (Kind.CANCEL, 1),
    (Kind.PRESETTLE, 1),
    (Kind.GET, 1),
)
PHARMACY_MIX: tuple[tuple[Kind, int], ...] = ((Kind.PHARMACY, 100),)
MIXES = {"full": FULL_MIX, "pharmacy": PHARMACY_MIX}

SETTLED = pb.SETTLEMENT_STATUS_SETTLED
REJECTED = pb.SETTLEMENT_STATUS_REJECTED
PREVIEW = pb.SETTLEMENT_STATUS_PREVIEW
CANCELLED = pb.SETTLEMENT_STATUS_CANCELLED
VISIT = {
    Kind.PHARMACY: pb.VISIT_TYPE_PHARMACY,
    Kind.OUTPATIENT: pb.VISIT_TYPE_OUTPATIENT,
    Kind.SPECIAL_DISEASE: pb.VISIT_TYPE_SPECIAL_DISEASE,
    Kind.INPATIENT: pb.VISIT_TYPE_INPATIENT,
}
RECENT_MAX = 256  # settlements a session keeps to retry, cancel and fetch
ENCOUNTERS = "EncounterService"
MEMBERS = "MemberService"

# Drugs a special-disease patient collects, by approved disease (a month's supply).
SPECIAL_DISEASE_ITEMS = {
    "E11": ("XA10BAA067A001010100007", "XA10AEI012B002010100008"),
    "I50": ("XC03CAF001A001010100010", "XC09AAE056A001010100009"),
    "N18": ("311201001", "XA11CCA001B002010100021"),
    "C34": ("XL01EBJ001A001010100016", "250101015"),
    "D66": ("XB02BDH053B002010100013", "250101015"),
}
OUTPATIENT_DIAGNOSES = ("J06.9", "I10", "K29.7", "M54.5", "E78.5", "J20.9", "L30.9")
# (primary diagnosis, procedure or None): a pneumonia has no operation.
INPATIENT_CASES = (
    ("J18.9", None),
    ("K35.8", "331003001"),
    ("I25.1", "331502001"),
    ("I63.9", None),
)


@dataclass(frozen=True, slots=True)
class Card:
    card_no: str
    pin: str
    category: str
    birth_date: date
    special_diseases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    """manifest.json of loadtest/population.py, with the catalog and policy beside it."""

    directory: Path
    today: date
    cards: tuple[Card, ...]
    special_cards: tuple[Card, ...]
    pharmacies: tuple[str, ...]
    providers: tuple[str, ...]  # hospitals and clinics
    items: dict[str, CatalogItem]
    otc_max_per_purchase_fen: int
    purchases_per_day_max: int

    @classmethod
    def load(cls, directory: str | Path) -> Manifest:
        d = Path(directory)
        raw = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        policy = load_policy(d / "policy.toml")
        catalog = load_catalog(d / "catalog.csv", effective_from=policy.effective_from)

        def cards(key: str) -> tuple[Card, ...]:
            return tuple(
                Card(
                    c["card_no"],
                    c["pin"],
                    c["category"],
                    date.fromisoformat(c["birth_date"]),
                    tuple(c["special_diseases"]),
                )
                for c in raw[key]
            )

        return cls(
            directory=d,
            today=date.fromisoformat(raw["today"]),
            cards=cards("cards"),
            special_cards=cards("special_cards"),
            pharmacies=tuple(raw["load_institutions"]["PHARMACY"]),
            providers=tuple(raw["load_institutions"]["PROVIDER"]),
            items=dict(catalog.items),
            otc_max_per_purchase_fen=policy.otc_max_per_purchase_fen,
            purchases_per_day_max=policy.max_purchases_per_day,
        )


@dataclass(slots=True)
class Action:
    """One call a client makes: `check(response)` returns what is wrong, or None."""

    kind: Kind
    method: str  # the method's name in `service`
    institution: str
    request: Any
    check: Callable[[Any], str | None]
    service: str = "SettlementService"

    @property
    def name(self) -> str:
        return f"{self.method} {self.kind.value}"


@dataclass(slots=True)
class _Sent:
    kind: Kind
    request: Any  # SettleRequest, or SettleEncounterRequest for a stay
    response: pb.SettleResponse
    cancelled: bool = False
    method: str = "Settle"
    service: str = "SettlementService"


CLEANUP_TRIES_MAX = 4  # calls to close a given-up stay before it is left open


@dataclass(slots=True)
class _Stay:
    """A stay in progress: the calls still to make and what the switch holds."""

    institution: str
    card: Card
    admitted: date
    discharged: date
    diagnosis: str
    batches: list[list[pb.ClaimLine]]  # uploads still to send, in order
    void: list[int]  # line numbers to void after the uploads
    skip_account: bool
    encounter_id: str = ""  # set by the admission's answer
    admission: pb.RegisterAdmissionRequest | None = None  # as sent (to send again)
    cleanup_tries: int = 0  # calls made to close it once given up
    resent: bool = False  # its admission was sent again to learn its encounter
    live: dict[int, pb.ClaimLine] = field(default_factory=dict)  # uploaded, not voided
    discharge_recorded: bool = False
    waiting: bool = False  # a call was made and its answer has not been judged yet


def pick_kind(rng: random.Random, mix: Sequence[tuple[Kind, int]]) -> Kind:
    return rng.choices([k for k, _ in mix], weights=[w for _, w in mix])[0]


def split_problems(req: pb.SettleRequest, resp: pb.SettleResponse) -> str | None:
    """What is arithmetically wrong with an accepted claim's answer (docs/rules.md, Units)."""
    s = resp.split
    total = sum(line.amount_fen for line in req.lines)
    if s.total_fen != total:
        return f"split.total_fen {s.total_fen} != claim total {total}"
    money = (
        s.full_selfpay_fen, s.overlimit_selfpay_fen, s.preselfpay_fen, s.in_scope_fen,
        s.deductible_fen, s.pooled_fund_fen, s.serious_illness_fen, s.institution_waiver_fen,
        s.individual_account_fen, s.patient_cash_fen, resp.balance_after_fen,
    )  # fmt: skip
    if min(money) < 0:
        return "a negative money field"
    if s.full_selfpay_fen + s.overlimit_selfpay_fen + s.preselfpay_fen + s.in_scope_fen != total:
        return "full_selfpay + overlimit + preselfpay + in_scope != total"
    payers = (
        s.pooled_fund_fen + s.serious_illness_fen + s.institution_waiver_fen
        + s.individual_account_fen + s.patient_cash_fen
    )  # fmt: skip
    if payers != total:
        return f"pooled + serious + waiver + account + cash = {payers} != total {total}"
    if s.individual_account_fen > s.preselfpay_fen + s.in_scope_fen:
        return "the account paid more than preselfpay + in_scope"
    if req.skip_individual_account and s.individual_account_fen:
        return "the account paid although the claim said not to use it"
    if len(resp.lines) != len(req.lines):
        return f"{len(resp.lines)} line results for {len(req.lines)} lines"
    amounts = {line.line_no: line.amount_fen for line in req.lines}
    for lr in resp.lines:
        parts = lr.full_selfpay_fen + lr.overlimit_selfpay_fen + lr.preselfpay_fen + lr.in_scope_fen
        if amounts.get(lr.line_no) != parts:
            return f"line {lr.line_no}: parts {parts} != amount {amounts.get(lr.line_no)}"
    if req.visit_type == pb.VISIT_TYPE_PHARMACY and (
        s.pooled_fund_fen or s.serious_illness_fen or s.institution_waiver_fen
    ):
        return "a pharmacy purchase drew on a fund"
    if req.visit_type == pb.VISIT_TYPE_OUTPATIENT and (
        s.serious_illness_fen or s.institution_waiver_fen
    ):
        return "an outpatient visit drew serious-illness or waiver money"
    return None


def answer_problems(
    req: pb.SettleRequest,
    resp: pb.SettleResponse,
    accepted: int,
    allowed_reasons: frozenset[str] = frozenset(),
) -> str | None:
    """What is wrong with a Settle/PreSettle answer; `accepted` is SETTLED or PREVIEW."""
    if resp.request_id != req.request_id:
        return f"request_id {resp.request_id!r} != {req.request_id!r}"
    if resp.institution_code != req.institution_code:
        return "institution_code differs from the request's"
    if accepted == SETTLED and not resp.settlement_id:
        return "no settlement_id"
    if resp.status == accepted:
        if accepted == SETTLED and not resp.business_date:
            return "a settlement without business_date"
        return split_problems(req, resp)
    if resp.status == REJECTED:
        unexpected = set(resp.reasons) - allowed_reasons
        if unexpected or not resp.reasons:
            return f"unexpected rejection {sorted(resp.reasons)}"
        total = sum(line.amount_fen for line in req.lines)
        s = resp.split
        if s.total_fen != total or s.patient_cash_fen != total or resp.lines:
            return "a rejection must carry total = patient_cash = claim total and no lines"
        return None
    name = pb.SettlementStatus.Name
    return f"status {name(resp.status)} where {name(accepted)} was due"


@dataclass
class Session:
    """One client's requests and memory. `slot` of `slots` picks its own cards."""

    manifest: Manifest
    slot: int = 0
    slots: int = 1
    seed: int | None = None
    # False when the cards may already have been used today (a database
    # reused from an earlier run): the daily pharmacy limit is then unknown
    fresh_day: bool = True
    rng: random.Random = field(init=False)
    prefix: str = field(init=False)
    counter: int = 0
    recent: deque[_Sent] = field(default_factory=lambda: deque(maxlen=RECENT_MAX))
    purchases: dict[str, int] = field(default_factory=dict)  # card -> settled today, by us
    stay: _Stay | None = None  # the inpatient stay in progress
    # Stays given up before their discharge was recorded: each may hold its
    # member's one open admission, which would refuse their next stay
    # (MEMBER_IN_HOSPITAL): their admissions are cancelled first.
    abandoned: list[_Stay] = field(default_factory=list)
    _cards: tuple[Card, ...] = ()
    _special: tuple[Card, ...] = ()
    _next_card: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.prefix = uuid.uuid4().hex[:12]
        m = self.manifest
        self._cards = m.cards[self.slot :: self.slots] or m.cards
        self._special = m.special_cards[self.slot :: self.slots] or m.special_cards
        self._next_card = self.rng.randrange(len(self._cards))
        self.today = m.today.isoformat()
        items = m.items.values()
        self.otc = [
            i for i in items
            if i.kind is ItemKind.DRUG and i.rx is Rx.OTC and i.item_class is not ItemClass.C
            and Restriction.CHILD_ONLY not in i.restrictions
        ]  # fmt: skip
        self.rx = [
            i for i in items
            if i.kind is ItemKind.DRUG and i.rx is Rx.RX and i.item_class is not ItemClass.C
            and not i.restrictions
        ]  # fmt: skip
        self.class_c_drugs = [
            i for i in items if i.kind is ItemKind.DRUG and i.item_class is ItemClass.C
        ]

    # -- requests ---------------------------------------------------------

    def request_id(self) -> str:
        self.counter += 1
        return f"lt-{self.prefix}-{self.counter}"

    def _card(self) -> Card:
        """Cards in turn: every card of the slice is used once before any twice."""
        card = self._cards[self._next_card]
        self._next_card = (self._next_card + 1) % len(self._cards)
        return card

    def _price(self, item: CatalogItem) -> int:
        """Mostly at or under the cap; one line in ten over it (超限价)."""
        cap = item.price_cap_fen
        if cap is None:
            return self.rng.randint(500, 20_000)
        if self.rng.random() < 0.1:
            return cap + self.rng.randint(1, max(1, cap // 5))
        return self.rng.randint(max(1, cap * 6 // 10), cap)

    def _line(
        self, no: int, item: CatalogItem, qty: int, *, days: int = 0, price: int | None = None,
        approved: bool = False, discharge: bool = False,
    ) -> pb.ClaimLine:  # fmt: skip
        unit = self._price(item) if price is None else price
        return pb.ClaimLine(
            line_no=no,
            item_code=item.code,
            quantity=qty,
            unit_price_fen=unit,
            amount_fen=unit * qty,
            days_supply=days,
            approved=approved,
            discharge_medication=discharge,
        )

    def _base(self, kind: Kind, institution: str, card: Card) -> pb.SettleRequest:
        return pb.SettleRequest(
            request_id=self.request_id(),
            institution_code=institution,
            card_no=card.card_no,
            pin=card.pin,
            visit_type=VISIT[kind],
            service_date=self.today,
            skip_individual_account=self.rng.random() < 0.05,
        )

    def pharmacy_request(self, institution: str) -> tuple[pb.SettleRequest, Card]:
        card = self._card()
        req = self._base(Kind.PHARMACY, institution, card)
        if self.rng.random() < 0.35:  # a prescription from a hospital
            req.prescription_ref = f"RX{self.rng.randrange(10**10):010d}"
            picks = self.rng.sample(self.rx, k=self.rng.randint(1, 3))
            for no, item in enumerate(picks, 1):
                req.lines.append(
                    self._line(no, item, self.rng.randint(1, 3), days=self.rng.randint(3, 7))
                )
        else:  # over the counter: stay under the per-purchase amount
            budget = self.manifest.otc_max_per_purchase_fen
            picks = self.rng.sample(self.otc, k=self.rng.randint(1, 3))
            for item in picks:
                line = self._line(len(req.lines) + 1, item, self.rng.randint(1, 2))
                if line.amount_fen <= budget:
                    budget -= line.amount_fen
                    req.lines.append(line)
            if not req.lines:  # one smallest package is always allowed
                req.lines.append(self._line(1, picks[0], 1))
            if self.rng.random() < 0.1:
                item = self.rng.choice(self.class_c_drugs)
                req.lines.append(self._line(len(req.lines) + 1, item, 1))
        return req, card

    def outpatient_request(self, institution: str) -> pb.SettleRequest:
        card = self._card()
        req = self._base(Kind.OUTPATIENT, institution, card)
        req.diagnoses.append(self.rng.choice(OUTPATIENT_DIAGNOSES))
        items = self.manifest.items
        consult = "110200003" if self.rng.random() < 0.2 else "110200001"
        req.lines.append(self._line(1, items[consult], 1))
        for code in ("250101015", "250301001", "210300001"):
            if self.rng.random() < 0.3:
                req.lines.append(self._line(len(req.lines) + 1, items[code], 1))
        for item in self.rng.sample(self.rx + self.otc, k=self.rng.randint(0, 3)):
            req.lines.append(
                self._line(
                    len(req.lines) + 1, item, self.rng.randint(1, 3), days=self.rng.randint(1, 7)
                )
            )
        return req

    def special_disease_request(self, institution: str) -> pb.SettleRequest:
        card = self.rng.choice(self._special)
        req = self._base(Kind.SPECIAL_DISEASE, institution, card)
        disease = self.rng.choice(card.special_diseases)
        req.diagnoses.append(disease if self.rng.random() < 0.5 else f"{disease}.9")
        for code in SPECIAL_DISEASE_ITEMS.get(disease, ("250101015",)):
            item = self.manifest.items[code]
            days = 30 if item.kind is ItemKind.DRUG else 0
            qty = 1 if item.kind is not ItemKind.DRUG else self.rng.randint(1, 4)
            req.lines.append(self._line(len(req.lines) + 1, item, qty, days=days, approved=True))
        return req

    def inpatient_request(self, institution: str) -> pb.SettleRequest:
        card = self._card()
        req = self._base(Kind.INPATIENT, institution, card)
        stay_days = self.rng.randint(2, 12)
        discharge = self.manifest.today
        req.admission_date = (discharge - timedelta(days=stay_days)).isoformat()
        req.discharge_date = discharge.isoformat()
        diagnosis, procedure = self.rng.choice(INPATIENT_CASES)
        req.diagnoses.extend([diagnosis, "I10"] if self.rng.random() < 0.3 else [diagnosis])
        req.lines.extend(self._inpatient_lines(stay_days, procedure))
        return req

    def _inpatient_lines(self, stay_days: int, procedure: str | None) -> list[pb.ClaimLine]:
        """A stay's fee details: bed, nursing, care, materials, tests, an infusion,
        the procedure, and a take-home drug."""
        items = self.manifest.items
        bed = "110900003" if self.rng.random() < 0.2 else "110900001"
        codes_qty = [
            (bed, stay_days),
            ("111000001", stay_days),
            ("120400001", stay_days),
            ("C01010003", stay_days),
            ("250101015", 2),
            ("XB05BAF001B002010100017", 3),
        ]
        if procedure:
            codes_qty.append((procedure, 1))
        if procedure == "331502001":
            codes_qty.append(("C03010001", 1))
        lines = [self._line(no, items[code], qty) for no, (code, qty) in enumerate(codes_qty, 1)]
        take_home = self.rng.choice(self.rx)
        lines.append(
            self._line(len(lines) + 1, take_home, 2, days=self.rng.randint(7, 30), discharge=True)
        )
        return lines

    # -- actions ----------------------------------------------------------

    def action(self, kind: Kind) -> Action:
        """The next call of this kind (falls back to a pharmacy purchase when
        there is nothing yet to retry, cancel or fetch)."""
        m = self.manifest
        if kind is Kind.PHARMACY:
            pharmacy = self.rng.choice(m.pharmacies)
            req, card = self.pharmacy_request(pharmacy)
            return self._settle(kind, req, card)
        provider = self.rng.choice(m.providers)
        if kind is Kind.OUTPATIENT:
            return self._settle(kind, self.outpatient_request(provider), None)
        if kind is Kind.SPECIAL_DISEASE:
            return self._settle(kind, self.special_disease_request(provider), None)
        if kind is Kind.INPATIENT:
            return self._settle(kind, self.inpatient_request(provider), None)
        if kind is Kind.STAY:
            return self._stay_step(provider)
        if kind is Kind.PRESETTLE:
            return self._presettle(self.outpatient_request(provider))
        live = [s for s in self.recent if not s.cancelled]
        if not live:
            return self.action(Kind.PHARMACY)
        sent = self.rng.choice(live)
        if kind is Kind.RETRY:
            return self._retry(sent)
        if kind is Kind.CANCEL:
            return self._cancel(sent)
        return self._get(sent)

    def _settle(self, kind: Kind, req: pb.SettleRequest, card: Card | None) -> Action:
        allowed: frozenset[str] = frozenset()
        if card is not None:  # pharmacy: the (N+1)-th purchase of the day is refused
            used = self.purchases.get(card.card_no, 0)
            if used >= self.manifest.purchases_per_day_max or not self.fresh_day:
                allowed = frozenset({"R_FREQUENT_PURCHASE"})

        def check(resp: pb.SettleResponse) -> str | None:
            problem = answer_problems(req, resp, SETTLED, allowed)
            if allowed and self.fresh_day and resp.status == SETTLED:
                problem = problem or "a pharmacy purchase over the daily limit was settled"
            if problem is None and resp.status == SETTLED:
                self.recent.append(_Sent(kind, req, resp))
                if card is not None:
                    self.purchases[card.card_no] = self.purchases.get(card.card_no, 0) + 1
            return problem

        return Action(kind, "Settle", req.institution_code, req, check)

    def _presettle(self, req: pb.SettleRequest) -> Action:
        return Action(
            Kind.PRESETTLE, "PreSettle", req.institution_code, req,
            lambda resp: answer_problems(req, resp, PREVIEW),
        )  # fmt: skip

    def _retry(self, sent: _Sent) -> Action:
        def check(resp: pb.SettleResponse) -> str | None:
            if resp.settlement_id != sent.response.settlement_id:
                return "a retry answered a different settlement_id"
            if resp != sent.response:
                return "a retry answered differently from the first answer"
            return None

        return Action(
            Kind.RETRY, sent.method, sent.request.institution_code, sent.request, check,
            sent.service,
        )  # fmt: skip

    def _cancel(self, sent: _Sent) -> Action:
        sent.cancelled = True  # never cancelled twice by us, whatever the answer
        req = pb.CancelSettlementRequest(
            request_id=self.request_id(),
            institution_code=sent.request.institution_code,
            settlement_id=sent.response.settlement_id,
            reason="load test: patient returned the goods",
        )

        def check(resp: pb.CancelSettlementResponse) -> str | None:
            if resp.status != CANCELLED:
                return f"cancel answered {pb.SettlementStatus.Name(resp.status)}"
            if resp.settlement_id != sent.response.settlement_id:
                return "cancel answered another settlement_id"
            if not resp.reversal_id:
                return "cancel without reversal_id"
            if resp.balance_after_fen < 0:
                return "negative balance after cancel"
            card = sent.request.card_no
            if sent.kind is Kind.PHARMACY and self.purchases.get(card, 0) > 0:
                self.purchases[card] -= 1
            return None

        return Action(Kind.CANCEL, "CancelSettlement", req.institution_code, req, check)

    def _get(self, sent: _Sent) -> Action:
        req = pb.GetSettlementRequest(
            institution_code=sent.request.institution_code,
            settlement_id=sent.response.settlement_id,
        )

        def check(resp: pb.SettleResponse) -> str | None:
            if resp.settlement_id != sent.response.settlement_id:
                return "GetSettlement answered another settlement"
            if resp.status != SETTLED:  # lookups go only to settlements never cancelled
                return f"GetSettlement status {pb.SettlementStatus.Name(resp.status)}"
            if resp.split != sent.response.split:
                return "GetSettlement split differs from the Settle answer"
            return None

        return Action(Kind.GET, "GetSettlement", req.institution_code, req, check)

    # -- stays (EncounterService) ----------------------------------------

    def _stay_step(self, provider: str) -> Action:
        """The next call of the stay in progress, or the admission of a new one.

        A call whose answer was not judged right (an error, a timeout, a wrong
        answer) leaves the stay where the switch may or may not have it: it is
        given up and, unless its discharge was recorded, its admission is
        cancelled before a new one begins (_close_abandoned).
        """
        stay = self.stay
        if stay is not None and stay.waiting:  # given up
            if not stay.discharge_recorded:
                self.abandoned.append(stay)
            stay = self.stay = None
        while self.abandoned and self.abandoned[0].cleanup_tries >= CLEANUP_TRIES_MAX:
            self.abandoned.pop(0)  # left open: its member's next stay may be refused
        if self.abandoned:
            self.abandoned[0].cleanup_tries += 1
            return self._close_abandoned(self.abandoned[0])
        if stay is None:
            stay = self.stay = self._new_stay(provider)
        stay.waiting = True
        if not stay.encounter_id:
            return self._admit(stay)
        if stay.batches:
            return self._upload(stay)
        if stay.void:
            return self._void(stay)
        if not stay.discharge_recorded:
            return self._discharge(stay)
        return self._settle_stay(stay)

    def _new_stay(self, institution: str) -> _Stay:
        days = self.rng.randint(2, 12)
        diagnosis, procedure = self.rng.choice(INPATIENT_CASES)
        lines = self._inpatient_lines(days, procedure)
        size = -(-len(lines) // self.rng.randint(1, 3))  # uploaded day by day: 1-3 calls
        return _Stay(
            institution=institution,
            card=self._card(),
            admitted=self.manifest.today - timedelta(days=days),
            discharged=self.manifest.today,
            diagnosis=diagnosis,
            batches=[lines[i : i + size] for i in range(0, len(lines), size)],
            void=[self.rng.choice(lines).line_no] if self.rng.random() < 0.3 else [],
            skip_account=self.rng.random() < 0.05,
        )

    def _close_abandoned(self, stay: _Stay) -> Action:
        """A stay given up before its discharge: its admission is cancelled, so that
        the member may be admitted again (one stay at a time). With no encounter
        id, the same admission is sent again first: it answers the encounter it
        made (its answer was lost), or makes it now. If that is refused too (the
        member was in hospital already: a stay an earlier run left open),
        GetMember names the open stay, which its hospital then cancels."""
        if not stay.encounter_id and stay.admission is not None and not stay.resent:
            stay.resent = True
            req = stay.admission

            def admitted(resp: pb.Encounter) -> str | None:
                # the answer first given (a replay), whatever was uploaded since
                if resp.request_id != req.request_id or not resp.encounter_id:
                    return "an admission sent again answered another request"
                stay.encounter_id = resp.encounter_id
                return None

            return Action(Kind.STAY, "RegisterAdmission", stay.institution, req, admitted,
                          ENCOUNTERS)  # fmt: skip
        if not stay.encounter_id:
            ask = pb.GetMemberRequest(
                institution_code=stay.institution, card_no=stay.card.card_no, pin=stay.card.pin
            )

            def found(resp: pb.Member) -> str | None:
                held = resp.open_encounter if resp.HasField("open_encounter") else None
                if held is None or held.status != pb.ENCOUNTER_STATUS_ADMITTED:
                    self.abandoned.remove(stay)  # nothing holds the member now
                else:  # cancelled by the hospital that registered it
                    stay.encounter_id, stay.institution = held.encounter_id, held.institution_code
                return None

            return Action(Kind.STAY, "GetMember", stay.institution, ask, found, MEMBERS)
        cancel = pb.CancelAdmissionRequest(
            request_id=self.request_id(), institution_code=stay.institution,
            encounter_id=stay.encounter_id, reason="abandoned by the load generator",
        )  # fmt: skip

        def cancelled(resp: pb.Encounter) -> str | None:
            if resp.encounter_id != cancel.encounter_id:
                return "a cancelled admission answered another encounter"
            if resp.status != pb.ENCOUNTER_STATUS_CANCELLED:
                return "an admission cancelled is not answered cancelled"
            self.abandoned.remove(stay)
            return None

        return Action(Kind.STAY, "CancelAdmission", stay.institution, cancel, cancelled,
                      ENCOUNTERS)  # fmt: skip

    def _admit(self, stay: _Stay) -> Action:
        req = pb.RegisterAdmissionRequest(
            request_id=self.request_id(), institution_code=stay.institution,
            card_no=stay.card.card_no, pin=stay.card.pin,
            admission_date=stay.admitted.isoformat(), department="Inpatient ward",
            diagnoses=[stay.diagnosis],
        )  # fmt: skip
        stay.admission = req

        def check(resp: pb.Encounter) -> str | None:
            problem = encounter_problems(req, resp, pb.ENCOUNTER_STATUS_ADMITTED, stay.live)
            if problem is None:
                stay.encounter_id, stay.waiting = resp.encounter_id, False
            return problem

        return Action(Kind.STAY, "RegisterAdmission", stay.institution, req, check, ENCOUNTERS)

    def _upload(self, stay: _Stay) -> Action:
        batch = stay.batches[0]
        req = pb.UploadFeeDetailsRequest(
            request_id=self.request_id(), institution_code=stay.institution,
            encounter_id=stay.encounter_id, lines=batch,
        )  # fmt: skip
        after = {**stay.live, **{line.line_no: line for line in batch}}

        def check(resp: pb.UploadFeeDetailsResponse) -> str | None:
            problem = upload_problems(req, resp, after)
            if problem is None:
                stay.batches.pop(0)
                stay.live, stay.waiting = after, False
            return problem

        return Action(Kind.STAY, "UploadFeeDetails", stay.institution, req, check, ENCOUNTERS)

    def _void(self, stay: _Stay) -> Action:
        req = pb.VoidFeeDetailsRequest(
            request_id=self.request_id(), institution_code=stay.institution,
            encounter_id=stay.encounter_id, line_nos=stay.void, reason="charged twice",
        )  # fmt: skip
        after = {no: line for no, line in stay.live.items() if no not in stay.void}

        def check(resp: pb.VoidFeeDetailsResponse) -> str | None:
            if list(resp.voided_line_nos) != list(req.line_nos):
                return "a void answered other line numbers than it was sent"
            problem = _fee_total_problems(resp, after)
            if problem is None:
                stay.live, stay.void, stay.waiting = after, [], False
            return problem

        return Action(Kind.STAY, "VoidFeeDetails", stay.institution, req, check, ENCOUNTERS)

    def _discharge(self, stay: _Stay) -> Action:
        req = pb.RecordDischargeRequest(
            request_id=self.request_id(), institution_code=stay.institution,
            encounter_id=stay.encounter_id, discharge_date=stay.discharged.isoformat(),
            diagnoses=[stay.diagnosis],
        )  # fmt: skip

        def check(resp: pb.Encounter) -> str | None:
            problem = encounter_problems(req, resp, pb.ENCOUNTER_STATUS_DISCHARGED, stay.live)
            if problem is None and resp.discharge_date != req.discharge_date:
                problem = "the discharge answered another discharge date"
            if problem is None:
                stay.discharge_recorded, stay.waiting = True, False
            return problem

        return Action(Kind.STAY, "RecordDischarge", stay.institution, req, check, ENCOUNTERS)

    def _settle_stay(self, stay: _Stay) -> Action:
        req = pb.SettleEncounterRequest(
            request_id=self.request_id(), institution_code=stay.institution,
            encounter_id=stay.encounter_id, card_no=stay.card.card_no, pin=stay.card.pin,
            skip_individual_account=stay.skip_account,
        )  # fmt: skip
        # The one claim the stay stands for: what the answer is judged against.
        claim = pb.SettleRequest(
            request_id=req.request_id, institution_code=stay.institution,
            visit_type=pb.VISIT_TYPE_INPATIENT, skip_individual_account=stay.skip_account,
            lines=[stay.live[no] for no in sorted(stay.live)],
        )  # fmt: skip

        def check(resp: pb.SettleResponse) -> str | None:
            problem = answer_problems(claim, resp, SETTLED)
            if problem is None:
                self.recent.append(
                    _Sent(Kind.STAY, req, resp, method="SettleEncounter", service=ENCOUNTERS)
                )
                self.stay = None
            return problem

        return Action(Kind.STAY, "SettleEncounter", stay.institution, req, check, ENCOUNTERS)


def encounter_problems(
    req: Any, resp: pb.Encounter, status: int, live: dict[int, pb.ClaimLine]
) -> str | None:
    """What is wrong with an Encounter answer to `req` (admission or discharge)."""
    if resp.request_id != req.request_id or resp.institution_code != req.institution_code:
        return "an encounter answer for another request or institution"
    if (
        not resp.encounter_id
        or getattr(req, "encounter_id", resp.encounter_id) != resp.encounter_id
    ):
        return "an encounter answer for another encounter"
    if resp.status != status:
        name = pb.EncounterStatus.Name
        return f"encounter status {name(resp.status)} where {name(status)} was due"
    return _fee_total_problems(resp, live)


def upload_problems(
    req: pb.UploadFeeDetailsRequest,
    resp: pb.UploadFeeDetailsResponse,
    after: dict[int, pb.ClaimLine],
) -> str | None:
    """What is wrong with an upload's answer: one result per line sent, in order,
    each split into parts that add up to its amount."""
    if resp.request_id != req.request_id or resp.encounter_id != req.encounter_id:
        return "an upload answered for another request or encounter"
    if [r.line_no for r in resp.lines] != [line.line_no for line in req.lines]:
        return "an upload's results are not its lines, in order"
    for line, r in zip(req.lines, resp.lines, strict=True):
        parts = (r.full_selfpay_fen, r.overlimit_selfpay_fen, r.preselfpay_fen, r.in_scope_fen)
        if min(parts) < 0 or sum(parts) != line.amount_fen:
            return f"upload line {line.line_no}: parts {sum(parts)} != amount {line.amount_fen}"
    return _fee_total_problems(resp, after)


def _fee_total_problems(resp: Any, live: dict[int, pb.ClaimLine]) -> str | None:
    """The encounter's lines not voided, and their total, as the client counts them."""
    total = sum(line.amount_fen for line in live.values())
    if (resp.line_count, resp.total_fen) != (len(live), total):
        held = f"{resp.line_count} lines, {resp.total_fen} fen"
        return f"the encounter holds {held}, not {len(live)} lines, {total} fen"
    return None
