"""Unit costs: the tier of the resolving group and the cost entry valid when a ticket was resolved."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from mapping.catalogue import Catalogue
from mapping.pricing import Pricing

AMS = ZoneInfo("Europe/Amsterdam")


def catalogue(**extra: Any) -> Catalogue:
    return Catalogue.model_validate(
        {
            "metric": [
                {
                    "id": "X",
                    "name": "x",
                    "kind": "count",
                    "direction": "lower",
                    "cohort": "resolved_at",
                }
            ],
            "tiers": {"default": "L1", "groups": {"network": "L2"}},
            "cost": [
                {"valid_from": "2026-01-01", "unit_cost": {"L1": 20, "L2": 80}},
                {"valid_from": "2026-07-01", "unit_cost": {"L1": 25, "L2": 90}, "default": 5},
            ],
            **extra,
        }
    )


def ticket(resolved: datetime | None, group: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"source": "snow", "assignment_group": group, "resolved_at": resolved} | fields


def test_a_new_cost_entry_reprices_nothing_resolved_before_its_date() -> None:
    pricing = Pricing(catalogue(), {}, AMS)
    june = ticket(datetime(2026, 6, 30, 21, 59, tzinfo=UTC))  # 23:59 in Amsterdam: still June
    july = ticket(datetime(2026, 6, 30, 22, 0, tzinfo=UTC))  # 00:00 on 1 July in Amsterdam
    assert pricing.unit_cost(june, "L1") == 20
    assert pricing.unit_cost(july, "L1") == 25
    assert (
        pricing.unit_cost(ticket(datetime(2025, 12, 31, tzinfo=UTC)), "L1") is None
    )  # no entry yet


def test_unresolved_tickets_are_priced_by_their_opening() -> None:
    pricing = Pricing(catalogue(), {}, AMS)
    assert pricing.unit_cost(ticket(None, opened_at=datetime(2026, 8, 1, tzinfo=UTC)), "L2") == 90


def test_configured_tiers_win_over_group_records_then_the_default() -> None:
    pricing = Pricing(catalogue(), {("snow", "network"): "L3", ("snow", "dba"): "L3"}, AMS)
    assert pricing.tier(ticket(None, "network")) == "L2"  # [tiers] groups
    assert pricing.tier(ticket(None, "dba")) == "L3"  # the source's group record
    assert pricing.tier(ticket(None, "desk")) == "L1"  # the default
    assert pricing.tier(ticket(None, None)) == "L1"


def test_an_unlisted_tier_takes_the_entrys_default_cost() -> None:
    pricing = Pricing(catalogue(), {}, AMS)
    assert pricing.unit_cost(ticket(datetime(2026, 8, 1, tzinfo=UTC)), "vendor") == 5
    assert pricing.unit_cost(ticket(datetime(2026, 2, 1, tzinfo=UTC)), "vendor") is None


def test_costs_by_priority() -> None:
    cost = [{"valid_from": "2026-01-01", "by": "priority", "unit_cost": {"P1": 300, "P4": 15}}]
    pricing = Pricing(catalogue(cost=cost), {}, AMS)
    p1 = ticket(datetime(2026, 3, 1, tzinfo=UTC), priority="P1")
    assert pricing.unit_cost(p1, "L1") == 300
