"""A real Table API export (ServiceNow PDI demo incidents) replayed through sandbox, connector and mapping."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
import sqlalchemy as sa

from daemon import db
from daemon.models import itil_incident
from daemon.settings import load_config
from daemon.sync import resync
from sandbox.servicenow import ServiceNowInstance, serve
from tests.conftest import SANDBOX_PASSWORD, SANDBOX_USER, SHARED_DATA, write_config

EXPORT = SHARED_DATA / "servicenow_pdi_demo_incidents.csv.gz"

pytestmark = pytest.mark.skipif(not EXPORT.is_file(), reason=f"real data not present at {EXPORT}")


def test_every_real_code_maps_to_a_standard_value(tmp_path: Path) -> None:
    with gzip.open(EXPORT, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    instance = ServiceNowInstance(users={SANDBOX_USER: SANDBOX_PASSWORD})
    instance.insert_many("incident", rows)
    with serve(instance) as snow:
        files = write_config(tmp_path, url=snow.url, db_url="sqlite:///itbsc.db", page_size=10)
        config = load_config(files.path, env=files.env)
        engine = db.create_db_engine(config.database_url)
        db.upgrade(engine)
        summary = resync(engine, config)
    assert summary.ok
    assert summary.streams[0].written == len(rows) == 67
    with engine.connect() as conn:
        stored = [r._mapping for r in conn.execute(sa.select(itil_incident))]
    for field in ("state", "priority", "close_code", "contact_type"):
        unmapped = {
            r[f"{field}_original"] for r in stored if r[f"{field}_original"] and r[field] is None
        }
        assert not unmapped, f"the shipped mapping leaves real {field} codes unmapped: {unmapped}"
    by_number = {r["number"]: r for r in stored}
    assert (
        by_number["INC0000060"]["state"] == "closed"
    )  # incident_state 7 on an export without `state`
    assert by_number["INC0000060"]["made_sla"] is True
    assert sum(r["resolved_at"] is not None for r in stored) == sum(
        bool(r["resolved_at"]) for r in rows
    )
    engine.dispose()
