"""Benefit policies as data: loaded from TOML, chosen by the benefit date.

A region changes its rules every year or two, and a claim must be
re-adjudicable years later with the rules of its day, so several versions
are kept side by side and `PolicyBook.in_force(day)` picks the one whose
`effective_from` is the latest not after that day. The schema is that of
shared/reference/policy.toml; its meaning is docs/rules.md.
"""

from __future__ import annotations

import bisect
import itertools
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from adjudication.errors import DataFileError
from adjudication.model import MemberCategory, VisitType
from adjudication.text import unfit_character

LEVELS = ("L1", "L2", "L3")
DAYS_SUPPLY_KEYS = ("OUTPATIENT", "PHARMACY", "SPECIAL_DISEASE", "INPATIENT_DISCHARGE")


@dataclass(frozen=True, slots=True)
class SpecialDiseaseRule:
    code: str
    name: str
    pooled_bp: int
    waiver_bp: int


@dataclass(frozen=True, slots=True)
class Policy:
    region_code: str
    version: str
    effective_from: date
    account_pays_full_selfpay: bool
    account_pays_overlimit: bool
    otc_max_per_purchase_fen: int
    max_purchases_per_day: int
    days_supply_max: Mapping[str, int]  # key: visit type name or INPATIENT_DISCHARGE
    outpatient_deductible_fen: Mapping[MemberCategory, int]
    outpatient_ratio_bp: Mapping[MemberCategory, Mapping[str, int]]
    outpatient_annual_cap_fen: Mapping[MemberCategory, int]  # missing: no cap
    same_episode_days: int
    split_admission_warn_days: int
    repeat_admission_bp: int
    band_threshold_fen: int
    band_extra_bp: int
    inpatient_deductible_fen: Mapping[str, int]  # by level
    inpatient_ratio_bp: Mapping[MemberCategory, Mapping[str, int]]
    inpatient_deductible_exempt: frozenset[MemberCategory]
    basic_annual_cap_fen: Mapping[MemberCategory, int]  # missing: no cap
    serious_illness_exempt: frozenset[MemberCategory]
    serious_illness_threshold_fen: int
    serious_illness_ratio_bp: int
    serious_illness_annual_cap_fen: int
    special_diseases: Mapping[str, SpecialDiseaseRule]
    # Categories without the class A/B distinction (离休: no pre-self-pay).
    no_preselfpay_categories: frozenset[MemberCategory]

    def days_supply_limit(self, visit_type: VisitType, discharge_medication: bool) -> int | None:
        if visit_type is VisitType.INPATIENT:
            return self.days_supply_max["INPATIENT_DISCHARGE"] if discharge_medication else None
        return self.days_supply_max[visit_type.value]


