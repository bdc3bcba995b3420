"""Report, payout and anchor files: written whole, never through a link someone planted."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ledger.bankfiles.files import spreadsheet_csv, write_atomically
from ledger.chain import read_anchors, write_anchors


def test_a_symlink_at_the_old_predictable_temporary_name_is_not_written_through(
    tmp_path: Path,
) -> None:
    """`.NAME.partial` was opened following symlinks: whoever could write the
    output directory could make the export overwrite any file it may write."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".payouts-20261122.csv.partial").symlink_to(victim)
    written = write_atomically(out / "payouts-20261122.csv", b"the payouts")
    assert written.read_bytes() == b"the payouts"
    assert victim.read_bytes() == b"keep me"


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    target = tmp_path / "recon-20261122.html"
    target.symlink_to(victim)
    write_atomically(target, b"<html>")
    assert not target.is_symlink() and target.read_bytes() == b"<html>"
    assert victim.read_bytes() == b"keep me"


def test_the_temporary_name_is_new_each_time_and_nothing_is_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real_open = os.open

    def spy(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if os.fspath(path).endswith(".partial"):
            opened.append(os.fspath(path))
            assert flags & os.O_CREAT and flags & os.O_EXCL and flags & os.O_NOFOLLOW
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", spy)
    write_atomically(tmp_path / "a.csv", b"1")
    write_atomically(tmp_path / "a.csv", b"2")
    assert len(opened) == 2 and opened[0] != opened[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]
    assert (tmp_path / "a.csv").read_bytes() == b"2"


def test_a_file_taking_a_temporary_name_first_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exclusive creation: a name already taken is skipped for another."""
    names = iter(["taken", "taken", "free"])
    monkeypatch.setattr("secrets.token_hex", lambda _n: next(names))
    squatter = tmp_path / ".a.csv.taken.partial"
    squatter.write_bytes(b"someone else's")
    write_atomically(tmp_path / "a.csv", b"mine")
    assert squatter.read_bytes() == b"someone else's"
    assert (tmp_path / "a.csv").read_bytes() == b"mine"


def test_the_file_mode_is_what_the_umask_gives_a_new_file(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        path = write_atomically(tmp_path / "a.csv", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_spreadsheet_csv_makes_text_cells_safe_and_leaves_numbers() -> None:
    text = spreadsheet_csv(("a", "b", "c"), [("=1+1", -5, "+x"), ("ok", 0, "")])
    assert text.splitlines() == ["a,b,c", "'=1+1,-5,'+x", "ok,0,"]


def test_the_ledger_anchors_file_is_written_the_same_way(tmp_path: Path) -> None:
    """`ledger verify --anchor FILE` wrote FILE.partial following symlinks too."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    anchor = tmp_path / "anchors.json"
    (tmp_path / "anchors.json.partial").symlink_to(victim)
    write_anchors(anchor, {3: (17, b"\x01" * 32)})
    assert victim.read_bytes() == b"keep me"
    assert read_anchors(anchor) == {3: (17, b"\x01" * 32)}
