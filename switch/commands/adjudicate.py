"""`medswitch adjudicate`: what would the switch pay for this claim?

For policy staff and integrators: reads a claim written with the
SettleRequest fields of the .proto (JSON, enum values by name), adjudicates it
against a reference directory with a fresh member state (or the state given
in a file) and prints the split line by line. Nothing is recorded anywhere;
the answer is that of PreSettle (status PREVIEW).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from datetime import date
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from adjudication.engine import benefit_date
from adjudication.errors import DataFileError
from adjudication.memory import InMemoryRegion, MemberRecord, load_region
from adjudication.model import Adjudication, Claim, InpatientStay, YearAccumulators
from adjudication.money import fen_to_yuan
from adjudication.reasons import MEANING
from adjudication.validation import InvalidClaim
from switch import limits
from switch.backend import settlement_view
from switch.convert import claim_from_request, settle_response
from switch.proto import medswitch_pb2 as pb

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "adjudicate",
        help="adjudicate a claim (JSON SettleRequest) without recording anything",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("claim", type=Path, help="the claim: a SettleRequest as JSON ('-' for stdin)")
    p.add_argument(
        "--reference",
        type=Path,
        required=True,
        metavar="DIR",
        help="reference directory (policy.toml, catalog.csv, institutions.csv, members.csv, "
        "member_special_diseases.csv)",
    )
    p.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="JSON member state to start from instead of a fresh one: any of balance_fen, "
        "pin_failures, pharmacy_purchases_today, year {accumulators}, stays [...]",
    )
    p.add_argument("--json", action="store_true", help="print the SettleResponse as JSON")
    p.add_argument(
        "--skip-pin-check",
        action="store_true",
        help="treat the PIN as right (what-if questions without the member's PIN)",
    )
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    if len(message) > limits.what_if_message_chars_max:  # a parser may quote all it read
        message = message[: limits.what_if_message_chars_max] + "..."
    print(f"medswitch adjudicate: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _whole_number(text: str) -> int:
    digits, digits_max = len(text.lstrip("-")), limits.json_number_digits_max
    if digits > digits_max:
        raise ValueError(f"a number of {digits:,} digits (at most {digits_max})")
    return int(text)


def _read_json(path: Path) -> Any:
    """The JSON document in `path` ('-': stdin); ValueError saying what is wrong
    with it (too large, not UTF-8, not JSON, nested too deeply, a number too long)."""
    bytes_max = limits.what_if_file_bytes_max
    if str(path) == "-":
        data = sys.stdin.buffer.read(bytes_max + 1)
    else:
        with path.open("rb") as file:
            data = file.read(bytes_max + 1)
    if len(data) > bytes_max:
        raise ValueError(f"{path}: larger than {bytes_max:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = f"byte {exc.start + 1} is 0x{data[exc.start]:02X}"
        raise ValueError(f"{path}: not UTF-8 ({bad})") from None
    try:
        return json.loads(text, parse_int=_whole_number)
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    except ValueError as exc:  # a number too long (_whole_number)
        raise ValueError(f"{path}: {exc}") from None


def apply_state_file(record: MemberRecord, claim: Claim, data: Any, source: str) -> None:
    """Overlay a state file on the member's fresh state; errors name the field."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: must be a JSON object")
    known = {"balance_fen", "pin_failures", "pharmacy_purchases_today", "year", "stays"}
    for key in data:
        if key not in known:
            raise ValueError(f"{source}: {key}: unknown field (known: {', '.join(sorted(known))})")

    def whole(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{source}: {name}: must be a whole number >= 0")
        return value

    day = benefit_date(claim)  # where the engine will look: the discharge date only inpatient
    if "balance_fen" in data:
        record.balance_fen = whole("balance_fen", data["balance_fen"])
    if "pin_failures" in data:
        record.pin_failures = whole("pin_failures", data["pin_failures"])
    if "pharmacy_purchases_today" in data:
        record.pharmacy_days[day] = whole(
            "pharmacy_purchases_today", data["pharmacy_purchases_today"]
        )
    if "year" in data:
        year = data["year"]
        if not isinstance(year, dict):
            raise ValueError(f"{source}: year: must be an object")
        names = {f.name for f in fields(YearAccumulators)} - {"year"}
        values = {}
        for key, value in year.items():
            if key not in names:
                raise ValueError(f"{source}: year.{key}: unknown accumulator")
            values[key] = whole(f"year.{key}", value)
        record.years[day.year] = YearAccumulators(year=day.year, **values)
    if "stays" in data:
        stays = data["stays"]
        if not isinstance(stays, list):
            raise ValueError(f"{source}: stays: must be a list")
        record.stays = []
        for i, stay in enumerate(stays):
            try:
                record.stays.append(
                    InpatientStay(
                        settlement_id=str(stay.get("settlement_id", f"STATE-{i}")),
                        primary_diagnosis=str(stay["primary_diagnosis"]),
                        admission_date=date.fromisoformat(stay["admission_date"]),
                        discharge_date=date.fromisoformat(stay["discharge_date"]),
                        new_admission=bool(stay.get("new_admission", True)),
                    )
                )
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"{source}: stays[{i}]: {exc}") from None


