"""The error table and the integrators' reason-code tables (docs/integrators.md) stay complete."""

from __future__ import annotations

import grpc

from adjudication.reasons import MEANING
from switch.errors import STATUS_BY_REASON, ErrorReason, SwitchError
from tests.cli import ROOT


def test_every_reason_has_one_status() -> None:
    assert set(STATUS_BY_REASON) == set(ErrorReason)
    assert grpc.StatusCode.OK not in STATUS_BY_REASON.values()
    err = SwitchError(ErrorReason.REQUEST_ID_REUSED, "x")
    assert err.status_code == grpc.StatusCode.ALREADY_EXISTS


def test_the_integrators_guide_documents_every_code() -> None:
    """Integrators read the codes in docs/integrators.md: every R_/L_/W_ and every
    ErrorInfo reason, with its status."""
    guide = (ROOT / "docs" / "integrators.md").read_text("utf-8")
    for code in MEANING:
        assert f"| `{code}` |" in guide, code
    for reason in ErrorReason:
        assert f"| `{reason.value}` | {STATUS_BY_REASON[reason].name} |" in guide, reason