class PolicyBook:
    """Every loaded policy version; the one in force on a date applies."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        ordered = sorted(policies, key=lambda p: p.effective_from)
        for a, b in itertools.pairwise(ordered):
            if a.effective_from == b.effective_from:
                raise ValueError(
                    f"policies {a.version} and {b.version} take effect on the same day "
                    f"{a.effective_from}"
                )
        versions = [p.version for p in ordered]
        if len(set(versions)) != len(versions):
            raise ValueError(f"duplicate policy version in {versions}")
        self._policies = tuple(ordered)
        self._starts = [p.effective_from for p in ordered]

    @property
    def policies(self) -> tuple[Policy, ...]:
        return self._policies

    def in_force(self, day: date) -> Policy | None:
        i = bisect.bisect_right(self._starts, day)
        return self._policies[i - 1] if i else None

    def by_version(self, version: str) -> Policy | None:
        return next((p for p in self._policies if p.version == version), None)


# --------------------------------------------------------------------------
# Loading


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"]+)\s*=")


def _locate(text: str, path: tuple[str, ...]) -> int | None:
    """Best line number (1-based) for a dotted field path in TOML text."""
    best: tuple[int, int] | None = None  # (matched length, line)
    table: tuple[str, ...] = ()
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0]
        header = _HEADER.match(line)
        if header:
            table = tuple(part.strip().strip('"') for part in header.group(2).split("."))
            candidate = table
        else:
            key = _KEY.match(line)
            if not key:
                continue
            candidate = (*table, key.group(1).strip('"'))
        matched = 0
        for a, b in zip(candidate, path, strict=False):
            if a != b:
                break
            matched += 1
        if matched == len(candidate) and (best is None or matched > best[0]):
            best = (matched, n)
    return best[1] if best else None


class _Reader:
    """Typed access to the parsed TOML that names the file, line and field on error."""

    def __init__(
        self,
        path: str,
        text: str,
        data: dict[str, Any],
        *,
        prefix: str = "",
        line: int | None = None,
    ) -> None:
        self.path = path
        self.text = text
        self.data = data
        # For an entry of an array of tables: its name and the line of its header.
        self.prefix = prefix
        self.line = line

    def fail(self, keys: tuple[str, ...], message: str) -> DataFileError:
        if self.prefix:
            line = _entry_key_line(self.text, self.line, keys[-1]) if keys else self.line
        else:
            line = _locate(self.text, keys)
        return DataFileError(self.path, line, self.prefix + ".".join(keys), message)

    def get(self, keys: tuple[str, ...], default: Any = ...) -> Any:
        node: Any = self.data
        for i, key in enumerate(keys):
            if not isinstance(node, dict):
                raise self.fail(keys[:i], "must be a table")
            if key not in node:
                if default is not ...:
                    return default
                raise self.fail(keys, "is missing")
            node = node[key]
        return node

    def int_(self, keys: tuple[str, ...], *, low: int = 0, high: int | None = None) -> int:
        value = self.get(keys)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(keys, f"must be a whole number, not {value!r}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise self.fail(keys, f"must be {bound}, not {value}")
        return value

    def bp(self, keys: tuple[str, ...]) -> int:
        return self.int_(keys, low=0, high=10_000)

    def bool_(self, keys: tuple[str, ...]) -> bool:
        value = self.get(keys)
        if not isinstance(value, bool):
            raise self.fail(keys, f"must be true or false, not {value!r}")
        return value

    def str_(self, keys: tuple[str, ...]) -> str:
        value = self.get(keys)
        if not isinstance(value, str) or not value:
            raise self.fail(keys, "must be a non-empty string")
        problem = unfit_character(value)
        if problem is not None:
            raise self.fail(keys, problem)
        return value

    def date_(self, keys: tuple[str, ...]) -> date:
        value = self.get(keys)
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise self.fail(keys, f"must be a date YYYY-MM-DD, not {value!r}")

    def category(self, keys: tuple[str, ...], name: str) -> MemberCategory:
        try:
            return MemberCategory(name)
        except ValueError:
            raise self.fail(keys, f"unknown member category {name!r}") from None

    def categories(self, keys: tuple[str, ...], default: Any = ...) -> frozenset[MemberCategory]:
        value = self.get(keys, default)
        if not isinstance(value, list):
            raise self.fail(keys, "must be a list of member categories")
        return frozenset(self.category(keys, str(v)) for v in value)

    def by_category(
        self, keys: tuple[str, ...], *, every: bool, bp: bool = False
    ) -> dict[MemberCategory, int]:
        table = self.get(keys, {} if not every else ...)
        if not isinstance(table, dict):
            raise self.fail(keys, "must be a table keyed by member category")
        out = {}
        for name in table:
            cat = self.category((*keys, name), name)
            out[cat] = self.bp((*keys, name)) if bp else self.int_((*keys, name))
        if every:
            for cat in MemberCategory:
                if cat not in out:
                    raise self.fail((*keys, cat.value), "is missing")
        return out

    def by_level(self, keys: tuple[str, ...], *, bp: bool) -> dict[str, int]:
        table = self.get(keys)
        if not isinstance(table, dict):
            raise self.fail(keys, "must be a table keyed by level L1, L2, L3")
        for name in table:
            if name not in LEVELS:
                raise self.fail((*keys, name), f"unknown level {name!r} (L1, L2 or L3)")
        return {lv: self.bp((*keys, lv)) if bp else self.int_((*keys, lv)) for lv in LEVELS}

    def ratio_table(self, keys: tuple[str, ...]) -> dict[MemberCategory, dict[str, int]]:
        table = self.get(keys)
        if not isinstance(table, dict):
            raise self.fail(keys, "must be a table keyed by member category")
        out = {}
        for cat in MemberCategory:
            out[cat] = self.by_level((*keys, cat.value), bp=True)
        for name in table:
            self.category((*keys, name), name)
        return out


def parse_policy(text: str, path: str = "policy.toml") -> Policy:
    """A policy from TOML text; DataFileError naming file, line and field if bad."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise DataFileError(path, int(match.group(1)) if match else None, "", str(exc)) from None
    r = _Reader(path, text, data)

    diseases = _special_diseases(r, path, text)
    days = {}
    for key in DAYS_SUPPLY_KEYS:
        days[key] = r.int_(("days_supply", key), low=1)

    return Policy(
        region_code=r.str_(("region", "code")),
        version=r.str_(("policy", "version")),
        effective_from=r.date_(("policy", "effective_from")),
        account_pays_full_selfpay=r.bool_(("account", "pays_full_selfpay")),
        account_pays_overlimit=r.bool_(("account", "pays_overlimit")),
        otc_max_per_purchase_fen=r.int_(("pharmacy", "otc_max_per_purchase_fen")),
        max_purchases_per_day=r.int_(("pharmacy", "max_purchases_per_day"), low=1),
        days_supply_max=days,
        outpatient_deductible_fen=r.by_category(("outpatient", "deductible_fen"), every=True),
        outpatient_ratio_bp=r.ratio_table(("outpatient", "ratio_bp")),
        outpatient_annual_cap_fen=r.by_category(("outpatient", "annual_cap_fen"), every=False),
        same_episode_days=r.int_(("inpatient", "same_episode_days")),
        split_admission_warn_days=r.int_(("inpatient", "split_admission_warn_days")),
        repeat_admission_bp=r.bp(("inpatient", "repeat_admission_bp")),
        band_threshold_fen=r.int_(("inpatient", "band_threshold_fen")),
        band_extra_bp=r.bp(("inpatient", "band_extra_bp")),
        inpatient_deductible_fen=r.by_level(("inpatient", "deductible_fen"), bp=False),
        inpatient_ratio_bp=r.ratio_table(("inpatient", "ratio_bp")),
        inpatient_deductible_exempt=r.categories(
            ("inpatient", "deductible_exempt", "categories"), []
        ),
        basic_annual_cap_fen=r.by_category(("basic_annual_cap_fen",), every=False),
        serious_illness_exempt=r.categories(("serious_illness", "exempt_categories"), []),
        serious_illness_threshold_fen=r.int_(("serious_illness", "threshold_fen")),
        serious_illness_ratio_bp=r.bp(("serious_illness", "ratio_bp")),
        serious_illness_annual_cap_fen=r.int_(("serious_illness", "annual_cap_fen")),
        special_diseases=diseases,
        no_preselfpay_categories=r.categories(
            ("policy", "no_preselfpay_categories"), [MemberCategory.RETIRED_CADRE.value]
        ),
    )


