"""`ledger verify --anchor FILE` reads a file anyone with the disk could have written."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.chain import read_anchors


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"format": 1, "lanes": {"1": [1]}}', "\x00", "{}"],
    ids=["deeply_nested", "short_lane", "nul", "empty_object"],
)
def test_a_malformed_anchors_file_is_a_value_error_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "anchors.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="not a ledger anchors file"):
        read_anchors(path)
