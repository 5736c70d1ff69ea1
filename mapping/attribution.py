"""Which change caused an incident: its explicit link first, then a service and time-window rule.

One change per incident, decided by one function for both directions (the
incident's ``attributed_change`` and the change's ``caused_incidents``), so a
change failure rate counted per change can never exceed 100 % and the two
sides always agree.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class ChangeEnd:
    """A change that was implemented: where and when it ended."""

    source: str
    source_id: str
    service: str | None
    ended: datetime | None


class ChangeIndex:
    """Implemented changes by id and, per (source, service), sorted by when they ended."""

    def __init__(self, changes: Iterable[ChangeEnd], window_hours: float) -> None:
        self.window = timedelta(hours=window_hours)
        self._by_id: dict[tuple[str, str], ChangeEnd] = {}
        by_service: dict[tuple[str, str], list[ChangeEnd]] = defaultdict(list)
        for change in changes:
            self._by_id[(change.source, change.source_id)] = change
            if change.service and change.ended is not None:
                by_service[(change.source, change.service)].append(change)
        self._ends: dict[tuple[str, str], tuple[list[datetime], list[ChangeEnd]]] = {}
        for key, found in by_service.items():
            found.sort(key=lambda c: (c.ended, c.source_id))
            self._ends[key] = ([c.ended for c in found if c.ended is not None], found)

    def __len__(self) -> int:
        return len(self._by_id)

    def attribute(self, incident: Mapping[str, Any]) -> tuple[str, datetime | None] | None:
        """(change id, when it ended) for an incident row, or None when no change is to blame.

        The row needs source, caused_by, service and opened_at. An explicit link counts
        even when the change itself is not synced (its end is then unknown)."""
        source, linked = incident["source"], incident.get("caused_by")
        if linked:
            change = self._by_id.get((source, linked))
            return linked, change.ended if change is not None else None
        service, opened = incident.get("service"), incident.get("opened_at")
        if not service or opened is None or not self.window:
            return None
        found = self._ends.get((source, service))
        if found is None:
            return None
        ends, changes = found
        i = bisect.bisect_right(ends, opened) - 1
        if i < 0 or opened - ends[i] > self.window:
            return None
        return changes[i].source_id, ends[i]