def _special_diseases(r: _Reader, path: str, text: str) -> dict[str, SpecialDiseaseRule]:
    """The [[special_disease]] tables, by code; DataFileError naming the entry if bad."""
    diseases: dict[str, SpecialDiseaseRule] = {}
    entries = r.get(("special_disease",), [])
    if not isinstance(entries, list):
        raise r.fail(("special_disease",), "must be an array of tables [[special_disease]]")
    for i, node in enumerate(entries):
        if not isinstance(node, dict):
            raise r.fail(("special_disease",), "must be an array of tables [[special_disease]]")
        sub = _Reader(
            path,
            text,
            node,
            prefix=f"special_disease[{i}].",
            line=_nth_array_table_line(text, "special_disease", i),
        )
        code = sub.str_(("code",))
        if code in diseases:
            raise sub.fail(("code",), f"duplicate special disease {code}")
        waiver = sub.bp(("waiver_bp",)) if "waiver_bp" in node else 0
        pooled = sub.bp(("pooled_bp",))
        if pooled + waiver > 10_000:
            raise sub.fail(("waiver_bp",), "pooled_bp + waiver_bp must not exceed 10000")
        diseases[code] = SpecialDiseaseRule(
            code=code, name=str(node.get("name", "")), pooled_bp=pooled, waiver_bp=waiver
        )
    return diseases


def _entry_key_line(text: str, header_line: int | None, key: str) -> int | None:
    """The line of `key` inside the array-table entry whose header is at header_line.

    Falls back to the header line (e.g. for a missing key), which still shows
    policy staff which entry is wrong.
    """
    if header_line is None:
        return None
    lines = text.splitlines()
    for n in range(header_line + 1, len(lines) + 1):
        raw = lines[n - 1].split("#", 1)[0]
        if _HEADER.match(raw):
            break
        found = _KEY.match(raw)
        if found and found.group(1).strip('"') == key:
            return n
    return header_line


def _nth_array_table_line(text: str, name: str, index: int) -> int | None:
    seen = -1
    for n, raw in enumerate(text.splitlines(), start=1):
        if raw.strip().startswith(f"[[{name}]]"):
            seen += 1
            if seen == index:
                return n
    return None


def load_policy(path: str | Path) -> Policy:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(str(p), None, "", f"cannot read: {exc}") from None
    return parse_policy(text, str(p))
