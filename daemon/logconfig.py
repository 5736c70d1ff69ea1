"""structlog set-up: JSON lines off a terminal, readable lines on one; stdlib loggers routed through it.

A redaction processor replaces every known secret value wherever it appears
in an event, and the jira client's DEBUG body dumps are kept out.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "********"
_secrets: set[str] = set()
QUIET_LIBRARIES = (
    "urllib3",
    "jira",
    "pysnow",
    "requests_oauthlib",
    "alembic",
    "sqlalchemy",
    "apscheduler",
)


def register_secrets(values: Iterable[str]) -> None:
    """Secrets to scrub from every log line from now on."""
    _secrets.update(v for v in values if v and len(v) >= 4)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _secrets:
        return event
    return {k: _scrub(v) for k, v in event.items()}


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a line is logged, not as it was at set-up: an
    embedding program (or a test runner) that swaps stderr and closes the old one keeps
    getting the lines instead of "I/O operation on closed file"."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        """The stream is always the current stderr."""


def configure(level: str = "INFO", *, json: bool | None = None, stream: Any = None) -> None:
    """Configure once per process; logs go to stderr so stdout stays for command output."""
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    stream = stream or sys.stderr
    as_json = (not stream.isatty()) if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LIBRARIES:
        # Library DEBUG output can carry response bodies (the jira client dumps them).
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
