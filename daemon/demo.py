"""``itbsc demo``: a sandbox ServiceNow with a seeded year of incidents, synced and scored end to end."""

from __future__ import annotations

import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

from daemon.defaults import config_dir
from sandbox.generator import generate
from sandbox.jira import JiraInstance, RunningJira, serve_jira
from sandbox.jira_data import generate_jira
from sandbox.servicenow import RunningSandbox, ServiceNowInstance, serve

DEMO_USER = "itbsc-demo"
DEMO_PASSWORD_ENV = "ITBSC_DEMO_PASSWORD"
DEMO_JIRA_USER = "itbsc-demo@example.com"
DEMO_JIRA_TOKEN_ENV = "ITBSC_DEMO_JIRA_TOKEN"
SHIPPED = ("metrics.toml", "scorecard.toml", "mappings/servicenow.toml", "mappings/jira.toml")
JIRA_SOURCE = """
[sources.sandbox-jsm]
kind = "jira"
url = "{url}"
username = "{user}"
password_env = "{token_env}"                # Jira Cloud: the account e-mail + an API token
projects = ["ITSM"]
streams = ["issues"]
mapping = "mappings/jira.toml"
schedule = "*/15 * * * *"
page_size = 100
"""

DEMO_CONFIG = """\
# Written by `itbsc demo`; points at the sandbox ServiceNow it started.
[database]
url = "sqlite:///itbsc.db"

[reporting]
timezone = "Europe/Amsterdam"

[sources.sandbox-snow]
kind = "servicenow"
url = "{url}"
username = "{user}"
password_env = "{password_env}"
streams = ["sys_user_group", "change_request", "problem", "incident", "task_sla", "sc_req_item", "asmt_metric_result"]
mapping = "mappings/servicenow.toml"
schedule = "*/15 * * * *"
page_size = 500

[scorecard]
file = "scorecard.toml"
catalogue = "metrics.toml"
"""


def start_sandbox(count: int, seed: int, days: int = 365) -> RunningSandbox:
    """Serve ``count`` incidents over ``days``; the password is random and lives only in this
    process's env."""
    password = secrets.token_urlsafe(16)
    os.environ[DEMO_PASSWORD_ENV] = password
    instance = ServiceNowInstance(users={DEMO_USER: password})
    instance.load(generate(count, seed=seed, days=days))
    return serve(instance)


def start_jira_sandbox(count: int, seed: int, days: int = 365) -> RunningJira:
    """A Jira Cloud site with JSM incidents, requests and changes over ``days``; the token lives
    in the env."""
    token = secrets.token_urlsafe(16)
    os.environ[DEMO_JIRA_TOKEN_ENV] = token
    instance = JiraInstance(flavour="cloud", users={DEMO_JIRA_USER: token})
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    instance.load(generate_jira(count, end=end, seed=seed, days=days))
    return serve_jira(instance)


def write_demo_config(
    directory: Path, url: str, jira_url: str | None = None, every: str | None = None
) -> Path:
    """Copy the shipped TOML into ``directory`` and write an itbsc.toml for the sandbox
    (syncing ``every`` interval instead of the quarter-hour cron when given)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("itbsc.db", "itbsc.db-wal", "itbsc.db-shm"):
        (directory / name).unlink(missing_ok=True)  # the sandbox data is new on every run
    shipped = config_dir()
    for name in SHIPPED:
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shipped / name, target)
    path = directory / "itbsc.toml"
    text = DEMO_CONFIG.format(url=url, user=DEMO_USER, password_env=DEMO_PASSWORD_ENV)
    if jira_url:
        text += JIRA_SOURCE.format(url=jira_url, user=DEMO_JIRA_USER, token_env=DEMO_JIRA_TOKEN_ENV)
    if every:
        text = text.replace('schedule = "*/15 * * * *"', f'every = "{every}"')
    path.write_text(text, encoding="utf-8")
    return path


def write_demo_inputs(directory: Path, months: list[str], seed: int) -> Path:
    """A CSV of the manual figures a finance and HR team would supply, for the demo."""
    import random

    rng = random.Random(seed)
    lines = ["name,period,value,note"]
    for month in months:
        budget = 120000.0
        lines.append(f"budget,{month},{budget:.0f},demo: approved annual budget / 12")
        lines.append(
            f"actual_spend,{month},{budget * rng.uniform(0.93, 1.08):.0f},demo: ledger export"
        )
        lines.append(f"training_hours,{month},{rng.randint(24, 60)},demo: LMS report")
        lines.append(f"agents,{month},{rng.choice((11, 12, 12, 13))},demo: HR headcount (FTE)")
    path = directory / "inputs.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
