"""OAuth 2 resource-owner password grant with refresh, as ServiceNow's ``/oauth_token.do`` offers it.

The tokens live in this object only: never on disk, in the database, a log
line or an error message. A token is refreshed shortly before it expires and
once more when the server answers 401 anyway (revoked, clock skew, a restart
of the instance's node), then the request is replayed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from requests.auth import AuthBase

from connectors.base import Secret
from connectors.errors import SourceAuthError, TransientSourceError

REFRESH_MARGIN_SECONDS = 60.0


@dataclass(frozen=True)
class OAuthCredentials:
    token_url: str
    client_id: str
    client_secret: Secret
    username: str
    password: Secret


class OAuthPasswordAuth(AuthBase):
    """``requests`` auth that adds ``Authorization: Bearer`` and keeps the token fresh."""

    def __init__(self, credentials: OAuthCredentials, token_session: requests.Session) -> None:
        self._credentials = credentials
        self._session = token_session  # no auth of its own; retries and timeouts configured
        self._lock = threading.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._expires_at = 0.0
        self.grants = 0  # how many tokens were obtained (password + refresh), for tests and logs

    def __repr__(self) -> str:
        return f"OAuthPasswordAuth(client_id={self._credentials.client_id!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token()}"
        request.register_hook("response", self._retry_on_401)  # type: ignore[no-untyped-call]
        return request

    def _token(self, *, force: bool = False) -> str:
        with self._lock:
            fresh = time.monotonic() < self._expires_at - REFRESH_MARGIN_SECONDS
            if self._access and fresh and not force:
                return self._access
            self._obtain()
            assert self._access is not None
            return self._access

    def _obtain(self) -> None:
        """Refresh when we hold a refresh token; fall back to the password grant."""
        if self._refresh:
            try:
                self._grant({"grant_type": "refresh_token", "refresh_token": self._refresh})
                return
            except SourceAuthError:
                self._refresh = None  # expired or revoked: a new password grant may still work
        creds = self._credentials
        self._grant(
            {
                "grant_type": "password",
                "username": creds.username,
                "password": creds.password.reveal(),
            }
        )

    def _grant(self, form: dict[str, str]) -> None:
        creds = self._credentials
        body = {**form, "client_id": creds.client_id, "client_secret": creds.client_secret.reveal()}
        where = f"OAuth token endpoint {creds.token_url} ({form['grant_type']} grant)"
        try:
            response = self._session.post(creds.token_url, data=body)
        except requests.RequestException as exc:
            raise TransientSourceError(f"{where}: cannot connect ({type(exc).__name__})") from None
        if response.status_code in (400, 401, 403):
            raise SourceAuthError(
                f"{where}: refused (HTTP {response.status_code}) — check client_id, the client "
                "secret variable, the username and the password variable"
            )
        if response.status_code != 200:
            raise TransientSourceError(f"{where}: HTTP {response.status_code}")
        try:
            payload: dict[str, Any] = response.json()
            access = str(payload["access_token"])
        except (ValueError, KeyError, TypeError):
            raise SourceAuthError(f"{where}: the reply holds no access_token") from None
        self._access = access
        self._refresh = str(payload.get("refresh_token") or "") or None
        self._expires_at = time.monotonic() + float(payload.get("expires_in") or 1799)
        self.grants += 1

    def _retry_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        """Replay a request once with a new token when the server no longer accepts ours."""
        if response.status_code != 401 or getattr(response.request, "_itbsc_replayed", False):
            return response
        sent_with = response.request.headers.get("Authorization", "")
        with self._lock:
            stale = sent_with == f"Bearer {self._access}"
        token = self._token(force=stale)
        response.content  # noqa: B018 - drain so the connection can be reused
        response.close()
        retry = response.request.copy()
        retry.headers["Authorization"] = f"Bearer {token}"
        retry._itbsc_replayed = True  # type: ignore[attr-defined]
        replayed = response.connection.send(retry, **kwargs)
        replayed.history.append(response)
        replayed.request = retry
        return replayed
