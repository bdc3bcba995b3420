"""Benchmark of the pure adjudication engine on one core.

Prints claims per second for a realistic mix: five-line pharmacy purchases
and forty-line inpatient stays over the reference catalog, members spread
over categories and accumulators (deductibles part-used, some near the band
and serious-illness thresholds, earlier stays). Targets (issue 2): at least
20,000 pharmacy claims/s and 2,000 inpatient claims/s on one core.

    python loadtest/bench_engine.py [--seconds 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adjudication.catalog import CatalogBook, ItemClass, ItemKind, Rx, load_catalog  # noqa: E402
from adjudication.engine import adjudicate  # noqa: E402
from adjudication.model import (  # noqa: E402
    CardStatus,
    Claim,
    ClaimLine,
    Context,
    InpatientStay,
    Institution,
    InstitutionKind,
    InstitutionStatus,
    MemberCategory,
    MemberState,
    MemberStatus,
    VisitType,
    YearAccumulators,
)
from adjudication.policy import PolicyBook, load_policy  # noqa: E402

REFERENCE = ROOT / "shared" / "reference"
YEAR = 2026


def build(
    seed: int,
) -> tuple[list[tuple[Claim, Context]], list[tuple[Claim, Context]], PolicyBook, CatalogBook]:
    rng = random.Random(seed)
    policy = load_policy(REFERENCE / "policy.toml")
    policies = PolicyBook([policy])
    catalogs = CatalogBook(
        [load_catalog(REFERENCE / "catalog.csv", effective_from=policy.effective_from)]
    )
    items = list(catalogs.catalogs[0].items.values())
    otc = [
        i
        for i in items
        if i.kind is ItemKind.DRUG and i.rx is Rx.OTC and i.item_class is not ItemClass.C
    ]
    drugs = [i for i in items if i.kind is ItemKind.DRUG and i.rx is Rx.RX]
    hospital_items = [i for i in items if i.kind is not ItemKind.GOODS]
    pharmacy = Institution("P1", InstitutionKind.PHARMACY, "", InstitutionStatus.ACTIVE)
    hospitals = [
        Institution(f"H{lv}", InstitutionKind.HOSPITAL, lv, InstitutionStatus.ACTIVE)
        for lv in ("L1", "L2", "L3")
    ]

    def member(i: int) -> MemberState:
        category = rng.choice(list(MemberCategory))
        day = date(YEAR, 1, 1) + timedelta(days=rng.randrange(300))
        stays = tuple(
            InpatientStay(
                f"S{i}-{k}",
                rng.choice(["J18.9", "I63.9", "K35.8"]),
                day,
                day + timedelta(days=4),
                True,
            )
            for k in range(rng.randrange(3))
        )
        return MemberState(
            member_id=f"M{i}",
            category=category,
            status=MemberStatus.ACTIVE,
            card_status=CardStatus.ACTIVE,
            birth_date=date(1940 + rng.randrange(70), 1 + rng.randrange(12), 1 + rng.randrange(28)),
            balance_fen=rng.choice([0, 5_000, 80_000, 320_000, 1_200_000]),
            year=YearAccumulators(
                year=YEAR,
                outpatient_deductible_used_fen=rng.randrange(0, 100_000),
                basic_pooled_fen=rng.randrange(0, 1_000_000),
                inpatient_above_deductible_fen=rng.choice([0, 4_900_000, 6_000_000]),
                new_admissions=rng.randrange(3),
                serious_illness_base_fen=rng.choice([0, 1_990_000, 2_500_000]),
            ),
            stays=stays,
            pharmacy_purchases_today=rng.randrange(3),
        )

    pharmacy_claims = []
    for i in range(2_000):
        lines = tuple(
            ClaimLine(n, it.code, q, p, q * p, days_supply=rng.randrange(1, 8))
            for n in range(1, 6)
            for it in [rng.choice(otc + drugs)]
            for q in [rng.randrange(1, 4)]
            for p in [rng.randrange(100, 3_000)]
        )
        claim = Claim(
            request_id=f"p{i}",
            institution_code="P1",
            card_no=f"C{i}",
            visit_type=VisitType.PHARMACY,
            lines=lines,
            service_date=date(YEAR, 11, 1),
            prescription_ref="RX-1",
        )
        pharmacy_claims.append((claim, Context(pharmacy, member(i), True)))

    inpatient_claims = []
    for i in range(500):
        admitted = date(YEAR, 11, 1) + timedelta(days=rng.randrange(20))
        lines = tuple(
            ClaimLine(
                n,
                it.code,
                q,
                p,
                q * p,
                approved=rng.random() < 0.7,
                days_supply=rng.choice([0, 0, 7, 35]),
                discharge_medication=rng.random() < 0.1,
            )
            for n in range(1, 41)
            for it in [rng.choice(hospital_items)]
            for q in [rng.randrange(1, 6)]
            for p in [rng.randrange(100, 200_000)]
        )
        claim = Claim(
            request_id=f"i{i}",
            institution_code=f"H{i % 3}",
            card_no=f"C{i}",
            visit_type=VisitType.INPATIENT,
            lines=lines,
            admission_date=admitted,
            discharge_date=admitted + timedelta(days=rng.randrange(1, 15)),
            diagnoses=(rng.choice(["J18.9", "I63.9", "K35.8"]),),
        )
        inpatient_claims.append((claim, Context(hospitals[i % 3], member(10_000 + i), True)))
    return pharmacy_claims, inpatient_claims, policies, catalogs


def measure(
    name: str,
    claims: list[tuple[Claim, Context]],
    run: Callable[[Claim, Context], object],
    seconds: float,
) -> float:
    # Warm up, then as many full passes as fit in the time.
    for claim, ctx in claims[:200]:
        run(claim, ctx)
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for claim, ctx in claims:
            run(claim, ctx)
        done += len(claims)
    elapsed = time.perf_counter() - started
    rate = done / elapsed
    print(
        f"{name:<28} {done:>9,} claims in {elapsed:5.2f} s = {rate:>10,.0f} claims/s"
        f"  ({1e6 / rate:6.1f} us/claim)"
    )
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    pharmacy, inpatient, policies, catalogs = build(args.seed)

    def run(claim: Claim, ctx: Context) -> object:
        return adjudicate(claim, ctx, policies, catalogs)

    print(f"python {platform.python_version()} on {platform.machine()}, one core, seed {args.seed}")
    accepted = sum(run(c, x).accepted for c, x in pharmacy)  # type: ignore[attr-defined]
    print(
        f"mix: {len(pharmacy)} pharmacy claims ({accepted} accepted), "
        f"{len(inpatient)} inpatient claims"
    )
    p_rate = measure("pharmacy, 5 lines", pharmacy, run, args.seconds)
    i_rate = measure("inpatient, 40 lines", inpatient, run, args.seconds)
    ok = p_rate >= 20_000 and i_rate >= 2_000
    print(
        f"targets: pharmacy >= 20,000/s {'met' if p_rate >= 20_000 else 'MISSED'}; "
        f"inpatient >= 2,000/s {'met' if i_rate >= 2_000 else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
