"""`medswitch adjudicate`, the what-if command, driven as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.claims import REFERENCE
from tests.cli import medswitch

EXAMPLES = json.loads((REFERENCE / "examples.json").read_text(encoding="utf-8"))["steps"]


def _write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_json_output_is_the_settle_response_of_a_fresh_member(tmp_path: Path) -> None:
    """With no state file the member starts fresh, so step 0 of the examples
    (a first purchase) gives exactly its expected split and lines, as PREVIEW."""
    step = EXAMPLES[0]
    claim = _write(tmp_path, "claim.json", step["request"])
    run = medswitch("adjudicate", "--reference", str(REFERENCE), "--json", str(claim))
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["status"] == "SETTLEMENT_STATUS_PREVIEW"
    assert answer["split"] == step["expect"]["split"]
    assert answer["lines"] == [{**ln} for ln in step["expect"]["lines"]]
    assert answer["balance_after_fen"] == step["expect"]["balance_after_fen"]
    assert answer["settlement_id"] == ""


def test_table_output_names_each_line_its_class_and_reasons(tmp_path: Path) -> None:
    step = EXAMPLES[6]  # resident inpatient with a class C line
    claim = _write(tmp_path, "claim.json", step["request"])
    run = medswitch("adjudicate", "--reference", str(REFERENCE), str(claim))
    assert run.returncode == 0, run.stderr
    assert "PREVIEW" in run.stdout
    assert "L_CLASS_C" in run.stdout
    assert "pooled fund" in run.stdout and "116.25 yuan" in run.stdout
    assert "5686.75 yuan" in run.stdout  # patient cash


def test_state_file_replaces_the_fresh_state(tmp_path: Path) -> None:
    """A state file with an exhausted balance moves the account share to cash."""
    step = EXAMPLES[0]
    claim = _write(tmp_path, "claim.json", step["request"])
    state = _write(tmp_path, "state.json", {"balance_fen": 100, "pharmacy_purchases_today": 1})
    run = medswitch(
        "adjudicate", "--reference", str(REFERENCE), "--state", str(state), "--json", str(claim)
    )
    assert run.returncode == 0, run.stderr
    split = json.loads(run.stdout)["split"]
    assert split["individual_account_fen"] == 100
    assert split["patient_cash_fen"] == 2900 - 100


def test_state_file_can_reach_the_daily_purchase_limit(tmp_path: Path) -> None:
    claim = _write(tmp_path, "claim.json", EXAMPLES[0]["request"])
    state = _write(tmp_path, "state.json", {"pharmacy_purchases_today": 3})
    run = medswitch(
        "adjudicate", "--reference", str(REFERENCE), "--state", str(state), "--json", str(claim)
    )
    answer = json.loads(run.stdout)
    assert answer["status"] == "SETTLEMENT_STATUS_REJECTED"
    assert answer["reasons"] == ["R_FREQUENT_PURCHASE"]


def test_state_is_placed_on_the_benefit_date_whatever_else_the_claim_says(
    tmp_path: Path,
) -> None:
    # a stray discharge date on a pharmacy claim: the benefit date is still the service date
    request = {**EXAMPLES[0]["request"], "discharge_date": "2026-03-09"}
    claim = _write(tmp_path, "claim.json", request)
    state = _write(tmp_path, "state.json", {"pharmacy_purchases_today": 3})
    run = medswitch(
        "adjudicate", "--reference", str(REFERENCE), "--state", str(state), "--json", str(claim)
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["reasons"] == ["R_FREQUENT_PURCHASE"]


def test_malformed_claim_exits_2_naming_each_field(tmp_path: Path) -> None:
    request = dict(EXAMPLES[0]["request"])
    request["lines"] = [dict(request["lines"][0], amount_fen=1)]
    claim = _write(tmp_path, "claim.json", request)
    run = medswitch("adjudicate", "--reference", str(REFERENCE), str(claim))
    assert run.returncode == 2
    assert "lines[0].amount_fen" in run.stderr
    assert run.stdout == ""


def test_bad_state_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    claim = _write(tmp_path, "claim.json", EXAMPLES[0]["request"])
    state = _write(tmp_path, "state.json", {"year": {"no_such_total": 5}})
    run = medswitch("adjudicate", "--reference", str(REFERENCE), "--state", str(state), str(claim))
    assert run.returncode == 2
    assert "year.no_such_total" in run.stderr


def test_bad_reference_directory_names_file_line_and_field(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    ref.mkdir()
    for f in REFERENCE.iterdir():
        (ref / f.name).write_bytes(f.read_bytes())
    text = (ref / "catalog.csv").read_text(encoding="utf-8").splitlines()
    text[3] = text[3].replace(",DRUG,", ",POTION,")
    (ref / "catalog.csv").write_text("\n".join(text) + "\n", encoding="utf-8")
    claim = _write(tmp_path, "claim.json", EXAMPLES[0]["request"])
    run = medswitch("adjudicate", "--reference", str(ref), str(claim))
    assert run.returncode == 2
    assert "catalog.csv:4: kind" in run.stderr


UNREADABLE_JSON = [
    ("deeply nested", b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
    ("a 5,000-digit number", b'{"lines": [{"quantity": ' + b"7" * 5000 + b"}]}", "5,000 digits"),
    ("not UTF-8", b'{"request_id": "\xff\xfe"}', "not UTF-8 (byte 17 is 0xFF)"),
    ("too large", b" " * (4 * 1024 * 1024 + 1) + b"{}", "larger than 4,194,304 bytes"),
]


@pytest.mark.parametrize(
    ("name", "data", "message"), UNREADABLE_JSON, ids=[u[0] for u in UNREADABLE_JSON]
)
@pytest.mark.parametrize("which", ["claim", "state"])
def test_unreadable_json_exits_2_saying_why(
    tmp_path: Path, which: str, name: str, data: bytes, message: str
) -> None:
    """These were tracebacks (RecursionError, ValueError, UnicodeDecodeError)."""
    claim = _write(tmp_path, "claim.json", EXAMPLES[0]["request"])
    bad = tmp_path / "bad.json"
    bad.write_bytes(data)
    args = [str(bad)] if which == "claim" else ["--state", str(bad), str(claim)]
    run = medswitch("adjudicate", "--reference", str(REFERENCE), *args)
    assert run.returncode == 2, run.stderr[-500:]
    assert f"{bad}: " in run.stderr and message in run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""


def test_a_refusal_repeats_only_the_start_of_what_it_could_not_read(tmp_path: Path) -> None:
    bad = _write(tmp_path, "claim.json", {"lines": [[[[["x" * 100_000]]]]]})
    run = medswitch("adjudicate", "--reference", str(REFERENCE), str(bad))
    assert run.returncode == 2 and "lines" in run.stderr
    assert len(run.stderr) < 500
