"""Every sandbox fault, on ServiceNow and on Jira (Cloud and Data Center): the sync survives
what is transient, fails clearly on what is not, and a rerun leaves the database exactly as a
clean sync of the same source would — records, canonical rows and metric values."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from daemon.sync import resync
from sandbox.faults import Fault
from sandbox.generator import generate
from sandbox.jira import JiraInstance, RunningJira, serve_jira
from sandbox.jira_data import generate_jira
from sandbox.servicenow import RunningSandbox, ServiceNowInstance, serve
from tests.chaos.scenario import Source, assert_matches_a_clean_run, engine_for, stored_ids
from tests.conftest import DATA_END, SANDBOX_PASSWORD, SANDBOX_USER, write_config
from tests.connectors.test_jira_sync import EMAIL, TOKEN, write_jira_config

TIMEOUT = 2.0  # seconds: a hang past it is retried
CLIENT, CLIENT_SECRET = "itbsc-client", "client-Secret-Marker-9e4"


class Running:
    """A served sandbox of either kind, with the knobs the faults below turn."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.snow: RunningSandbox | None = None
        self.jira: RunningJira | None = None
        if kind == "servicenow":
            instance = ServiceNowInstance(users={SANDBOX_USER: SANDBOX_PASSWORD})
            instance.oauth_clients[CLIENT] = CLIENT_SECRET
            instance.load(generate(600, end=DATA_END, seed=11))
            self.snow = serve(instance)
        else:
            site = JiraInstance(flavour=kind.split("-")[1], users={EMAIL: TOKEN})
            site.load(generate_jira(300, end=DATA_END, seed=11))
            self.jira = serve_jira(site)
        self.oauth = False
        self.max_retries = 4  # a 429 burst of three is survived within the run

    def source(self) -> Source:
        if self.snow is not None:
            snow = self.snow

            def snow_config(directory: Path, db_url: str) -> tuple[Path, dict[str, str]]:
                auth = (
                    f'auth = "oauth"\nclient_id = "{CLIENT}"\n'
                    'client_secret_env = "ITBSC_TEST_CLIENT_SECRET"'
                    if self.oauth
                    else ""
                )
                files = write_config(
                    directory,
                    url=snow.url,
                    db_url=db_url,
                    page_size=50,
                    max_retries=self.max_retries,
                    timeout_seconds=TIMEOUT,
                    auth=auth,
                )
                return files.path, {**files.env, "ITBSC_TEST_CLIENT_SECRET": CLIENT_SECRET}

            return Source(
                name="snow",
                stream="incident",
                write_config=snow_config,
                visible_ids=lambda: {
                    r["sys_id"]
                    for r in snow.instance.records("incident")
                    if r["sys_id"] not in snow.instance.acl_hidden
                },
                faults=snow.instance.faults,
                hidden=snow.instance.acl_hidden,
            )
        assert self.jira is not None
        site = self.jira

        def jira_config(directory: Path, db_url: str) -> tuple[Path, dict[str, str]]:
            path = write_jira_config(
                directory,
                site.url,
                page_size=40,
                max_retries=self.max_retries,
                timeout_seconds=TIMEOUT,
                db_url=db_url,
            )
            return path, {"ITBSC_TEST_JIRA_TOKEN": TOKEN}

        return Source(
            name="jsm",
            stream="issues",
            write_config=jira_config,
            visible_ids=lambda: {
                i for i in site.instance.issues if i not in site.instance.acl_hidden
            },
            faults=site.instance.faults,
            hidden=site.instance.acl_hidden,
        )

    def on_page(self, hook: Callable[[int], None]) -> None:
        """Call ``hook(request number)`` before each list/search request is answered."""
        if self.snow is not None:
            self.snow.instance.before_list = hook
        else:
            assert self.jira is not None
            self.jira.instance.before_search = hook

    def ordered_ids(self) -> list[str]:
        if self.snow is not None:
            rows = sorted(
                self.snow.instance.records("incident"),
                key=lambda r: (r["sys_updated_on"], r["sys_id"]),
            )
            return [r["sys_id"] for r in rows]
        assert self.jira is not None
        issues = self.jira.instance.issues.values()
        return [i["id"] for i in sorted(issues, key=lambda i: (i["_created"], int(i["id"])))]

    def change(self, ids: list[str]) -> None:
        """Edit records as users do while the sync pages."""
        if self.snow is not None:
            for sys_id in ids:
                self.snow.instance.update("incident", sys_id, state="2", reopen_count="1")
        else:
            assert self.jira is not None
            for issue_id in ids:
                self.jira.instance.update(
                    issue_id, datetime.now(UTC), labels=["touched-while-paging"]
                )

    def expire_credentials(self) -> Callable[[], None]:
        """Make the credential in use stop working; return how to renew it."""
        if self.snow is not None:
            instance = self.snow.instance
            instance.expire_tokens()
            return lambda: None  # the client refreshes its OAuth token itself
        assert self.jira is not None
        users = self.jira.instance.users
        users.pop(EMAIL)
        return lambda: users.__setitem__(EMAIL, TOKEN)

    def stop(self) -> None:
        (self.snow or self.jira).stop()  # type: ignore[union-attr]


KINDS = ["servicenow", "jira-cloud", "jira-datacenter"]
FULL = os.environ.get("ITBSC_CHAOS_FULL") == "1"


@pytest.fixture(params=KINDS)
def running(request: pytest.FixtureRequest) -> Iterator[Running]:
    served = Running(request.param)
    yield served
    served.stop()


