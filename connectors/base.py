"""The contract between a source connector and the daemon that drives it.

A connector knows how to page plain source dicts out of one system,
incrementally and safely. It never computes a metric and never touches the
database: it yields :class:`Page` objects, each with the cursor the daemon may
persist once that page is committed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

Cursor = dict[str, str]
"""Opaque, JSON-serialisable resume point of one stream (the connector's own format)."""


class Secret:
    """A credential that never shows itself in a repr, a log line or an error."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class ConnectionParams:
    """Everything a connector needs to reach one configured source."""

    name: str
    url: str
    username: str | None = None
    password: Secret | None = None
    page_size: int = 1000
    timeout_seconds: float = 60.0
    verify_tls: bool = True
    max_retries: int = 5
    auth: str = "basic"  # "basic" or "oauth" (password grant; token kept in memory only)
    client_id: str | None = None
    client_secret: Secret | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RawRecord:
    """One record exactly as the source returned it, with its identity and version."""

    source_id: str
    updated_at: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class Page:
    """A batch of records the daemon commits in one transaction.

    ``cursor`` is where to resume once this page is committed; ``None`` means
    the stream cannot be resumed mid-way from this page (the cursor then moves
    only with the final page). ``total`` is the source's own count of what is
    left to read from this page on (this page included) when it tells us, for
    progress reporting.
    """

    records: list[RawRecord]
    cursor: Cursor | None
    total: int | None = None


@dataclass(frozen=True)
class StreamSpec:
    """A stream declared in a few lines: where it lives and how it is keyed and ordered."""

    name: str
    table: str
    primary_key: str
    cursor_field: str
    required_fields: tuple[str, ...] = ()


class Source(ABC):
    """A configured connection to one source; one instance per sync run."""

    kind: ClassVar[str]
    streams: ClassVar[Mapping[str, StreamSpec]]

    def __init__(self, params: ConnectionParams) -> None:
        self.params = params

    @abstractmethod
    def read(
        self,
        stream: str,
        *,
        fields: Sequence[str],
        cursor: Cursor | None = None,
        since: datetime | None = None,
    ) -> Iterator[Page]:
        """Yield pages of ``stream`` changed after ``cursor`` (or ``since``; neither = all)."""

    def list_ids(self, stream: str) -> Iterator[list[str]]:
        """Yield batches of every id the source holds in ``stream`` now (for the deletion census)."""
        raise NotImplementedError(f"{self.kind} sources cannot list ids")

    def read_ids(self, stream: str, ids: Sequence[str], *, fields: Sequence[str]) -> Iterator[Page]:
        """Yield pages holding the named records (those still visible); ``cursor`` is None."""
        raise NotImplementedError(f"{self.kind} sources cannot fetch records by id")

    @abstractmethod
    def check(self) -> None:
        """Make one cheap authenticated request; raise a SourceError if it fails."""

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing
        """Release connections."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
