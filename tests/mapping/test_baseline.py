"""Targets proposed from history: better quartile as target, the median month at the amber edge."""

from __future__ import annotations

import pytest

from mapping.baseline import propose


def test_higher_is_better_takes_the_upper_quartile() -> None:
    months = [(v, 50) for v in (80.0, 82.0, 84.0, 86.0, 88.0)]
    proposal = propose("C1", "higher", months, min_n=20)
    assert proposal.target == pytest.approx(86.0) and proposal.median == pytest.approx(84.0)
    assert proposal.amber == pytest.approx(2.0) and proposal.months_used == 5


def test_lower_is_better_takes_the_lower_quartile_and_thin_months_are_left_out() -> None:
    months = [(10.0, 50), (20.0, 50), (30.0, 50), (40.0, 50), (1.0, 3), (None, 0)]
    proposal = propose("I1", "lower", months, min_n=20)
    assert (proposal.months_used, proposal.months_skipped) == (4, 2)
    assert proposal.target == pytest.approx(17.5) and proposal.amber == pytest.approx(7.5)


def test_too_little_history_proposes_nothing() -> None:
    proposal = propose("C3", "higher", [(90.0, 50), (91.0, 50)], min_n=10)
    assert proposal.target is None and proposal.amber is None
