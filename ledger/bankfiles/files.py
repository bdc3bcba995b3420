"""Writing files other programs pick up (the bank's upload, a report viewer).

A file is written under a new temporary name beside it and renamed into
place, so a reader never sees half of one. The temporary name is
unpredictable and created exclusively, never through a symlink: someone who
can write to the output directory cannot make the switch write elsewhere by
planting a link where it will write.

CSV files are for people's spreadsheets, so text that came from outside (a
bank reference, an institution's name) is written so a spreadsheet cannot run
it as a formula.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NAME_ATTEMPTS_MAX = 16
# A cell starting with one of these is run as a formula by spreadsheet
# programs; text that came from a bank statement must not be able to do that.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _create_partial(path: Path) -> tuple[Path, int]:
    """A new, empty, exclusively created file beside `path`, and its descriptor."""
    for _ in range(_NAME_ATTEMPTS_MAX):
        partial = path.with_name(f".{path.name}.{secrets.token_hex(8)}.partial")
        try:
            # 0o666 less the umask: the same mode a plain write would give.
            return partial, os.open(partial, _CREATE_NEW, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


def write_atomically(path: Path, data: bytes) -> Path:
    """`data` at `path`, all or nothing, on disk when this returns."""
    partial, fd = _create_partial(path)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        # rename replaces a symlink at `path` itself; it never writes through it
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)  # the rename, too, survives a crash
    finally:
        os.close(directory)
    return path


def spreadsheet_safe(text: str) -> str:
    """`text`, with a leading apostrophe if a spreadsheet would read it as a formula."""
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def spreadsheet_csv(header: Sequence[str], rows: Iterable[Sequence[str | int]]) -> str:
    """CSV text with `header`; every text cell made spreadsheet-safe, numbers as they are."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([spreadsheet_safe(c) if isinstance(c, str) else c for c in row])
    return out.getvalue()
