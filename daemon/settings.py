"""The service configuration (``itbsc.toml``): parsed, validated, cross-checked, secrets resolved.

Every problem in the file and in the files it names is collected and
reported at once, each with file and key, before anything touches the
database. Secrets are read only from the environment or a named file.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from connectors.base import ConnectionParams, Secret
from connectors.registry import source_class
from daemon.snapshot_readers import MAX_READERS
from mapping.catalogue import Catalogue, load_catalogue
from mapping.errors import SpecError
from mapping.periods import ZoneName
from mapping.scorecard import ScorecardSpec, load_scorecard
from mapping.spec import MappingSpec, load_mapping
from mapping.tomlfile import read_toml, validation_problems

CONFIG_ENV = "ITBSC_CONFIG"
DEFAULT_CONFIG = "itbsc.toml"
SECRET_KEYS = ("password", "token", "api_token", "client_secret", "secret")


class ConfigError(Exception):
    """All problems of a configuration, one line each: ``file: key: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Strict):
    url: str = "sqlite:///itbsc.db"
    password_env: str | None = None
    password_file: str | None = None
    busy_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    """SQLite: how long a write waits for another program's lock before the run fails."""
    compute_connections: int | None = Field(default=None, ge=1, le=MAX_READERS)
    """Connections a computation's queries run on side by side, on one snapshot (1: one
    after another on one connection); unset: one per core of this machine (one more for a
    PostgreSQL on another host), at most four."""


class ReportingSettings(_Strict):
    timezone: ZoneName = "UTC"
    stale_after_hours: float = Field(default=48.0, gt=0)
    """A record metric whose source streams last succeeded longer ago than this, before the
    period ended, is shown Grey (stale) rather than as a number that may be out of date."""


class CensusSettings(_Strict):
    """The deletion census: ids only, compared with what is stored."""

    schedule: str | None = None
    max_deleted_percent: float = Field(default=20.0, ge=0, le=100)
    """Refuse to mark more than this share of a stream deleted in one census (an ACL change
    or a wrong account looks like mass deletion); ``--force`` overrides once."""


class SourceSettings(_Strict):
    kind: str
    url: str
    auth: Literal["basic", "oauth", "token"] = "basic"
    """basic: username + password (Jira Cloud: e-mail + API token); oauth: ServiceNow password
    grant; token: a Jira Data Center personal access token in password_env/_file."""
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    client_id: str | None = None
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    census: CensusSettings = Field(default_factory=CensusSettings)
    projects: list[str] = Field(default_factory=list)  # Jira: the project keys to read
    overlap_minutes: float = Field(default=10, ge=0, le=1440)  # Jira: re-read window
    field_names: dict[str, str] = Field(default_factory=dict)
    """Jira: role -> the name of the custom field that plays it, where schema types (or the
    default names) do not find it: ``{ "itbsc:change_type" = "Type of change" }``."""
    filters: dict[str, dict[str, str | list[str]]] = Field(default_factory=dict)
    """ServiceNow: stream -> {field: value or [values]}, read only matching records (the census
    too). Values are compared with =; a caret or a control character is refused."""
    streams: list[str] = Field(min_length=1)
    mapping: str
    schedule: str | None = None  # cron (five fields, UTC) for `itbsc run` ...
    every: str | None = None  # ... or an interval: "90s", "15m", "2h", "1d"
    stream_schedules: dict[str, str] = Field(default_factory=dict)
    """Streams synced on their own rhythm: stream -> cron or interval (``every`` form); the
    source's schedule then covers the other streams."""
    page_size: int = Field(default=1000, ge=1, le=10000)
    timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    max_retries: int = Field(default=5, ge=0, le=20)
    verify_tls: bool = True

    @field_validator("field_names")
    @classmethod
    def _known_roles(cls, names: dict[str, str]) -> dict[str, str]:
        """A misspelt role would be ignored and its metrics silently go empty."""
        from connectors.jira import ROLE_NAMES, ROLE_SCHEMAS

        known = sorted({*ROLE_SCHEMAS, *ROLE_NAMES})
        for role in names:
            if role not in known:
                raise ValueError(f"unknown field role {role!r}; the roles are {', '.join(known)}")
        return names


class DaemonSettings(_Strict):
    """``[daemon]``: how ``itbsc run`` schedules, shares and stops."""

    misfire_grace_seconds: int = Field(default=300, ge=1)
    """A run missed by less than this (the machine slept, a run overran) still starts, once."""
    lease_minutes: float = Field(default=10.0, gt=0)
    """A stream lock's lease, renewed with every page; a dead holder's expires after this."""
    stop_timeout_seconds: float = Field(default=90.0, gt=0)
    """On SIGTERM: how long running syncs get to finish their page before the exit."""
    heartbeat_seconds: float = Field(default=30.0, gt=0)
    recompute_every: str = "5m"
    """How often to restate periods a crashed or interrupted run left marked (cheap when none)."""
    http: str | None = None
    """``host:port`` for /healthz and /metrics (off when unset; use 127.0.0.1)."""


