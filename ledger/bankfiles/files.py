"""Writing files other programs pick up (the bank's upload, a report viewer).

A file is written under a hidden temporary name and renamed into place, so a
reader never sees half of one.
"""

from __future__ import annotations

from pathlib import Path


def write_atomically(path: Path, data: bytes) -> Path:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.replace(path)
    return path
