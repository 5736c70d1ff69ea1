"""Manual inputs: an append-only register; corrections supersede; metrics read the current figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from daemon import db
from daemon.cli import app
from daemon.compute import compute
from daemon.inputs import InputError, add, current_value, entries, import_csv
from daemon.settings import Config, load_config
from mapping.periods import parse_period
from tests.conftest import write_config

ENV = {"ITBSC_TEST_SNOW_PASSWORD": "unused"}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Config, sa.Engine]:
    files = write_config(
        tmp_path, url="http://127.0.0.1:9", db_url=f"sqlite:///{tmp_path / 'i.db'}"
    )
    config = load_config(files.path, env=files.env)
    engine = db.create_db_engine(config.database_url)
    db.upgrade(engine)
    return config, engine


def test_a_correction_supersedes_and_the_trail_keeps_both(setup: tuple[Config, sa.Engine]) -> None:
    config, engine = setup
    with engine.begin() as conn:
        first = add(conn, config, "budget", "2026-05", 100000, entered_by="ann", note="plan v1")
        second = add(conn, config, "budget", "2026-05", 110000, entered_by="bob", note="plan v2")
    with engine.connect() as conn:
        trail = entries(conn, "budget")
        assert [(e.id, e.value, e.superseded_by) for e in trail] == [
            (first, 100000.0, second),
            (second, 110000.0, None),
        ]
        assert trail[1].supersedes == first and trail[1].entered_by == "bob"
        assert (
            current_value(conn, config, "budget", parse_period("2026-05", config.zone)) == 110000.0
        )


def test_input_metrics_for_months_and_quarters_built_from_months(
    setup: tuple[Config, sa.Engine],
) -> None:
    config, engine = setup
    with engine.begin() as conn:
        for month, budget, spend, hours, agents in (
            ("2026-04", 100.0, 110.0, 30, 10),
            ("2026-05", 100.0, 90.0, 40, 10),
            ("2026-06", 100.0, 100.0, 50, 13),
        ):
            add(conn, config, "budget", month, budget, entered_by="t")
            add(conn, config, "actual_spend", month, spend, entered_by="t")
            add(conn, config, "training_hours", month, hours, entered_by="t")
            add(conn, config, "agents", month, agents, entered_by="t")
    q2, may, july = (parse_period(p, config.zone) for p in ("2026-Q2", "2026-05", "2026-07"))
    with engine.connect() as conn:
        values = {
            (v.metric, v.period.label): v
            for v in compute(conn, config, {"F8": [may, q2, july], "L8": [may, q2]})
        }
    assert values[("F8", "2026-05")].value == pytest.approx(-10.0)
    assert values[("F8", "2026-Q2")].value == pytest.approx(0.0)  # 300 spent of 300 budgeted
    assert values[("F8", "2026-07")].value is None and values[("F8", "2026-07")].n == 0
    assert values[("L8", "2026-05")].value == pytest.approx(4.0)
    # hours add up over the quarter (120), headcount averages (11): 120 / 11
    assert values[("L8", "2026-Q2")].value == pytest.approx(120 / 11)


def test_csv_import_is_all_or_nothing_and_names_the_bad_line(
    setup: tuple[Config, sa.Engine], tmp_path: Path
) -> None:
    config, engine = setup
    bad = tmp_path / "bad.csv"
    bad.write_text("name,period,value\nbudget,2026-05,100\nbudget,2026-13,100\n")
    with pytest.raises(InputError, match=r"bad.csv:3"):
        import_csv(engine, config, bad, entered_by="t")
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("name,period,value\nbananas,2026-05,1\n")
    with pytest.raises(InputError, match="unknown input 'bananas'"):
        import_csv(engine, config, unknown, entered_by="t")
    with engine.connect() as conn:
        assert entries(conn) == []  # nothing of the bad files was kept


def test_cli_add_list_and_a_manual_measure_marked_as_such(setup: tuple[Config, sa.Engine]) -> None:
    config, _ = setup
    runner = CliRunner()
    base = ["--config", str(config.path)]
    for name, value in (("budget", "100"), ("actual_spend", "104")):
        done = runner.invoke(
            app,
            [*base, "input", "add", name, "2026-05", value, "--note", "ledger", "--by", "cfo"],
            env=ENV,
        )
        assert done.exit_code == 0, done.output
    listed = json.loads(
        runner.invoke(app, [*base, "input", "list", "--format", "json"], env=ENV).stdout
    )
    assert {e["entered_by"] for e in listed["entries"]} == {"cfo"}
    card = json.loads(
        runner.invoke(
            app, [*base, "scorecard", "--period", "2026-05", "--format", "json"], env=ENV
        ).stdout
    )
    f8 = next(
        m
        for p in card["perspectives"]
        for o in p["objectives"]
        for m in o["measures"]
        if m["metric"] == "F8"
    )
    assert f8["manual"] is True and f8["value"] == pytest.approx(4.0)
    refused = runner.invoke(app, [*base, "input", "add", "budget", "May", "1"], env=ENV)
    assert refused.exit_code == 2
