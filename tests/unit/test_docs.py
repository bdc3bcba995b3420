"""The documents refer only to documents in the repository.

A reader of the repository has README.md, docs/ and what they link; a
document named but not there (the specs the project was built from, say)
is a dead end. Every `NAME.md` mentioned, and every relative link, must
resolve: from the document's own folder, or from the repository's root.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MENTIONED = re.compile(r"(?<![\w/.-])([\w./-]*[\w-]\.md)\b")
LINKED = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _resolves(document: Path, name: str) -> bool:
    return (document.parent / name).exists() or (ROOT / name).exists()


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_document_named_is_in_the_repository(document: Path) -> None:
    text = document.read_text("utf-8")
    named = set(MENTIONED.findall(text))
    linked = {link for link in LINKED.findall(text) if "://" not in link}
    missing = sorted(name for name in named | linked if not _resolves(document, name))
    assert not missing, f"{document.relative_to(ROOT)} names what the repository lacks: {missing}"
    assert "shared/spec" not in text


def test_the_checker_sees_a_missing_document(tmp_path: Path) -> None:
    assert MENTIONED.findall("the rules (shared/spec/adjudication.md)") == [
        "shared/spec/adjudication.md"
    ]
    assert not _resolves(ROOT / "README.md", "shared/spec/adjudication.md")
    assert _resolves(ROOT / "docs" / "rules.md", "integrators.md")
