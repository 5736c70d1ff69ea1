"""Attribution of incidents to changes: explicit link first, then service and window; per change."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mapping.attribution import ChangeEnd, ChangeIndex

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def change(cid: str, service: str | None, hours: float | None) -> ChangeEnd:
    return ChangeEnd("snow", cid, service, None if hours is None else T0 + timedelta(hours=hours))


def incident(
    opened_hours: float, service: str | None = None, caused_by: str | None = None
) -> dict[str, Any]:
    return {
        "source": "snow",
        "opened_at": T0 + timedelta(hours=opened_hours),
        "service": service,
        "caused_by": caused_by,
    }


INDEX = ChangeIndex(
    [
        change("c1", "mail", 0),
        change("c2", "mail", 5),
        change("c3", "vpn", 6),
        change("c4", None, 1),
    ],
    window_hours=12,
)


def test_the_explicit_link_wins_over_the_window_rule() -> None:
    assert INDEX.attribute(incident(6, "mail", caused_by="c3")) == ("c3", T0 + timedelta(hours=6))


def test_the_rule_takes_the_change_on_the_same_service_that_ended_last_before_opening() -> None:
    assert INDEX.attribute(incident(7, "mail")) == ("c2", T0 + timedelta(hours=5))
    assert INDEX.attribute(incident(4, "mail")) == ("c1", T0)


def test_no_change_outside_the_window_or_on_another_service_or_without_a_service() -> None:
    assert INDEX.attribute(incident(18, "mail")) is None  # 13 h after c2
    assert INDEX.attribute(incident(7, "erp")) is None
    assert INDEX.attribute(incident(2)) is None
    assert INDEX.attribute(incident(-1, "mail")) is None  # before any change ended


def test_a_link_to_a_change_not_synced_still_counts_with_an_unknown_end() -> None:
    assert INDEX.attribute(incident(3, caused_by="c99")) == ("c99", None)


def test_a_zero_window_turns_the_rule_off() -> None:
    index = ChangeIndex([change("c1", "mail", 0)], window_hours=0)
    assert index.attribute(incident(1, "mail")) is None
    assert index.attribute(incident(1, "mail", caused_by="c1")) is not None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.floats(0, 200)), max_size=15),
    st.lists(
        st.tuples(st.floats(0, 250), st.sampled_from(["a", "b", None]), st.integers(-1, 14)),
        max_size=60,
    ),
    st.floats(0, 48),
)
def test_change_failure_rate_never_exceeds_100_percent(
    changes: list[tuple[str | None, float]],
    incidents: list[tuple[float, str | None, int]],
    window: float,
) -> None:
    index = ChangeIndex(
        [change(f"c{i}", s, h) for i, (s, h) in enumerate(changes)], window_hours=window
    )
    ids = {f"c{i}" for i in range(len(changes))}
    per_change: Counter[str] = Counter()
    for opened, service, link in incidents:
        linked = f"c{link}" if 0 <= link < len(changes) else None
        found = index.attribute(incident(opened, service, linked))
        if found is not None:
            per_change[found[0]] += 1
            if found[1] is not None and linked is None:
                assert found[1] <= T0 + timedelta(hours=opened)  # a cause precedes its effect
    failed = sum(1 for cid in ids if per_change[cid] > 0)
    assert failed <= len(ids)
    assert set(per_change) <= ids  # every attribution names a known change
    assert sum(per_change.values()) <= len(incidents)  # one change per incident at most
