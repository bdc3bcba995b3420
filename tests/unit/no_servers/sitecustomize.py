"""Unit tests start no server, in the processes they start either.

tests/unit/conftest.py puts this directory first on PYTHONPATH, so Python
imports this module at start-up in every process a unit test runs (the
`medswitch` command included). It refuses to import pgserver there: a unit
test that needs the embedded PostgreSQL belongs in tests/integration.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

REFUSAL = (
    "a unit test started a process that imports pgserver (the embedded PostgreSQL):"
    " move the test to tests/integration"
)


class NoPgserver(MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "pgserver" or fullname.startswith("pgserver."):
            raise ImportError(REFUSAL)
        return None


if __name__ == "sitecustomize":  # at start-up, not when tests/unit/conftest.py reads the class
    sys.meta_path.insert(0, NoPgserver())
