"""Unit costs of tickets: the support tier of the resolving group and the cost table valid then."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from mapping.catalogue import Catalogue


class Pricing:
    """Tier and unit cost of an incident row (needs source, assignment_group, priority,
    resolved_at, opened_at). ``group_tiers`` maps (source, group id or name) to the tier the
    source's group records give; the catalogue's ``[tiers] groups`` wins over them."""

    def __init__(
        self,
        catalogue: Catalogue,
        group_tiers: Mapping[tuple[str, str], str],
        zone: ZoneInfo,
    ) -> None:
        self._configured = catalogue.tiers.groups
        self._default = catalogue.tiers.default
        self._records = group_tiers
        self._catalogue = catalogue
        self._zone = zone

    def tier(self, row: Mapping[str, Any]) -> str | None:
        group = row.get("assignment_group")
        if group is not None:
            tier = self._configured.get(group) or self._records.get((row["source"], group))
            if tier is not None:
                return tier
        return self._default

    def unit_cost(self, row: Mapping[str, Any], tier: str | None) -> float | None:
        """The cost of the ticket by the entry valid when it was resolved (else opened)."""
        moment: datetime | None = row.get("resolved_at") or row.get("opened_at")
        if moment is None:
            return None
        entry = self._catalogue.cost_at(moment.astimezone(self._zone).date())
        if entry is None:
            return None
        key = tier if entry.by == "tier" else row.get("priority")
        cost = entry.unit_cost.get(key) if key is not None else None
        return cost if cost is not None else entry.default
