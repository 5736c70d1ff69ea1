"""A corpus of broken configurations: each is one clear message naming file and key, exit 2,
and nothing written — no database created, an existing one left byte for byte as it was."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from daemon.cli import app
from daemon.defaults import config_dir
from tests.conftest import SANDBOX_PASSWORD, write_config

GOOD_URL = "https://acme.service-now.com"
ENV = {"ITBSC_TEST_SNOW_PASSWORD": SANDBOX_PASSWORD}
MAIN, METRICS, SCORECARD, MAPPING = (
    "itbsc.toml",
    "metrics.toml",
    "scorecard.toml",
    "mappings/servicenow.toml",
)
JIRA_SOURCE = """
[sources.jsm]
kind = "jira"
url = "https://acme.atlassian.net"
username = "ops@acme.example"
password_env = "ITBSC_TEST_SNOW_PASSWORD"
streams = ["issues"]
mapping = "mappings/jira.toml"
projects = ["ITSM"]
"""


@dataclass(frozen=True)
class Broken:
    """Replace ``old`` by ``new`` in ``file``; the message must name ``names_file`` and ``key``."""

    id: str
    file: str
    old: str
    new: str
    key: str
    words: str
    names_file: str | None = None  # default: the edited file
    messages: int = 1  # a case with two genuine defects (say, two missing settings) says both


CORPUS = [
    # -- syntax and types
    Broken("toml-syntax", MAIN, "[database]", "[database", "(file)", "TOML syntax error"),
    Broken(
        "toml-duplicate-key",
        MAIN,
        "page_size = 100",
        "page_size = 100\npage_size = 5",
        "(file)",
        "TOML syntax error",
    ),
    Broken(
        "wrong-type",
        MAIN,
        "page_size = 100",
        'page_size = "big"',
        "sources.snow.page_size",
        "integer",
    ),
    Broken(
        "out-of-range",
        MAIN,
        "page_size = 100",
        "page_size = 0",
        "sources.snow.page_size",
        "greater than or equal to 1",
    ),
    Broken(
        "negative-timeout",
        MAIN,
        "timeout_seconds = 10",
        "timeout_seconds = -3",
        "sources.snow.timeout_seconds",
        "greater than 0",
    ),
    Broken(
        "streams-not-a-list",
        MAIN,
        'streams = ["incident"]',
        'streams = "incident"',
        "sources.snow.streams",
        "list",
    ),
    Broken(
        "stale-hours-negative",
        MAIN,
        "[reporting]",
        "[reporting]\nstale_after_hours = -1",
        "reporting.stale_after_hours",
        "greater than 0",
    ),
    # -- unknown keys and names
    Broken(
        "unknown-key",
        MAIN,
        "page_size = 100",
        "page_size = 100\npagesize = 5",
        "sources.snow.pagesize",
        "unknown key",
    ),
    Broken("unknown-section", MAIN, "[reporting]", "[reportng]", "reportng", "unknown key"),
    Broken(
        "unknown-source-kind",
        MAIN,
        'kind = "servicenow"',
        'kind = "remedy"',
        "sources.snow.kind",
        "unknown source kind 'remedy'",
    ),
    Broken(
        "stream-not-offered",
        MAIN,
        'streams = ["incident"]',
        'streams = ["incident", "cmdb_ci"]',
        "sources.snow.streams",
        "not offered",
    ),
    Broken(
        "unknown-auth",
        MAIN,
        "max_retries = 1",
        'max_retries = 1\nauth = "kerberos"',
        "sources.snow.auth",
        "'basic'",
    ),
    Broken(
        "unknown-metric",
        SCORECARD,
        'metric = "I1"',
        'metric = "I99"',
        "perspective[2].objective[0].measure[0].metric",
        "unknown metric 'I99'",
    ),
    Broken(
        "unknown-metric-kind",
        METRICS,
        'kind = "ratio"',
        'kind = "ratios"',
        "metric[0].kind",
        "'ratio'",
    ),
    Broken(
        "unknown-metric-key",
        METRICS,
        'unit = "%"',
        'unit = "%"\ntarget = 95',
        "metric[0].target",
        "unknown key",
    ),
    Broken(
        "unknown-canonical-value",
        MAPPING,
        '"6" = "resolved"',
        '"6" = "fixed"',
        "incident.values.state.'6'",
        "'fixed' is not a standard value",
    ),
    Broken(
        "unknown-mapping-key",
        MAPPING,
        "[incident.fields]",
        "[incident.fieldz]",
        "incident.fieldz",
        "unknown key",
        messages=2,
    ),
    # -- missing and circular files
    Broken(
        "missing-mapping",
        MAIN,
        'mapping = "mappings/servicenow.toml"',
        'mapping = "mappings/missing.toml"',
        "(file)",
        "file not found",
        "mappings/missing.toml",
    ),
    Broken(
        "missing-scorecard",
        MAIN,
        "[reporting]",
        '[scorecard]\nfile = "nope.toml"\n[reporting]',
        "(file)",
        "file not found",
        "nope.toml",
    ),
    Broken(
        "config-as-its-own-mapping",
        MAIN,
        'mapping = "mappings/servicenow.toml"',
        'mapping = "itbsc.toml"',
        "sources.snow.mapping",
        "names this configuration file itself",
    ),
    Broken(
        "catalogue-is-the-scorecard",
        MAIN,
        "[reporting]",
        '[scorecard]\ncatalogue = "scorecard.toml"\n[reporting]',
        "scorecard.catalogue",
        "must be two files",
    ),
    # -- secrets
    Broken(
        "plaintext-password",
        MAIN,
        "max_retries = 1",
        'max_retries = 1\npassword = "hunter2-Marker"',
        "sources.snow.password",
        "secrets are not read from the TOML",
    ),
    Broken(
        "plaintext-db-password",
        MAIN,
        'url = "sqlite:///itbsc.db"',
        'url = "postgresql+psycopg://itbsc:hunter2-Marker@db.example/itbsc"',
        "database.url",
        "holds a password",
    ),
    Broken(
        "unset-password-env",
        MAIN,
        'password_env = "ITBSC_TEST_SNOW_PASSWORD"',
        'password_env = "NOPE_NOT_SET"',
        "sources.snow.password_env",
        "NOPE_NOT_SET is not set",
    ),
    Broken(
        "missing-password-file",
        MAIN,
        'password_env = "ITBSC_TEST_SNOW_PASSWORD"',
        'password_file = "secrets/snow"',
        "sources.snow.password_file",
        "cannot read",
    ),
    Broken(
        "oauth-without-client",
        MAIN,
        "max_retries = 1",
        'max_retries = 1\nauth = "oauth"',
        "sources.snow.client_id",
        "OAuth",
        messages=2,
    ),
    Broken(
        "oauth-without-secret",
        MAIN,
        "max_retries = 1",
        'max_retries = 1\nauth = "oauth"\nclient_id = "c"',
        "sources.snow.client_secret_env",
        "client_secret_env or client_secret_file",
    ),
    # -- where to connect
    Broken(
        "http-to-remote-host",
        MAIN,
        f'url = "{GOOD_URL}"',
        'url = "http://acme.service-now.com"',
        "sources.snow.url",
        "only allowed for loopback",
    ),
    Broken(
        "not-a-url",
        MAIN,
        f'url = "{GOOD_URL}"',
        'url = "acme"',
        "sources.snow.url",
        "not a full http(s) base URL",
    ),
    Broken(
        "credentials-in-url",
        MAIN,
        f'url = "{GOOD_URL}"',
        'url = "https://admin:pw@acme.service-now.com"',
        "sources.snow.url",
        "do not belong in the URL",
    ),
    Broken(
        "unsupported-database",
        MAIN,
        'url = "sqlite:///itbsc.db"',
        'url = "oracle://x/y"',
        "database.url",
        "unsupported database",
    ),
    Broken(
        "http-endpoint",
        MAIN,
        "[reporting]",
        '[daemon]\nhttp = "everywhere"\n[reporting]',
        "daemon.http",
        "host:port",
    ),
    # -- time
    Broken(
        "bad-cron",
        MAIN,
        "max_retries = 1",
        'max_retries = 1\nschedule = "61 * * * *"',
        "sources.snow.schedule",
        "cron",
    ),
    Broken(
        "bad-interval",
        MAIN,
        "max_retries = 1",
        'max_retries = 1\nevery = "15 minutes"',
        "sources.snow.every",
        "is not an interval",
    ),
    Broken(
        "bad-census-cron",
        MAIN,
        "[reporting]",
        '[sources.snow.census]\nschedule = "every day"\n[reporting]',
        "sources.snow.census.schedule",
        "cron",
    ),
    Broken(
        "bad-report-schedule",
        MAIN,
        "[reporting]",
        '[reports]\ndirectory = "reports"\nschedule = "daily"\n[reporting]',
        "reports.schedule",
        "neither a cron expression",
    ),
    Broken(
        "bad-time-zone",
        MAIN,
        'timezone = "Europe/Amsterdam"',
        'timezone = "Mars/Olympus"',
        "reporting.timezone",
        "unknown time zone",
    ),
    Broken(
        "bad-calendar-zone",
        METRICS,
        'zone = "Europe/Amsterdam"',
        'zone = "Europe/Atlantis"',
        "calendar[0].zone",
        "unknown time zone",
    ),
    Broken(
        "bad-calendar-hours",
        METRICS,
        'mon = "08:00-18:00"',
        'mon = "18:00-08:00"',
        "calendar[0].hours",
        "18:00-08:00",
    ),
    # -- numbers that make no sense
    Broken(
        "negative-weight",
        SCORECARD,
        "weight = 2",
        "weight = -2",
        "perspective[0].objective[0].measure[0].weight",
        "greater than 0",
    ),
    Broken(
        "negative-perspective-weight",
        SCORECARD,
        "weight = 1",
        "weight = -1",
        "perspective[0].weight",
        "greater than 0",
    ),
    Broken(
        "negative-amber",
        SCORECARD,
        "amber = 5.0",
        "amber = -5.0",
        "perspective[0].objective[0].measure[0].amber",
        "greater than or equal to 0",
    ),
    Broken(
        "census-over-100-percent",
        MAIN,
        "[reporting]",
        "[sources.snow.census]\nmax_deleted_percent = 150\n[reporting]",
        "sources.snow.census.max_deleted_percent",
        "100",
    ),
    # -- values that would reach a query
    Broken(
        "filter-with-caret",
        MAIN,
        "[reporting]",
        '[sources.snow.filters.incident]\ncategory = "network^NQpriority=1"\n[reporting]',
        "sources.snow.filters.incident.category",
        "caret",
    ),
    Broken(
        "jira-project-injection",
        MAIN,
        'projects = ["ITSM"]',
        "projects = ['ITSM\" OR project IS NOT EMPTY OR project = \"X']",
        "sources.jsm.projects",
        "not a project key",
    ),
]


def build(tmp_path: Path, case: Broken) -> Path:
    files = write_config(tmp_path, url=GOOD_URL, db_url="sqlite:///itbsc.db")
    files.path.write_text(files.path.read_text() + JIRA_SOURCE)
    shutil.copyfile(config_dir() / "mappings" / "jira.toml", tmp_path / "mappings" / "jira.toml")
    edited = tmp_path / case.file
    text = edited.read_text(encoding="utf-8")
    assert case.old in text, f"{case.id}: {case.old!r} is not in {case.file}"
    edited.write_text(text.replace(case.old, case.new, 1), encoding="utf-8")
    return files.path


def resync(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--config", str(path), "resync"], env=ENV)
    return result.exit_code, result.output


def test_the_corpus_is_large_and_each_case_distinct() -> None:
    assert len(CORPUS) >= 30
    assert len({c.id for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_a_broken_configuration_names_file_and_key_exits_2_and_writes_nothing(
    tmp_path: Path, case: Broken
) -> None:
    path = build(tmp_path, case)
    code, output = resync(path)
    assert code == 2, output
    named = tmp_path / (case.names_file or case.file)
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith(f"{named}: ")]
    assert any(f": {case.key}: " in line and case.words in line for line in lines), output
    problems = [line for line in output.splitlines() if line.strip().startswith(f"{tmp_path}")]
    assert len(problems) == case.messages, f"one defect, one message: {output}"
    assert "hunter2-Marker" not in output
    assert not (tmp_path / "itbsc.db").exists()


def test_a_symlink_loop_is_named_not_followed_forever(tmp_path: Path) -> None:
    path = build(tmp_path, CORPUS[0])
    path.write_text(path.read_text().replace("[database", "[database]"))
    loop = tmp_path / "mappings" / "servicenow.toml"
    loop.unlink()
    loop.symlink_to(loop)
    code, output = resync(path)
    assert code == 2, output
    assert f"{loop}: (file): " in output
    assert not (tmp_path / "itbsc.db").exists()


def test_an_existing_database_is_left_exactly_as_it_was(tmp_path: Path) -> None:
    files = write_config(tmp_path, url=GOOD_URL, db_url="sqlite:///itbsc.db")
    subprocess.run(
        [sys.executable, "-m", "daemon.cli", "--config", str(files.path), "db", "upgrade"],
        env={**os.environ, **ENV},
        check=True,
        capture_output=True,
    )

    def fingerprint() -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(tmp_path.glob("itbsc.db*"))
        }

    before = fingerprint()
    assert "itbsc.db" in before
    for case in (c for c in CORPUS if c.file == MAIN and "jsm" not in c.key):
        text = files.path.read_text()
        if case.old not in text:
            continue
        files.path.write_text(text.replace(case.old, case.new, 1))
        code, _ = resync(files.path)
        files.path.write_text(text)
        assert code == 2, case.id
    assert fingerprint() == before