class ReportSettings(_Strict):
    """``[reports]``: the service writes the HTML scorecard of the last complete period here."""

    directory: str | None = None  # relative to the config file; off when unset
    schedule: str = "0 6 * * *"  # cron (UTC) or an interval such as 1h
    grain: Literal["week", "month", "quarter", "year"] = "month"


class ScorecardSettings(_Strict):
    file: str = "scorecard.toml"
    catalogue: str = "metrics.toml"


class Settings(_Strict):
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    reporting: ReportingSettings = Field(default_factory=ReportingSettings)
    sources: dict[str, SourceSettings] = Field(default_factory=dict)
    scorecard: ScorecardSettings = Field(default_factory=ScorecardSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)


@dataclass
class Config:
    """A loaded, checked configuration with everything it names already read."""

    path: Path
    settings: Settings
    database_url: URL
    zone: ZoneInfo
    mappings: dict[str, MappingSpec]
    catalogue: Catalogue
    scorecard: ScorecardSpec
    secrets: dict[str, Secret] = field(default_factory=dict)

    def connection(self, name: str) -> ConnectionParams:
        source = self.settings.sources[name]
        if not source.verify_tls:
            structlog.get_logger("itbsc.config").warning(
                "TLS certificate verification is OFF for this source (verify_tls = false): "
                "anyone on the network path can read its credentials and data",
                source=name,
            )
        return ConnectionParams(
            name=name,
            url=source.url.rstrip("/"),
            username=source.username,
            password=self.secrets.get(name),
            auth=source.auth,
            client_id=source.client_id,
            client_secret=self.secrets.get(f"{name}.client_secret"),
            options={
                "projects": source.projects,
                "overlap_minutes": source.overlap_minutes,
                "field_names": source.field_names,
                "filters": source.filters,
            },
            page_size=source.page_size,
            timeout_seconds=source.timeout_seconds,
            verify_tls=source.verify_tls,
            max_retries=source.max_retries,
        )

    def secret_values(self) -> list[str]:
        """Every secret in play, for the log redactor."""
        values = [s.reveal() for s in self.secrets.values()]
        if self.database_url.password:
            values.append(str(self.database_url.password))
        return [v for v in values if v]


def find_config(explicit: Path | None, env: Mapping[str, str] = os.environ) -> Path:
    """``--config`` first, then ``$ITBSC_CONFIG``, then ``./itbsc.toml``."""
    if explicit is not None:
        return explicit
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return Path(DEFAULT_CONFIG)


class _Problems:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []

    def add(self, key: str, message: str, path: Path | str | None = None) -> None:
        self.lines.append(f"{path or self.path}: {key or '(file)'}: {message}")

    def spec_error(self, error: SpecError) -> None:
        for key, message in error.problems:
            self.add(key, message, error.path)


def load_config(
    path: Path, env: Mapping[str, str] = os.environ, *, need_source_secrets: bool = True
) -> Config:
    """Read and check ``path`` and everything it names; raise ConfigError with every problem.

    Commands that never contact a source (scorecard, metrics, status) pass
    ``need_source_secrets=False``, so a reporting host needs no source password.
    """
    problems = _Problems(path)
    try:
        data = read_toml(path)
    except SpecError as exc:
        problems.spec_error(exc)
        raise ConfigError(problems.lines) from None
    _plaintext_secrets(data, problems)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        for key, message in validation_problems(exc):
            if not any(key.endswith(f".{s}") for s in SECRET_KEYS):
                problems.add(key, message)
        raise ConfigError(problems.lines) from None
    base = path.parent
    database_url = _database_url(settings.database, base, env, problems)
    secrets: dict[str, Secret] = {}
    for name, source in settings.sources.items():
        secrets.update(_source_checks(name, source, base, env, problems, need_source_secrets))
    mappings = _load_mappings(settings, base, problems)
    catalogue, scorecard = _load_scorecard(settings.scorecard, base, problems)
    if settings.daemon.http is not None and _endpoint_problem(settings.daemon.http):
        problems.add("daemon.http", _endpoint_problem(settings.daemon.http) or "")
    rhythm = settings.reports.schedule
    if settings.reports.directory:
        from daemon.scheduler import every_problem, schedule_problem

        if every_problem(rhythm) and schedule_problem(rhythm):
            problems.add(
                "reports.schedule",
                f"{rhythm!r} is neither a cron expression nor an interval such as 1h",
            )
    if catalogue is not None:
        calendars = catalogue.calendars()
        for name, spec in mappings.items():
            goals = spec.sla_goals
            if goals is not None and goals.calendar and goals.calendar not in calendars:
                problems.add(
                    "sla_goals.calendar",
                    f"no [[calendar]] named {goals.calendar!r} in the catalogue",
                    settings.sources[name].mapping,
                )
            elif goals is not None and not (goals.calendar or catalogue.business_hours.default):
                problems.add(
                    "sla_goals.calendar",
                    "name a calendar, or give the catalogue a [business_hours] default",
                    settings.sources[name].mapping,
                )
    if problems.lines:
        raise ConfigError(problems.lines)
    assert database_url is not None and catalogue is not None and scorecard is not None
    return Config(
        path=path,
        settings=settings,
        database_url=database_url,
        zone=ZoneInfo(settings.reporting.timezone),
        mappings=mappings,
        catalogue=catalogue,
        scorecard=scorecard,
        secrets=secrets,
    )


