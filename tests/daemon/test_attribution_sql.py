"""The grouped path's attribution (SQL) names the change the per-record rule names, for
every incident: ties, boundaries, gaps between changes, cancelled and deleted ones."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from daemon import db
from daemon.attribution_sql import attributions
from daemon.derive import change_index
from daemon.models import CANONICAL_TABLES
from daemon.settings import load_config
from tests.conftest import write_config

T0 = datetime(2026, 3, 27, tzinfo=UTC)  # the grid crosses a DST change in the reporting zone
GRID = timedelta(minutes=30)  # coarse, so ends tie and incidents open exactly at them
SERVICES = ["mail", "vpn", "erp", None]


def _moment(rng: random.Random) -> datetime:
    moment = T0 + GRID * rng.randrange(0, 200)
    if rng.random() < 0.1:  # off the grid, by some microseconds
        moment += timedelta(microseconds=rng.randrange(1, 10**6))
    return moment


def random_rows(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(seed)
    base = {"source": "snow", "updated_at": T0, "mapping_version": "test"}
    changes = []
    for i in range(150):
        ended = _moment(rng)
        work_end, closed_at = (ended, None) if rng.random() < 0.7 else (None, ended)
        if rng.random() < 0.05:
            work_end = closed_at = None  # never ended
        changes.append(
            {
                **base,
                "source_id": f"chg{rng.randrange(10**6):06d}-{i}",
                "service": rng.choice(SERVICES),
                "state": "cancelled" if rng.random() < 0.1 else "closed",
                "work_end": work_end,
                "closed_at": closed_at,
                "deleted_at": T0 if rng.random() < 0.05 else None,
            }
        )
    ids = [c["source_id"] for c in changes]
    incidents = []
    for i in range(1500):
        linked = None
        if rng.random() < 0.1:  # explicit: a synced change, or one never synced
            linked = rng.choice(ids) if rng.random() < 0.8 else "chg-never-synced"
        incidents.append(
            {
                **base,
                "source_id": f"inc{i:05d}",
                "service": rng.choice(SERVICES),
                "opened_at": _moment(rng) if rng.random() < 0.97 else None,
                "caused_by": linked,
                "deleted_at": T0 if rng.random() < 0.03 else None,
            }
        )
    # ends at the same moment on one service: the greatest id is the one to blame
    for suffix in ("a", "b", "c"):
        changes.append({**changes[0], "source_id": f"tie-{suffix}", "service": "mail"})
    changes[0] |= {"deleted_at": None, "state": "closed"}
    return changes, incidents


@pytest.mark.parametrize("window_hours", [12.0, 1.5])
def test_sql_attribution_equals_the_rule_for_every_incident(
    db_url: str, tmp_path: Path, window_hours: float
) -> None:
    files = write_config(tmp_path, url="https://unused.invalid", db_url=db_url)
    catalogue = tmp_path / "metrics.toml"
    text = catalogue.read_text(encoding="utf-8")
    assert "window_hours = 12\n" in text
    catalogue.write_text(text.replace("window_hours = 12\n", f"window_hours = {window_hours}\n"))
    config = load_config(files.path, env=files.env)
    assert config.catalogue.attribution.window_hours == window_hours
    engine = db.create_db_engine(make_url(db_url))
    db.upgrade(engine)
    changes, incidents = random_rows(seed=int(window_hours * 10))
    with engine.begin() as conn:
        conn.execute(sa.insert(CANONICAL_TABLES["change"]), changes)
        conn.execute(sa.insert(CANONICAL_TABLES["incident"]), incidents)
    with engine.connect() as conn:
        found = {
            (r.source, r.incident): (r.change, r.change_end)
            for r in conn.execute(attributions(config, conn.dialect.name))
        }
        index = change_index(conn, config)
    expected = {}
    for row in incidents:
        if row["deleted_at"] is None and (named := index.attribute(row)) is not None:
            expected[(row["source"], row["source_id"])] = named
    assert len(expected) > 300  # the rule and the links both had work to do
    assert {k: v[0] for k, v in found.items()} == {k: v[0] for k, v in expected.items()}
    for key, (_, end) in expected.items():
        stored = found[key][1]
        if end is None:
            assert stored is None, key
        else:  # SQLite hands back text for a computed column: compare the moment
            got = stored if isinstance(stored, datetime) else datetime.fromisoformat(stored)
            assert got.replace(tzinfo=UTC) == end.astimezone(UTC).replace(tzinfo=UTC), key
    engine.dispose()
