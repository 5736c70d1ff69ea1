"""`itbsc check-mapping`: every source value no map covers is listed with its count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from daemon import db
from daemon.settings import load_config
from daemon.sync import resync
from sandbox.servicenow import RunningSandbox
from tests.conftest import SANDBOX_PASSWORD, write_config


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ITBSC_TEST_SNOW_PASSWORD": SANDBOX_PASSWORD, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_unknown_codes_and_untiered_groups_are_listed_until_the_map_covers_them(
    snow: RunningSandbox, tmp_path: Path
) -> None:
    incidents = snow.instance.records("incident")
    for record in incidents[:3]:  # a custom state this instance added
        snow.instance.update("incident", record["sys_id"], state="9", incident_state="9")
    snow.instance.update("incident", incidents[3]["sys_id"], assignment_group="f" * 32)
    snow.instance.update("incident", incidents[4]["sys_id"], close_code="Withdrawn by caller")
    files = write_config(
        tmp_path,
        url=snow.url,
        db_url=f"sqlite:///{tmp_path / 'c.db'}",
        streams=("sys_user_group", "incident"),
    )
    config = load_config(files.path, env=files.env)
    engine = db.create_db_engine(config.database_url)
    db.upgrade(engine)
    assert resync(engine, config).ok
    engine.dispose()

    checked = run(files.path, "check-mapping", "--format", "json")
    assert checked.returncode == 1, checked.stderr
    unmapped = json.loads(checked.stdout)["unmapped"]
    state = [u for u in unmapped if u["field"] == "state"]
    assert state == [
        {"source": "snow", "kind": "incident", "field": "state", "value": "9", "records": 3}
    ]
    assert any(u["value"] == "f" * 32 and u["records"] == 1 for u in unmapped)
    withdrawn_listed = {"field": "close_code", "value": "Withdrawn by caller", "records": 1}
    assert any(withdrawn_listed.items() <= u.items() for u in unmapped)

    mapping = tmp_path / "mappings" / "servicenow.toml"
    mapping.write_text(
        mapping.read_text()
        .replace('"8" = "cancelled"', '"8" = "cancelled"\n"9" = "in_progress"', 1)
        # known, and no standard close code: no longer listed, still kept as the original
        .replace(
            '"User error" = "user_error"', '"User error" = "user_error"\n"Withdrawn by caller" = ""'
        )
    )
    assert run(files.path, "recompute").returncode == 0
    after = json.loads(run(files.path, "check-mapping", "--format", "json").stdout)["unmapped"]
    assert not [u for u in after if u["field"] in ("state", "close_code")]
    with sa.create_engine(config.database_url).connect() as conn:
        count = conn.execute(
            sa.text(
                "select count(*) from itil_incident where state_original = '9' and state = 'in_progress'"
            )
        ).scalar_one()
        withdrawn = conn.execute(
            sa.text(
                "select close_code from itil_incident where close_code_original = 'Withdrawn by caller'"
            )
        ).all()
    assert count == 3
    assert withdrawn == [(None,)]