def _plaintext_secrets(data: Mapping[str, Any], problems: _Problems) -> None:
    """A password written into the TOML is refused, and its value is never echoed."""
    sections: list[tuple[str, Any]] = [("database", data.get("database"))]
    sources = data.get("sources")
    if isinstance(sources, dict):
        sections += [(f"sources.{n}", s) for n, s in sources.items()]
    for prefix, section in sections:
        if not isinstance(section, dict):
            continue
        for key in SECRET_KEYS:
            if key in section:
                problems.add(
                    f"{prefix}.{key}",
                    "secrets are not read from the TOML; name an environment variable "
                    f"({key}_env) or a file ({key}_file) instead",
                )


def _read_secret(
    key: str,
    env_name: str | None,
    file_name: str | None,
    base: Path,
    env: Mapping[str, str],
    problems: _Problems,
) -> Secret | None:
    if env_name and file_name:
        field_name = key.rsplit(".", 1)[-1]
        problems.add(key, f"give {field_name}_env or {field_name}_file, not both")
        return None
    if env_name:
        value = env.get(env_name)
        if not value:
            problems.add(f"{key}_env", f"environment variable {env_name} is not set or empty")
            return None
        return Secret(value)
    if file_name:
        secret_path = base / file_name
        try:
            value = secret_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            problems.add(f"{key}_file", f"cannot read {secret_path}: {exc.strerror}")
            return None
        if not value:
            problems.add(f"{key}_file", f"{secret_path} is empty")
            return None
        return Secret(value)
    return None


def _database_url(
    db: DatabaseSettings, base: Path, env: Mapping[str, str], problems: _Problems
) -> URL | None:
    try:
        url = make_url(db.url)
    except ArgumentError:
        problems.add(
            "database.url",
            "not a database URL (sqlite:///file.db or postgresql+psycopg://user@host/db)",
        )
        return None
    if url.password:
        problems.add("database.url", "the URL holds a password; use database.password_env instead")
        return None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        problems.add(
            "database.url", f"unsupported database {backend!r}; use sqlite or postgresql+psycopg"
        )
        return None
    if backend == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database)
        if not database.is_absolute():
            url = url.set(database=str((base / database).resolve()))
    secret = _read_secret(
        "database.password", db.password_env, db.password_file, base, env, problems
    )
    return url.set(password=secret.reveal()) if secret else url


