"""The HTML scorecard: self-contained, and checked in a real browser (the system's Chromium)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from daemon import db, report
from daemon.html_report import write_report
from daemon.inputs import add
from daemon.settings import Config, load_config
from daemon.sync import resync
from mapping.periods import parse_period
from sandbox.servicenow import RunningSandbox
from tests.conftest import ALL_STREAMS, write_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRE_BROWSER = os.environ.get("ITBSC_REQUIRE_BROWSER") == "1"
ARTIFACTS = Path(
    os.environ.get("ITBSC_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)


@pytest.fixture
def reported(snow: RunningSandbox, tmp_path: Path) -> Iterator[tuple[Config, sa.Engine, Path]]:
    files = write_config(
        tmp_path, url=snow.url, db_url=f"sqlite:///{tmp_path / 'r.db'}", streams=ALL_STREAMS
    )
    config = load_config(files.path, env=files.env)
    engine = db.create_db_engine(config.database_url)
    db.upgrade(engine)
    assert resync(engine, config).ok
    with engine.begin() as conn:
        for name, value in (("budget", 100000), ("actual_spend", 104000)):
            add(conn, config, name, "2026-05", value, entered_by="cfo", note="ledger May")
    path = write_report(
        engine, config, parse_period("2026-05", config.zone), tmp_path / "scorecard.html"
    )
    yield config, engine, path
    engine.dispose()


def test_the_report_is_one_file_that_asks_the_network_for_nothing(
    reported: tuple[Config, sa.Engine, Path],
) -> None:
    _, _, path = reported
    html = path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html
    assert "<script" not in html  # nothing to run, nothing to fetch
    for word in ("Customer", "Financial", "Internal Business Processes", "Learning and Growth"):
        assert word in html
    assert "(manual)" in html and "ledger May" in html  # provenance of a manual figure


@pytest.mark.skipif(
    CHROMIUM is None and not REQUIRE_BROWSER,
    reason="no Chromium on this machine (apt-get install chromium); CI installs it",
)
def test_the_report_in_a_real_browser(reported: tuple[Config, sa.Engine, Path]) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "CI needs the system Chromium (ITBSC_REQUIRE_BROWSER=1)"
    config, engine, path = reported
    period = parse_period("2026-05", config.zone)
    card = report.build_scorecard(engine, config, period, spark=12)
    series = card.history
    measures = [m for p in card.result.perspectives for o in p.objectives for m in o.measures]
    errors: list[str] = []
    requests: list[str] = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        for measure in measures:
            metric = measure.metric.id
            box = page.locator(f'.measure[data-metric="{metric}"]').first
            expected = sum(
                1
                for _, readings in series
                if readings.get(metric) and readings[metric].value is not None
            )
            assert box.locator("svg.chart").count() == 1, metric
            assert box.locator("svg.chart .point").count() == expected, metric
            target = box.locator("svg.chart .target-line").get_attribute("data-target")
            assert target is not None and float(target) == measure.spec.target, metric
            assert box.locator("svg.chart .amber-band").count() == 1, metric
            status = box.locator(".head .status").inner_text()
            assert (
                status.split()[0] in {"●", "◐", "○", "·"} and len(status.split()) >= 2
            )  # no colour needed
        objectives = sum(len(p.objectives) for p in card.result.perspectives)
        assert page.locator("svg.strategy-map .objective").count() == objectives
        assert page.locator("svg.strategy-map .link").count() == len(card.result.spec.link)
        page.screenshot(path=str(ARTIFACTS / "scorecard.png"), full_page=False)
        page.pdf(path=str(ARTIFACTS / "scorecard.pdf"), format="A4")  # prints on A4
        browser.close()
    assert errors == []
    assert requests == [path.as_uri()]  # the file itself, nothing else
    assert (ARTIFACTS / "scorecard.png").stat().st_size > 10_000