def run(args: argparse.Namespace) -> int:
    try:
        region = load_region(args.reference)
    except DataFileError as exc:
        return _fail(str(exc))
    try:
        request = json_format.ParseDict(_read_json(args.claim), pb.SettleRequest())
    except ValueError as exc:
        return _fail(str(exc))
    except (OSError, json_format.ParseError, RecursionError) as exc:
        return _fail(f"{args.claim}: {exc}")
    claim, violations = claim_from_request(request)
    if claim is None:
        for v in violations:
            print(
                f"medswitch adjudicate: {args.claim}: {v.field}: {v.description}", file=sys.stderr
            )
        return EXIT_BAD_INPUT
    pin = request.pin
    record = region.member_by_card(claim.card_no)
    if record is not None:
        if args.skip_pin_check:
            pin = record.pin
        if args.state is not None:
            try:
                apply_state_file(record, claim, _read_json(args.state), str(args.state))
            except (OSError, ValueError) as exc:
                return _fail(str(exc))
    try:
        _, result = region.adjudicate(claim, pin, apply=False)
    except InvalidClaim as exc:
        for bad in exc.violations:
            print(
                f"medswitch adjudicate: {args.claim}: {bad.field}: {bad.description}",
                file=sys.stderr,
            )
        return EXIT_BAD_INPUT
    response = settle_response(
        settlement_view(
            result,
            settlement_id="",
            request_id=claim.request_id,
            institution_code=claim.institution_code,
            business_date=None,
            preview=True,
        )
    )
    if args.json:
        print(json.dumps(message_to_plain(response), ensure_ascii=False, indent=2))
    else:
        print(render_table(claim, result, region))
    return EXIT_OK


def message_to_plain(message: Message) -> dict[str, Any]:
    """A message as JSON-ready values in declaration order: every field, ints as
    numbers (not the strings of proto3's JSON mapping), enums by name."""
    out: dict[str, Any] = {}
    for fd in message.DESCRIPTOR.fields:
        value = getattr(message, fd.name)
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            convert: Any = message_to_plain
        elif fd.type == FieldDescriptor.TYPE_ENUM:
            enum = fd.enum_type

            def convert(v: int, enum: Any = enum) -> str:
                return str(enum.values_by_number[v].name)
        else:

            def convert(v: Any) -> Any:
                return v

        is_repeated = fd.is_repeated
        out[fd.name] = [convert(v) for v in value] if is_repeated else convert(value)
    return out


def render_table(claim: Claim, result: Adjudication, region: InMemoryRegion) -> str:
    """The answer as a person reads it: one row per line, then the split (yuan)."""
    out: list[str] = []
    day = result.benefit_date
    status = "PREVIEW" if result.accepted else "REJECTED"
    out.append(
        f"{status}  claim {claim.request_id}  {claim.visit_type.value} at {claim.institution_code}"
        f"  member {result.member_id or '-'}  benefit date {day}  policy {result.policy_version}"
        f"  catalog v{result.catalog_version}"
    )
    for code in result.reasons:
        out.append(f"  rejected: {code}  {MEANING.get(code, '')}")
    for code in result.warnings:
        out.append(f"  warning:  {code}  {MEANING.get(code, '')}")
    if result.lines:
        catalog = region.catalogs.in_force(day) if day else None
        head = ("line", "item", "class", "amount", "self-pay", "over cap", "pre-self", "in scope")
        rows = [head]
        notes: list[str] = []
        amounts = {line.line_no: line.amount_fen for line in claim.lines}
        codes = {line.line_no: line.item_code for line in claim.lines}
        for ln in result.lines:
            item = catalog.get(codes[ln.line_no]) if catalog else None
            name = item.name if item else codes[ln.line_no]
            rows.append(
                (
                    str(ln.line_no),
                    _clip(name, 34),
                    ln.item_class or "-",
                    fen_to_yuan(amounts[ln.line_no]),
                    fen_to_yuan(ln.full_selfpay_fen),
                    fen_to_yuan(ln.overlimit_selfpay_fen),
                    fen_to_yuan(ln.preselfpay_fen),
                    fen_to_yuan(ln.in_scope_fen),
                )
            )
            for code in ln.reasons:
                notes.append(f"  line {ln.line_no}: {code}  {MEANING.get(code, '')}")
        widths = [max(_width(r[i]) for r in rows) for i in range(len(head))]
        out.append("")
        for r in rows:
            cells = [_pad(cell, widths[i], right=i not in (1, 2)) for i, cell in enumerate(r)]
            out.append("  " + "  ".join(cells))
        out.extend(notes)
    s = result.split
    out.append("")
    parts = [
        ("total", s.total_fen),
        ("full self-pay", s.full_selfpay_fen),
        ("over price cap", s.overlimit_selfpay_fen),
        ("class B pre-self-pay", s.preselfpay_fen),
        ("in policy scope", s.in_scope_fen),
        ("  of which deductible", s.deductible_fen),
        ("pooled fund", s.pooled_fund_fen),
        ("serious illness", s.serious_illness_fen),
        ("institution waiver", s.institution_waiver_fen),
        ("individual account", s.individual_account_fen),
        ("patient cash", s.patient_cash_fen),
        ("account balance after", result.balance_after_fen),
    ]
    label_w = max(len(label) for label, _ in parts)
    value_w = max(len(fen_to_yuan(v)) for _, v in parts)
    for label, value in parts:
        out.append(f"  {label:<{label_w}}  {fen_to_yuan(value):>{value_w}} yuan")
    return "\n".join(out)


def _width(text: str) -> int:
    """Display width: CJK characters take two columns."""
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _clip(text: str, width: int) -> str:
    out = ""
    for ch in text:
        if _width(out + ch) > width:
            break
        out += ch
    return out


def _pad(text: str, width: int, *, right: bool) -> str:
    fill = " " * (width - _width(text))
    return fill + text if right else text + fill