TRANSIENT: dict[str, Callable[[], list[Fault]]] = {
    "429-burst": lambda: [Fault("rate_limit", times=3, after=1, retry_after=1)],
    "5xx": lambda: [
        Fault("server_error", times=2, after=2, status=503),
        Fault("server_error", times=1, after=3, status=502),
    ],
    "resets": lambda: [Fault("reset", times=2, after=1)],
    "hang-past-timeout": lambda: [Fault("hang", times=1, after=2, seconds=TIMEOUT + 1)],
    "malformed": lambda: [Fault("malformed", times=2, after=2)],
    "truncated-json": lambda: [Fault("truncated", times=2, after=1)],
    "cut-short": lambda: [Fault("cut_short", times=2, after=1)],
}


def sync(running: Running, directory: Path) -> tuple[Source, sa.Engine, Any]:
    source = running.source()
    config = source.config(directory)
    engine = engine_for(config)
    return source, engine, resync(engine, config)


def cases(faults: list[str]) -> list[tuple[str, str]]:
    """Every fault against every source kind with ``make chaos``; in ``make test`` each fault
    against one kind, taken in turn, so every fault and every kind is still met."""
    if FULL:
        return [(fault, kind) for fault in faults for kind in KINDS]
    return [(fault, KINDS[i % len(KINDS)]) for i, fault in enumerate(faults)]


@pytest.mark.parametrize(("fault", "running"), cases(list(TRANSIENT)), indirect=["running"])
def test_a_transient_fault_is_survived_within_the_run(
    running: Running, tmp_path: Path, fault: str
) -> None:
    source = running.source()
    faults = TRANSIENT[fault]()
    source.faults.extend(faults)
    source, engine, summary = sync(running, tmp_path / "faulty")
    try:
        assert summary.ok, [s.error for s in summary.streams]
        assert all(f.fired == f.times for f in faults), "every fault was met"
        source.faults.clear()
        assert_matches_a_clean_run(source, engine, tmp_path / "clean")
    finally:
        engine.dispose()


PERSISTENT = {
    "server_error": "503",  # an outage
    "malformed": "503",  # a proxy's HTML error page, every time
    "truncated": "not valid JSON",  # a body cut short, every time
}


@pytest.mark.parametrize(("kind", "running"), cases(list(PERSISTENT)), indirect=["running"])
def test_a_persistent_fault_fails_clearly_keeps_what_was_stored_and_the_rerun_completes(
    running: Running, tmp_path: Path, kind: str
) -> None:
    running.max_retries = 2  # a fault that never ends: waiting longer proves nothing more
    source = running.source()
    source.faults.append(Fault(kind, times=10**6, after=3, status=503))  # type: ignore[arg-type]
    source, engine, summary = sync(running, tmp_path / "faulty")
    try:
        stream = summary.streams[0]
        assert stream.outcome == "failed"
        assert stream.error and repr(source.name) in stream.error, stream.error
        assert PERSISTENT[kind] in stream.error or "malformed" in stream.error, stream.error
        assert "<html" not in stream.error.lower(), "an error page is named, not pasted"
        kept = len(stored_ids(engine, source.stream))
        assert kept > 0 or running.kind != "servicenow", "pages before the fault are kept"
        source.faults.clear()
        config = source.config(tmp_path / "faulty")
        assert resync(engine, config).ok
        assert_matches_a_clean_run(source, engine, tmp_path / "clean")
    finally:
        engine.dispose()


def test_acl_short_pages_lose_nothing_visible(running: Running, tmp_path: Path) -> None:
    ordered = running.ordered_ids()
    # a whole page's worth hidden (an empty page mid-stream) and holes in the others
    running.source().hidden.update(ordered[60:130] + ordered[130::4] + ordered[:60:3])
    source, engine, summary = sync(running, tmp_path / "faulty")
    try:
        assert summary.ok, [s.error for s in summary.streams]
        assert_matches_a_clean_run(source, engine, tmp_path / "clean")
    finally:
        engine.dispose()


def test_records_changing_during_paging_are_neither_lost_nor_doubled(
    running: Running, tmp_path: Path
) -> None:
    ordered = running.ordered_ids()

    def meddle(request_number: int) -> None:
        if request_number in (3, 5):  # read and unread records alike
            start = request_number * 7
            running.change(ordered[start : start + 4] + ordered[-start - 4 : -start])

    running.on_page(meddle)
    source, engine, summary = sync(running, tmp_path / "faulty")
    running.on_page(lambda _n: None)
    try:
        assert summary.ok, [s.error for s in summary.streams]
        config = source.config(tmp_path / "faulty")
        assert resync(engine, config).ok  # the next scheduled run
        assert_matches_a_clean_run(source, engine, tmp_path / "clean")
    finally:
        engine.dispose()


def test_credentials_expiring_mid_run(running: Running, tmp_path: Path) -> None:
    """ServiceNow OAuth: the client refreshes the token and the run goes on. Jira (API token or
    personal access token, nothing to refresh): the run fails naming the source and the rerun
    with a renewed token completes."""
    running.oauth = running.kind == "servicenow"
    renew: list[Callable[[], None]] = []

    def expire(request_number: int) -> None:
        if request_number == 4 and not renew:
            renew.append(running.expire_credentials())

    running.on_page(expire)
    source, engine, summary = sync(running, tmp_path / "faulty")
    running.on_page(lambda _n: None)
    try:
        stream = summary.streams[0]
        if running.kind == "servicenow":
            assert summary.ok, stream.error
        else:
            assert stream.outcome == "failed" and stream.error
            assert "401" in stream.error and "'jsm'" in stream.error and TOKEN not in stream.error
            renew[0]()
            assert resync(engine, source.config(tmp_path / "faulty")).ok
        assert_matches_a_clean_run(source, engine, tmp_path / "clean")
    finally:
        engine.dispose()
