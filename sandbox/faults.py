"""Switchable faults of a sandbox instance: what real instances and networks do to a sync.

A fault fires on API requests that match it (all list requests, or those of
one table), skipping the first ``after`` of them and firing ``times`` times,
so a test can say "the third page gets a 429, twice" and know exactly what
happened. ``fired`` counts what it did.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal[
    "rate_limit",  # 429 + Retry-After + X-RateLimit-* headers + the error envelope
    "server_error",  # 5xx (``status``) with the error envelope
    "slow",  # answer normally after ``seconds``
    "hang",  # say nothing for ``seconds``, then drop the connection
    "reset",  # drop the connection with a TCP reset before answering
    "malformed",  # 200 with an HTML error page instead of JSON
    "truncated",  # 200 with the JSON cut in half (Content-Length matching the cut body)
    "cut_short",  # headers promise the whole body, the connection closes half-way
    "transaction_cancelled",  # 200 + "Transaction cancelled" envelope when the page is large
]


@dataclass
class Fault:
    kind: FaultKind
    times: int = 1
    after: int = 0
    table: str | None = None
    status: int = 503
    retry_after: int = 1
    seconds: float = 0.0
    max_limit: int = 100  # transaction_cancelled: pages above this size are cancelled
    fired: int = 0
    _seen: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fires(self, table: str, limit: int) -> bool:
        """Whether this request gets the fault (counts the request either way)."""
        if self.table is not None and table != self.table:
            return False
        if self.kind == "transaction_cancelled" and limit <= self.max_limit:
            return False
        with self._lock:
            self._seen += 1
            if self._seen <= self.after or self.fired >= self.times:
                return False
            self.fired += 1
            return True


HTML_ERROR_PAGE = (
    b"<html><head><title>ServiceNow - Error</title></head><body><h1>Service Unavailable</h1>"
    b"<p>The instance is undergoing maintenance. Please try again later.</p></body></html>"
)
