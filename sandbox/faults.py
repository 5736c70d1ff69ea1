"""Switchable faults of a sandbox instance: what real instances and networks do to a sync.

A fault fires on API requests that match it (all list requests, or those of
one table), skipping the first ``after`` of them and firing ``times`` times,
so a test can say "the third page gets a 429, twice" and know exactly what
happened. ``fired`` counts what it did.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
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


class FaultyHandler(BaseHTTPRequestHandler):
    """What both emulators do to a request a fault fires on; each supplies its error envelope."""

    def fault_answer(self, kind: str, fault: Fault) -> None:
        """Answer a rate limit, a server error (or an emulator's own kind) in the API's envelope."""
        raise NotImplementedError

    def inject(self, fault: Fault) -> bool:
        """Apply ``fault``; True when the request is answered (or dropped) by it."""
        if fault.kind == "slow":
            time.sleep(fault.seconds)
            return False
        if fault.kind in ("truncated", "cut_short"):
            return False  # the answer is built normally, then cut (send_cut)
        if fault.kind == "malformed":
            self._send_bytes(503, HTML_ERROR_PAGE, content_type="text/html")
        elif fault.kind == "hang":
            time.sleep(fault.seconds)
            self.drop(reset=False)
        elif fault.kind == "reset":
            self.drop(reset=True)
        else:
            self.fault_answer(fault.kind, fault)
        return True

    def drop(self, *, reset: bool) -> None:
        """Close the connection without an answer; with ``reset`` the peer sees a TCP RST."""
        self.close_connection = True
        try:
            if reset:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()

    def _send_bytes(
        self,
        status: int,
        payload: bytes,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json;charset=UTF-8",
    ) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def send_cut(self, payload: bytes, headers: Mapping[str, str], *, promise_all: bool) -> None:
        """Half the body: either declared as such (bad JSON) or promised whole (connection cut)."""
        half = payload[: max(1, len(payload) // 2)]
        self.send_response(200, "OK")
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload) if promise_all else len(half)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(half)
        if promise_all:
            self.wfile.flush()
            self.drop(reset=False)
