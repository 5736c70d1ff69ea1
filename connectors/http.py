"""requests.Session factory: default timeouts and one bounded retry layer for clients without one."""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from connectors.base import ConnectionParams

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF_SECONDS = 30.0


class _TimeoutAdapter(HTTPAdapter):
    """Applies a default timeout to every request; requests itself has none."""

    def __init__(self, timeout: float, **kwargs: Any) -> None:
        self._timeout = timeout
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


def retry_policy(max_retries: int) -> Retry:
    """Idempotent GETs only; 429 and 5xx retried, honouring Retry-After; backoff capped."""
    return Retry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        backoff_factor=0.5,
        backoff_max=MAX_BACKOFF_SECONDS,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def build_session(params: ConnectionParams, *, user_agent: str = "itbsc") -> requests.Session:
    """A session with basic auth (when given), TLS verification as configured and retries."""
    session = requests.Session()
    adapter = _TimeoutAdapter(params.timeout_seconds, max_retries=retry_policy(params.max_retries))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = params.verify_tls
    session.headers["User-Agent"] = user_agent
    if params.username and params.password:
        session.auth = (params.username, params.password.reveal())
    return session
