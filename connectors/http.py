"""requests.Session factory: default timeouts and one bounded retry layer for clients without one."""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from connectors.base import ConnectionParams
from connectors.oauth import OAuthCredentials, OAuthPasswordAuth

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


class _BoundedRetry(Retry):
    """Retry-After is honoured up to the backoff cap: an instance asking for an hour (rate
    limits are per hour) would otherwise hold the stream's lock asleep; past the cap the
    retries run out, the run fails naming the 429, and the next run resumes at the cursor."""

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), MAX_BACKOFF_SECONDS)


def retry_policy(max_retries: int) -> Retry:
    """Idempotent GETs only; 429 and 5xx retried, honouring Retry-After; backoff capped."""
    return _BoundedRetry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        backoff_factor=0.5,
        backoff_max=MAX_BACKOFF_SECONDS,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD", "POST"}),  # POST: only the token endpoint
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def _plain_session(params: ConnectionParams, user_agent: str) -> requests.Session:
    session = requests.Session()
    adapter = _TimeoutAdapter(params.timeout_seconds, max_retries=retry_policy(params.max_retries))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = params.verify_tls
    session.headers["User-Agent"] = user_agent
    return session


def build_session(
    params: ConnectionParams, *, user_agent: str = "itbsc", oauth_token_url: str | None = None
) -> requests.Session:
    """A session with the configured auth, TLS verification and one retry layer.

    With ``params.auth == "oauth"`` requests carry a bearer token obtained from
    ``oauth_token_url`` by the password grant and refreshed before it expires.
    """
    session = _plain_session(params, user_agent)
    if params.auth == "oauth":
        if not (oauth_token_url and params.client_id and params.client_secret):
            raise ValueError("OAuth needs a token URL, a client_id and a client secret")
        if not (params.username and params.password):
            raise ValueError("the OAuth password grant needs a username and a password")
        credentials = OAuthCredentials(
            token_url=oauth_token_url,
            client_id=params.client_id,
            client_secret=params.client_secret,
            username=params.username,
            password=params.password,
        )
        session.auth = OAuthPasswordAuth(credentials, _plain_session(params, user_agent))
    elif params.username and params.password:
        session.auth = (params.username, params.password.reveal())
    return session
