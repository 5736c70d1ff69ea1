"""Configuration loading: discovery, all problems at once, secrets never echoed (the corpus of
broken configurations is tests/chaos/test_broken_configs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from daemon.cli import app
from daemon.defaults import config_dir
from daemon.settings import ConfigError, find_config, load_config
from tests.conftest import SANDBOX_PASSWORD, write_config

GOOD_URL = "https://acme.service-now.com"


def make(tmp_path: Path, replace: tuple[str, str] | None = None, append: str = "") -> Path:
    files = write_config(tmp_path, url=GOOD_URL, db_url="sqlite:///itbsc.db", extra_source=append)
    if replace:
        text = files.path.read_text()
        assert replace[0] in text
        files.path.write_text(text.replace(*replace))
    return files.path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"ITBSC_TEST_SNOW_PASSWORD": SANDBOX_PASSWORD})
    return info.value.problems


def test_the_shipped_example_and_test_config_are_valid(tmp_path: Path) -> None:
    config = load_config(make(tmp_path), env={"ITBSC_TEST_SNOW_PASSWORD": SANDBOX_PASSWORD})
    assert config.database_url.database == str(tmp_path / "itbsc.db")  # relative to the config file
    example = config_dir() / "itbsc.example.toml"
    loaded = load_config(example, env={"ITBSC_SNOW_PASSWORD": "x"})
    assert list(loaded.settings.sources) == ["acme-snow"]
    production = load_config(
        config_dir() / "itbsc.production.toml",
        env={
            "ITBSC_DB_PASSWORD": "x",
            "ITBSC_SNOW_PASSWORD": "x",
            "ITBSC_SNOW_CLIENT_SECRET": "x",
            "ITBSC_JIRA_TOKEN": "x",
        },
    )
    assert production.database_url.get_backend_name() == "postgresql"
    assert production.settings.database.compute_connections == 4
    assert production.settings.sources["jsm"].every == "10m"
    assert production.settings.daemon.http == "127.0.0.1:9464"


@pytest.mark.parametrize(
    ("every", "message"),
    [("15 minutes", "is not an interval"), ("0s", "at least one second")],
)
def test_a_bad_interval_is_named(tmp_path: Path, every: str, message: str) -> None:
    path = make(tmp_path)
    text = path.read_text().replace(
        'mapping = "mappings/servicenow.toml"',
        f'mapping = "mappings/servicenow.toml"\nevery = "{every}"',
    )
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"ITBSC_TEST_SNOW_PASSWORD": SANDBOX_PASSWORD})
    assert any("sources.snow.every" in line and message in line for line in info.value.problems)


@pytest.mark.parametrize("count", [0, 9])
def test_computation_connections_out_of_range_are_named(tmp_path: Path, count: int) -> None:
    path = make(tmp_path, ("[database]\n", f"[database]\ncompute_connections = {count}\n"))
    assert any("database.compute_connections" in line for line in problems(path))


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    path = make(tmp_path, ("page_size = 100", 'page_size = 0\ncolour = "blue"'))
    lines = problems(path)
    assert len(lines) == 2


def test_plaintext_password_is_refused_without_echoing_it(tmp_path: Path) -> None:
    lines = problems(make(tmp_path, append='password = "hunter2-Marker"'))
    assert any(
        "sources.snow.password: secrets are not read from the TOML" in line for line in lines
    )
    assert not any("hunter2-Marker" in line for line in lines)


def test_a_misspelt_jira_field_role_is_named_with_the_roles_there_are(tmp_path: Path) -> None:
    lines = problems(make(tmp_path, append='field_names = { "itbsc:chnage_type" = "Type" }'))
    assert any(
        "sources.snow.field_names" in line
        and "unknown field role 'itbsc:chnage_type'" in line
        and "itbsc:change_type" in line
        for line in lines
    ), lines


def test_scorecard_with_unknown_metric_names_the_scorecard_file(tmp_path: Path) -> None:
    path = make(tmp_path)
    scorecard = tmp_path / "scorecard.toml"
    scorecard.write_text(scorecard.read_text().replace('metric = "I1"', 'metric = "I99"'))
    lines = problems(path)
    assert any(
        line.startswith(f"{scorecard}: ") and "unknown metric 'I99'" in line for line in lines
    ), lines


def test_sla_records_without_an_sla_map_is_refused(tmp_path: Path) -> None:
    path = make(tmp_path)
    mapping = tmp_path / "mappings" / "servicenow.toml"
    text = mapping.read_text().replace('sla_attainment = "auto"', 'sla_attainment = "sla_records"')
    mapping.write_text(text.split("# -- task_sla")[0])
    assert any("'sla_records' needs an [sla] map" in line for line in problems(path))


def test_mapping_to_a_non_standard_value_is_refused(tmp_path: Path) -> None:
    path = make(tmp_path)
    mapping = tmp_path / "mappings" / "servicenow.toml"
    mapping.write_text(mapping.read_text().replace('"6" = "resolved"', '"6" = "fixed"'))
    assert any("'fixed' is not a standard value" in line for line in problems(path))


def test_a_misspelt_history_fact_is_named_with_the_facts_there_are(tmp_path: Path) -> None:
    path = make(tmp_path)
    mapping = tmp_path / "mappings" / "servicenow.toml"
    text = mapping.read_text()
    assert 'work_end = "work_end"' in text
    mapping.write_text(text.replace('work_end = "work_end"', 'work_end = "@history.resolvd_at"'))
    assert any(
        "change.fields.work_end" in line
        and "'@history.resolvd_at': no such history fact" in line
        and "resolved_at" in line
        for line in problems(path)
    )


def test_the_response_sla_fact_is_read_only_as_a_first_response_with_cycles(
    tmp_path: Path,
) -> None:
    path = make(tmp_path)
    mapping = tmp_path / "mappings" / "servicenow.toml"
    shipped = mapping.read_text()
    mapping.write_text(
        shipped.replace('closed_at = "closed_at"', 'closed_at = "@sla.response_end"', 1)
    )
    assert any(
        "incident.fields.closed_at" in line and "only as incident first_response_at" in line
        for line in problems(path)
    )
    mapping.write_text(shipped.split("# -- task_sla")[0])  # no [sla] map to read it from
    assert any("'@sla.response_end' needs an [sla] map" in line for line in problems(path))


def test_check_config_succeeds_on_a_good_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["--config", str(make(tmp_path)), "check-config"],
        env={"ITBSC_TEST_SNOW_PASSWORD": SANDBOX_PASSWORD},
    )
    assert result.exit_code == 0, result.output
    assert "configuration OK" in result.output
    assert not (tmp_path / "itbsc.db").exists()


def test_config_discovery_order(tmp_path: Path) -> None:
    assert find_config(tmp_path / "a.toml", env={"ITBSC_CONFIG": "b.toml"}) == tmp_path / "a.toml"
    assert find_config(None, env={"ITBSC_CONFIG": "b.toml"}) == Path("b.toml")
    assert find_config(None, env={}) == Path("itbsc.toml")


def test_turning_tls_verification_off_is_explicit_and_warned_about_on_every_run(
    tmp_path: Path,
) -> None:
    path = make(tmp_path)
    assert (
        load_config(path, env={"ITBSC_TEST_SNOW_PASSWORD": SANDBOX_PASSWORD})
        .connection("snow")
        .verify_tls
    )  # on by default
    path.write_text(
        path.read_text().replace("page_size = 100", "page_size = 100\nverify_tls = false")
    )
    config = load_config(path, env={"ITBSC_TEST_SNOW_PASSWORD": SANDBOX_PASSWORD})
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        params = config.connection("snow")
    assert params.verify_tls is False
    assert any(
        entry["log_level"] == "warning"
        and "verification is OFF" in entry["event"]
        and entry["source"] == "snow"
        for entry in logs
    )
