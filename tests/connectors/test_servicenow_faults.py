"""Each sandbox fault, through pysnow and the real pipeline: the sync ends with exactly the source's data."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from daemon import db, store
from daemon.settings import Config, load_config
from daemon.sync import resync
from sandbox.faults import Fault
from sandbox.servicenow import RunningSandbox
from tests.conftest import write_config
from tests.helpers import source_truth, stored_raw

PAGE = 100  # 600 incidents: six pages


@pytest.fixture
def make(snow: RunningSandbox, tmp_path: Path) -> Iterator[Any]:
    engines: list[sa.Engine] = []

    def build(env: dict[str, str] | None = None, **options: Any) -> tuple[Config, sa.Engine]:
        options.setdefault("max_retries", 4)
        files = write_config(
            tmp_path,
            url=snow.url,
            db_url=f"sqlite:///{tmp_path / 'f.db'}",
            page_size=PAGE,
            **options,
        )
        config = load_config(files.path, env={**files.env, **(env or {})})
        engine = db.create_db_engine(config.database_url)
        db.upgrade(engine)
        engines.append(engine)
        return config, engine

    yield build
    for engine in engines:
        engine.dispose()


def assert_exact(snow: RunningSandbox, config: Config, engine: sa.Engine) -> None:
    assert stored_raw(engine) == source_truth(snow, config)


@pytest.mark.parametrize(
    "fault",
    [
        Fault("rate_limit", times=3, after=1, retry_after=1),
        Fault("server_error", times=2, after=2, status=503),
        Fault("server_error", times=1, after=0, status=502),
        Fault("slow", times=2, after=1, seconds=0.3),
        Fault("reset", times=2, after=1),
        Fault("malformed", times=2, after=3),
        Fault("truncated", times=2, after=2),
        Fault("cut_short", times=2, after=1),
    ],
    ids=lambda f: f"{f.kind}-{f.status if f.kind == 'server_error' else f.times}",
)
def test_transient_faults_are_survived_within_one_run(
    snow: RunningSandbox, make: Any, fault: Fault
) -> None:
    config, engine = make()
    snow.instance.faults.append(fault)
    started = time.monotonic()
    summary = resync(engine, config)
    assert summary.ok, summary.streams[0].error
    assert fault.fired == fault.times
    assert_exact(snow, config, engine)
    if fault.kind == "rate_limit":  # Retry-After was honoured, not hammered through
        assert time.monotonic() - started >= fault.retry_after * fault.times


def test_a_hanging_response_times_out_and_is_asked_again(snow: RunningSandbox, make: Any) -> None:
    config, engine = make(timeout_seconds=0.5)
    snow.instance.faults.append(Fault("hang", times=1, after=2, seconds=2.0))
    summary = resync(engine, config)
    assert summary.ok, summary.streams[0].error
    assert_exact(snow, config, engine)


def test_cancelled_transactions_halve_the_page_until_it_passes(
    snow: RunningSandbox, make: Any
) -> None:
    config, engine = make()
    fault = Fault("transaction_cancelled", times=1000, max_limit=30)
    snow.instance.faults.append(fault)
    summary = resync(engine, config)
    assert summary.ok, summary.streams[0].error
    assert fault.fired == 2  # 100 -> 50 -> 25, then the smaller size is kept
    assert summary.streams[0].pages == 24  # 600 / 25
    assert_exact(snow, config, engine)


def test_acl_short_pages_do_not_end_the_stream(snow: RunningSandbox, make: Any) -> None:
    config, engine = make()
    ordered = sorted(
        snow.instance.records("incident"), key=lambda r: (r["sys_updated_on"], r["sys_id"])
    )
    # Whole windows hidden (pages come back empty) and holes in every other page (short ones).
    hidden = ordered[100:350] + ordered[350::5] + ordered[:100:3]
    snow.instance.acl_hidden.update(r["sys_id"] for r in hidden)
    summary = resync(engine, config)
    assert summary.ok
    assert len(stored_raw(engine)) == 600 - len(hidden)
    assert_exact(snow, config, engine)


def test_records_changing_while_the_sync_pages_are_neither_lost_nor_doubled(
    snow: RunningSandbox, make: Any
) -> None:
    config, engine = make()
    records = sorted(
        snow.instance.records("incident"), key=lambda r: (r["sys_updated_on"], r["sys_id"])
    )
    early, late = records[:50], records[-50:]

    def meddle(request_number: int) -> None:
        if request_number in (2, 4):  # between pages: touch read and unread records, add one
            for r in (
                early[request_number : request_number + 5]
                + late[request_number : request_number + 5]
            ):
                snow.instance.update("incident", r["sys_id"], state="2", reopen_count="1")
            new = dict(
                records[0], sys_id=f"{request_number:032x}", number=f"INCNEW{request_number}"
            )
            snow.instance.insert_many("incident", [new])
            snow.instance.update("incident", new["sys_id"])

    snow.instance.before_list = meddle
    summary = resync(engine, config)
    assert summary.ok
    assert_exact(snow, config, engine)
    assert len(stored_raw(engine)) == 602


def test_a_persistent_outage_fails_the_run_and_the_next_run_completes_it(
    snow: RunningSandbox, make: Any
) -> None:
    config, engine = make(max_retries=1)
    fault = Fault("server_error", times=10**6, after=3, status=503)
    snow.instance.faults.append(fault)
    failed = resync(engine, config)
    result = failed.streams[0]
    assert not failed.ok and result.outcome == "failed"
    assert result.error and "HTTP 503" in result.error and "'snow'" in result.error
    with engine.connect() as conn:
        cursor = store.read_cursor(conn, "snow", "incident")
    stored = stored_raw(engine)
    assert len(stored) == 3 * PAGE  # three pages committed, the cursor at the last of them
    assert cursor is not None and cursor["sys_id"] in stored
    assert max((r["sys_updated_on"], r["sys_id"]) for r in stored.values()) == (
        cursor["sys_updated_on"],
        cursor["sys_id"],
    )
    snow.instance.faults.clear()
    assert resync(engine, config).ok
    assert_exact(snow, config, engine)


OAUTH = 'auth = "oauth"\nclient_id = "itbsc-client"\nclient_secret_env = "ITBSC_TEST_CLIENT_SECRET"'


def test_oauth_tokens_are_obtained_and_refreshed_when_the_instance_drops_them(
    snow: RunningSandbox, make: Any
) -> None:
    snow.instance.oauth_clients["itbsc-client"] = "client-Secret-Marker-5d2"
    snow.instance.basic_auth = False  # an OAuth-only instance: Basic would get 401
    config, engine = make(auth=OAUTH, env={"ITBSC_TEST_CLIENT_SECRET": "client-Secret-Marker-5d2"})

    def revoke(request_number: int) -> None:
        if request_number == 3:
            snow.instance.expire_tokens()  # every access token stops working mid-run

    snow.instance.before_list = revoke
    summary = resync(engine, config)
    assert summary.ok, summary.streams[0].error
    assert_exact(snow, config, engine)
    assert snow.instance.token_grants == ["password", "refresh_token"]
    with engine.connect() as conn:
        dumped = " ".join(
            str(tuple(r))
            for t in (store.raw_table, store.run_table, store.state_table)
            for r in conn.execute(sa.select(t))
        )
    assert "client-Secret-Marker-5d2" not in dumped and "s3cret-Marker-7f1c" not in dumped


def test_wrong_oauth_client_secret_fails_with_a_clear_message(
    snow: RunningSandbox, make: Any
) -> None:
    snow.instance.oauth_clients["itbsc-client"] = "the-right-one"
    config, engine = make(auth=OAUTH, env={"ITBSC_TEST_CLIENT_SECRET": "Wrong-Marker-11"})
    summary = resync(engine, config)
    error = summary.streams[0].error
    assert not summary.ok and error
    assert "OAuth" in error and "client secret" in error and "Wrong-Marker-11" not in error
