"""A synthetic pooling region for load tests: a million members in seconds.

Load tests need the shape of a real region, not the twenty people of
shared/reference: members of every category with realistic balances, a few
suspended, deceased or with a lost card, a share approved for special
(chronic) diseases, and hospitals of each level, clinics and pharmacies. This
writes such a region in the reference format that `medswitch
import-reference DIR` reads (policy.toml and catalog.csv are copied from
shared/reference), streaming the member rows so memory stays flat whatever N.

It also writes `manifest.json`, the only thing the locustfile and
bench_switch.py read: a sample of usable cards with their PINs (test data:
the PINs are in clear in members.csv too), the special-disease approvals of
the sampled members, and institution codes by kind, with the subset that
gets client certificates for the load.

    python loadtest/population.py --members 1000000 --institutions 200 --out var/pop
    python loadtest/population.py --members 20000 --institutions 40 --out var/pop \
        --import --issue-certs          # then: medswitch serve; locust ...

Everything is a function of --seed (and --today for the dates), so two runs
write identical files.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adjudication.model import (  # noqa: E402
    CardStatus,
    InstitutionKind,
    InstitutionStatus,
    MemberCategory,
    MemberStatus,
)
from adjudication.policy import load_policy  # noqa: E402
from adjudication.reference import (  # noqa: E402
    INSTITUTIONS_HEADER,
    MEMBERS_HEADER,
    SPECIAL_DISEASES_HEADER,
)

REFERENCE = ROOT / "shared" / "reference"
MANIFEST = "manifest.json"
CHINA_TZ = timezone(timedelta(hours=8))  # Asia/Shanghai has no DST

# Shares of the population, in parts per 10,000 (the region's make-up, not policy).
CATEGORY_SHARES_BP = (
    (MemberCategory.EMPLOYEE, 4_500),
    (MemberCategory.RETIREE, 2_000),
    (MemberCategory.RESIDENT, 3_490),
    (MemberCategory.RETIRED_CADRE, 10),
)
SUSPENDED_BP = 50
DECEASED_BP = 20
CARD_LOST_BP = 30
SPECIAL_DISEASE_BP = 300  # of the members, approved for one chronic disease (a few for two)
SECOND_DISEASE_BP = 1_000  # of those approved, a second disease

# (kind, level, parts per 100 of the institutions): pharmacies dominate a region.
INSTITUTION_MIX = (
    (InstitutionKind.HOSPITAL, "L3", 4),
    (InstitutionKind.HOSPITAL, "L2", 8),
    (InstitutionKind.HOSPITAL, "L1", 10),
    (InstitutionKind.CLINIC, "L1", 18),
    (InstitutionKind.PHARMACY, "", 60),
)

# Ages (years on the generation date) by category.
AGE_RANGES = {
    MemberCategory.EMPLOYEE: (18, 60),
    MemberCategory.RETIREE: (55, 95),
    MemberCategory.RESIDENT: (0, 90),
    MemberCategory.RETIRED_CADRE: (88, 100),
}
# Opening individual-account balance ranges, fen. Residents have no account.
BALANCE_RANGES_FEN = {
    MemberCategory.EMPLOYEE: (0, 600_000),
    MemberCategory.RETIREE: (20_000, 400_000),
    MemberCategory.RESIDENT: (0, 0),
    MemberCategory.RETIRED_CADRE: (200_000, 1_200_000),
}

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚华建国红梅玉文辉斌宇浩凯晨欣怡子涵雨桐"
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    """The GB 11643 check character of a resident identity number."""
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


@dataclass(frozen=True, slots=True)
class PopulationSpec:
    members: int
    institutions: int
    out: Path
    seed: int = 1
    today: date = field(default_factory=lambda: datetime.now(CHINA_TZ).date())
    sample_max: int = 20_000  # usable cards copied into the manifest
    cert_institutions_max: int = 16  # institutions that get client certificates


@dataclass(slots=True)
class Counts:
    members: int = 0
    usable: int = 0
    approvals: int = 0
    by_category: dict[str, int] = field(default_factory=dict)


def _pick(rng: random.Random, shares: tuple[tuple[MemberCategory, int], ...]) -> MemberCategory:
    x = rng.randrange(10_000)
    for value, share in shares:
        if x < share:
            return value
        x -= share
    return shares[-1][0]


def institution_rows(region: str, count: int) -> Iterator[tuple[str, str, str, str, str, str]]:
    """`count` institutions, at least one of each kind and level when count >= 5.

    The last one of a region of 20 or more is suspended, the one before it
    revoked, so load tests can see that they are refused (they are never in
    the manifest's load set).
    """
    kinds: list[tuple[InstitutionKind, str]] = [(k, lv) for k, lv, _ in INSTITUTION_MIX]
    plan = kinds[: min(count, len(kinds))]
    for kind, level, parts in INSTITUTION_MIX:
        plan.extend([(kind, level)] * (parts * (count - len(kinds)) // 100))
    while len(plan) < count:
        plan.append((InstitutionKind.PHARMACY, ""))
    for i, (kind, level) in enumerate(plan[:count], start=1):
        prefix = "P" if kind is InstitutionKind.PHARMACY else "H"
        code = f"{prefix}{region}{i:05d}"
        label = {
            InstitutionKind.HOSPITAL: f"第{i}人民医院 (People's Hospital No. {i})",
            InstitutionKind.CLINIC: f"第{i}社区卫生服务中心 (Community Health Centre No. {i})",
            InstitutionKind.PHARMACY: f"第{i}号药房 (Pharmacy No. {i})",
        }[kind]
        status = InstitutionStatus.ACTIVE
        if count >= 20 and i == count:
            status = InstitutionStatus.SUSPENDED
        elif count >= 20 and i == count - 1:
            status = InstitutionStatus.REVOKED
        yield code, label, kind.value, level, region, status.value


def write_population(spec: PopulationSpec) -> dict[str, object]:
    """Writes the region directory and its manifest; returns the manifest."""
    if spec.members < 1 or spec.institutions < 5:
        raise ValueError("--members must be at least 1 and --institutions at least 5")
    out = spec.out
    out.mkdir(parents=True, exist_ok=True)
    for name in ("policy.toml", "catalog.csv"):
        shutil.copyfile(REFERENCE / name, out / name)
    policy = load_policy(out / "policy.toml")
    region = policy.region_code
    diseases = sorted(policy.special_diseases)
    rng = random.Random(spec.seed)
    year = spec.today.year

    institutions = list(institution_rows(region, spec.institutions))
    with (out / "institutions.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(INSTITUTIONS_HEADER)
        w.writerows(institutions)

    stride = max(1, spec.members // spec.sample_max)
    sample: list[dict[str, object]] = []
    counts = Counts()
    with (
        (out / "members.csv").open("w", newline="", encoding="utf-8") as fm,
        (out / "member_special_diseases.csv").open("w", newline="", encoding="utf-8") as fd,
    ):
        wm = csv.writer(fm, lineterminator="\n")
        wd = csv.writer(fd, lineterminator="\n")
        wm.writerow(MEMBERS_HEADER)
        wd.writerow(SPECIAL_DISEASES_HEADER)
        rows: list[tuple[object, ...]] = []
        for n in range(1, spec.members + 1):
            category = _pick(rng, CATEGORY_SHARES_BP)
            low, high = AGE_RANGES[category]
            birth = spec.today - timedelta(days=rng.randint(low * 365 + 1, high * 365 + 300))
            x = rng.randrange(10_000)
            status = (
                MemberStatus.SUSPENDED
                if x < SUSPENDED_BP
                else MemberStatus.DECEASED
                if x < SUSPENDED_BP + DECEASED_BP
                else MemberStatus.ACTIVE
            )
            card = CardStatus.LOST if rng.randrange(10_000) < CARD_LOST_BP else CardStatus.ACTIVE
            bmin, bmax = BALANCE_RANGES_FEN[category]
            balance_fen = rng.randint(bmin, bmax)
            member_id = f"M{n:09d}"
            card_no = f"C{region}{n:09d}"
            pin = f"{rng.randrange(1_000_000):06d}"
            name = rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.randint(1, 2)))
            first17 = f"{region}{birth:%Y%m%d}{n % 1000:03d}"
            rows.append(
                (
                    member_id,
                    card_no,
                    pin,
                    name,
                    first17 + id_check_digit(first17),
                    birth.isoformat(),
                    category.value,
                    status.value,
                    card.value,
                    balance_fen,
                    region,
                )
            )
            approved: list[str] = []
            if rng.randrange(10_000) < SPECIAL_DISEASE_BP:
                approved = [rng.choice(diseases)]
                if rng.randrange(10_000) < SECOND_DISEASE_BP:
                    other = rng.choice(diseases)
                    if other != approved[0]:
                        approved.append(other)
                for code in approved:
                    # valid the whole benefit year and the next, so a run near
                    # new year still finds them valid
                    wd.writerow((member_id, code, f"{year}-01-01", f"{year + 1}-12-31"))
                counts.approvals += len(approved)
            usable = status is MemberStatus.ACTIVE and card is CardStatus.ACTIVE
            counts.members += 1
            counts.usable += usable
            counts.by_category[category.value] = counts.by_category.get(category.value, 0) + 1
            # approved members are sampled always: the 5 % special-disease
            # share of the load needs enough of them
            if usable and (n % stride == 0 or approved):
                sample.append(
                    {
                        "card_no": card_no,
                        "pin": pin,
                        "category": category.value,
                        "birth_date": birth.isoformat(),
                        "balance_fen": balance_fen,
                        "special_diseases": approved,
                    }
                )
            if len(rows) >= 10_000:
                wm.writerows(rows)
                rows.clear()
        wm.writerows(rows)

    active = [r for r in institutions if r[5] == InstitutionStatus.ACTIVE.value]
    by_kind: dict[str, list[dict[str, str]]] = {k.value: [] for k in InstitutionKind}
    for code, _, kind, level, _, _ in active:
        by_kind[kind].append({"code": code, "level": level})
    load = _load_set(by_kind, spec.cert_institutions_max)
    manifest: dict[str, object] = {
        "region": region,
        "seed": spec.seed,
        "today": spec.today.isoformat(),
        "members_total": counts.members,
        "members_usable": counts.usable,
        "by_category": counts.by_category,
        "approvals": counts.approvals,
        "institutions": by_kind,
        "load_institutions": load,
        "cards": [c for c in sample if not c["special_diseases"]][: spec.sample_max],
        "special_cards": [c for c in sample if c["special_diseases"]][: spec.sample_max],
    }
    (out / MANIFEST).write_text(
        json.dumps(manifest, ensure_ascii=False, separators=(",", ":")) + "\n"
    )
    return manifest


def _load_set(by_kind: dict[str, list[dict[str, str]]], count_max: int) -> dict[str, list[str]]:
    """The institutions the load runs through: pharmacies and hospitals/clinics, half each.

    Hospitals of every level come first so outpatient ratios of L1-L3 all
    get exercised.
    """
    half = max(1, count_max // 2)
    providers = sorted(
        by_kind[InstitutionKind.HOSPITAL.value] + by_kind[InstitutionKind.CLINIC.value],
        key=lambda r: r["level"],
        reverse=True,
    )
    # interleave levels: L3, L2, L1, L3, ...
    levels: dict[str, list[str]] = {}
    for r in providers:
        levels.setdefault(r["level"], []).append(r["code"])
    interleaved: list[str] = []
    while any(levels.values()) and len(interleaved) < half:
        for lv in sorted(levels, reverse=True):
            if levels[lv] and len(interleaved) < half:
                interleaved.append(levels[lv].pop(0))
    pharmacies = [r["code"] for r in by_kind[InstitutionKind.PHARMACY.value][:half]]
    return {"PHARMACY": pharmacies, "PROVIDER": interleaved}


def medswitch(*args: str, env: dict[str, str] | None = None) -> None:
    """Runs the `medswitch` command of this checkout, as an operator would."""
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-m", "switch.cli", *args],
        check=True,
        env=full_env,
        stdout=subprocess.DEVNULL,
    )


def issue_certificates(manifest: dict[str, object], tls_dir: Path | None) -> None:
    """`medswitch pki init` (once) and `pki issue CODE` for the load institutions."""
    from switch import pki  # only this step needs the switch package
    from switch.config import Settings

    tls = tls_dir or Settings.from_env().tls_dir
    if not pki.TlsPaths(tls).ca_crt.exists():
        medswitch("pki", "--tls-dir", str(tls), "init")
    load = manifest["load_institutions"]
    assert isinstance(load, dict)
    for code in [*load["PHARMACY"], *load["PROVIDER"]]:
        if not pki.TlsPaths(tls).client_crt(code).exists():
            medswitch("pki", "--tls-dir", str(tls), "issue", code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, required=True)
    parser.add_argument("--institutions", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--today", type=date.fromisoformat, help="default: today in China")
    parser.add_argument("--sample", type=int, default=20_000, help="cards in the manifest")
    parser.add_argument(
        "--cert-institutions", type=int, default=16, help="institutions the load uses"
    )
    parser.add_argument(
        "--import",
        dest="do_import",
        action="store_true",
        help="run `medswitch import-reference OUT` afterwards",
    )
    parser.add_argument(
        "--issue-certs",
        action="store_true",
        help="`medswitch pki init` if needed, then `pki issue` per load institution",
    )
    parser.add_argument("--tls-dir", type=Path, help="default $MEDSWITCH_TLS_DIR")
    args = parser.parse_args(argv)
    spec = PopulationSpec(
        members=args.members,
        institutions=args.institutions,
        out=args.out,
        seed=args.seed,
        sample_max=args.sample,
        cert_institutions_max=args.cert_institutions,
        **({"today": args.today} if args.today else {}),
    )
    started = time.perf_counter()
    try:
        manifest = write_population(spec)
    except ValueError as exc:
        parser.error(str(exc))
    print(
        f"wrote {manifest['members_total']:,} members ({manifest['members_usable']:,} usable, "
        f"{manifest['approvals']:,} special-disease approvals) and {spec.institutions} "
        f"institutions to {spec.out} in {time.perf_counter() - started:.1f} s"
    )
    if args.issue_certs:
        issue_certificates(manifest, args.tls_dir)
    if args.do_import:
        started = time.perf_counter()
        medswitch("import-reference", str(spec.out))
        print(f"imported in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
