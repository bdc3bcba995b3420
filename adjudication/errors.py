"""Errors raised while loading policies and catalogs.

A bad file is refused with the file, line and field named, so policy staff can
fix it without reading code.
"""

from __future__ import annotations


class DataFileError(ValueError):
    """A policy or catalog file is unusable."""

    def __init__(self, path: str, line: int | None, field: str, message: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")
