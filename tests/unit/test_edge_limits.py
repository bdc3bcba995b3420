"""The edge's bounds: consistent, and scaled with the total calls in flight."""

from __future__ import annotations

import pytest

from switch import limits
from switch.edge import EdgeLimits, Occupancy


def test_the_defaults_are_the_limits_of_switch_limits() -> None:
    assert EdgeLimits.for_inflight_max(limits.inflight_requests_max) == EdgeLimits()


@pytest.mark.parametrize(("inflight_max", "share", "reserved"), [(16, 4, 2), (4, 1, 0), (1, 1, 0)])
def test_another_total_keeps_the_share_and_the_reserve_in_proportion(
    inflight_max: int, share: int, reserved: int
) -> None:
    bounds = EdgeLimits.for_inflight_max(inflight_max)
    assert (bounds.inflight_per_institution_max, bounds.inflight_reserved_for_settlement) == (
        share,
        reserved,
    )


def test_a_reserve_that_leaves_nothing_for_other_calls_is_refused() -> None:
    with pytest.raises(ValueError, match="leave none"):
        EdgeLimits(inflight_max=4, inflight_reserved_for_settlement=4)


def test_an_institution_leaves_the_count_at_zero() -> None:
    """Institutions come and go: the per-institution counts do not grow without bound."""
    occupancy = Occupancy("requests", ("total", 3), ("each", 2))
    for _ in range(2):
        occupancy.enter("P1")
    assert occupancy.refusal("P1") is not None
    assert occupancy.refusal("P2") is None
    assert occupancy.refusal("P2", reserved=1) is not None  # 2 of 3, 1 kept for others
    for _ in range(2):
        occupancy.leave("P1")
    assert (occupancy.total, occupancy.by_institution) == (0, {})