def _source_checks(
    name: str,
    source: SourceSettings,
    base: Path,
    env: Mapping[str, str],
    problems: _Problems,
    need_secret: bool,
) -> dict[str, Secret]:
    """Check one source; return its secrets (``name`` = password, ``name.client_secret``)."""
    key = f"sources.{name}"
    try:
        connector = source_class(source.kind)
    except KeyError as exc:
        problems.add(f"{key}.kind", str(exc.args[0]))
        connector = None
    if connector is not None:
        unknown = [s for s in source.streams if s not in connector.streams]
        if unknown:
            problems.add(
                f"{key}.streams",
                f"{', '.join(unknown)} not offered by kind {source.kind!r} "
                f"(it has {', '.join(connector.streams)})",
            )
    url_problem = _url_problem(source.url)
    if url_problem:
        problems.add(f"{key}.url", url_problem)
    if source.schedule:
        from daemon.scheduler import schedule_problem

        schedule_error = schedule_problem(source.schedule)
        if schedule_error:
            problems.add(f"{key}.schedule", schedule_error)
    if source.every:
        from daemon.scheduler import every_problem

        every_error = every_problem(source.every)
        if every_error:
            problems.add(f"{key}.every", every_error)
        if source.schedule:
            problems.add(f"{key}.every", "give `schedule` (cron) or `every`, not both")
    for stream_name, rhythm in source.stream_schedules.items():
        from daemon.scheduler import every_problem, schedule_problem

        if stream_name not in source.streams:
            problems.add(
                f"{key}.stream_schedules.{stream_name}", "not one of this source's streams"
            )
        elif every_problem(rhythm) and schedule_problem(rhythm):
            problems.add(
                f"{key}.stream_schedules.{stream_name}",
                f"{rhythm!r} is neither a cron expression nor an interval such as 15m",
            )
    if source.census.schedule:
        from daemon.scheduler import schedule_problem

        census_error = schedule_problem(source.census.schedule)
        if census_error:
            problems.add(f"{key}.census.schedule", census_error)
    if source.kind == "jira":
        if not source.projects:
            problems.add(f"{key}.projects", "a Jira source needs the project keys to read")
        bad = [p for p in source.projects if not re.fullmatch(r"[A-Z][A-Z0-9_]*", p)]
        if bad:
            problems.add(
                f"{key}.projects", f"{', '.join(map(repr, bad))}: not a project key (A-Z, 0-9, _)"
            )
    if source.filters and source.kind != "servicenow":
        problems.add(f"{key}.filters", "filters are offered for ServiceNow sources only")
    elif source.filters:
        from connectors.servicenow import filter_problem

        for stream_name, fields in source.filters.items():
            if stream_name not in source.streams:
                problems.add(f"{key}.filters.{stream_name}", "not one of this source's streams")
            for field_name, values in fields.items():
                filter_error = filter_problem(field_name, values)
                if filter_error:
                    problems.add(f"{key}.filters.{stream_name}.{field_name}", filter_error)
    if source.auth == "token" and source.username:
        problems.add(f"{key}.username", "a personal access token needs no username; remove it")
    if source.auth == "oauth":
        if not source.client_id:
            problems.add(f"{key}.client_id", "auth = 'oauth' needs the OAuth client_id")
        if not (source.client_secret_env or source.client_secret_file):
            problems.add(
                f"{key}.client_secret_env",
                "auth = 'oauth' needs client_secret_env or client_secret_file",
            )
        if not source.username:
            problems.add(f"{key}.username", "the OAuth password grant needs a username")
    if not need_secret:
        return {}
    found: dict[str, Secret] = {}
    secret = _read_secret(
        f"{key}.password", source.password_env, source.password_file, base, env, problems
    )
    if secret is not None:
        found[name] = secret
    if source.username and secret is None and not (source.password_env or source.password_file):
        problems.add(
            f"{key}.password_env", "a username needs a password (password_env or password_file)"
        )
    if source.client_secret_env or source.client_secret_file:
        client_secret = _read_secret(
            f"{key}.client_secret",
            source.client_secret_env,
            source.client_secret_file,
            base,
            env,
            problems,
        )
        if client_secret is not None:
            found[f"{name}.client_secret"] = client_secret
    return found


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a symlink loop is reported when the file is read
        return False


def _endpoint_problem(endpoint: str) -> str | None:
    """``host:port`` to listen on (an IPv6 host in brackets); None when it is one."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or " " in host:
        return f"{endpoint!r} is not host:port (such as 127.0.0.1:9464)"
    return None


def _url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not a full http(s) base URL such as https://acme.service-now.com"
    if parts.username or parts.password:
        return "credentials do not belong in the URL; use username and password_env"
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return "plain http is only allowed for loopback hosts (127.0.0.1, localhost); use https"
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _load_mappings(settings: Settings, base: Path, problems: _Problems) -> dict[str, MappingSpec]:
    loaded: dict[str, MappingSpec] = {}
    cache: dict[Path, MappingSpec | None] = {}
    for name, source in settings.sources.items():
        path = base / source.mapping
        if _same_file(path, problems.path):
            problems.add(f"sources.{name}.mapping", "names this configuration file itself")
            continue
        if path not in cache:
            try:
                cache[path] = load_mapping(path)
            except SpecError as exc:
                problems.spec_error(exc)
                cache[path] = None
        spec = cache[path]
        if spec is None:
            continue
        loaded[name] = spec
        try:
            offered = source_class(source.kind).streams
        except KeyError:  # reported with the source
            offered = {}
        for stream in source.streams:
            if stream in offered and spec.for_stream(stream) is None:
                problems.add(
                    f"sources.{name}.streams", f"the mapping {path} does not map stream {stream!r}"
                )
    return loaded


def _load_scorecard(
    settings: ScorecardSettings, base: Path, problems: _Problems
) -> tuple[Catalogue | None, ScorecardSpec | None]:
    if _same_file(base / settings.catalogue, base / settings.file):
        problems.add("scorecard.catalogue", "the catalogue and the scorecard must be two files")
        return None, None
    try:
        catalogue = load_catalogue(base / settings.catalogue)
    except SpecError as exc:
        problems.spec_error(exc)
        return None, None
    try:
        return catalogue, load_scorecard(base / settings.file, catalogue)
    except SpecError as exc:
        problems.spec_error(exc)
        return catalogue, None
