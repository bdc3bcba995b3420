"""The project's own copy of the reference region must not drift from the shared one."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ROOT / "shared" / "reference"
SHARED = ROOT.parent / "shared" / "reference"


def _files(base: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()
    }


def test_reference_copy_is_byte_identical_to_the_shared_one() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"no shared reference next to the repository ({SHARED} does not exist)")
    ours, shared = _files(OURS), _files(SHARED)
    assert sorted(ours) == sorted(shared)
    differing = [name for name in shared if ours[name] != shared[name]]
    assert differing == []
