"""One error taxonomy for every connector, so the daemon reacts the same way to all sources."""

from __future__ import annotations


class SourceError(Exception):
    """A source could not be read. The message names the source and what to check."""

    retryable = False


class SourceAuthError(SourceError):
    """401/403: credentials or rights are wrong; retrying will not help."""


class TransientSourceError(SourceError):
    """429, 5xx, timeouts, resets that outlasted the retry budget; a later run may succeed."""

    retryable = True


class FatalSourceError(SourceError):
    """Any other refusal (bad table, bad query): fix the configuration."""


class MalformedResponseError(SourceError):
    """The source answered with something that is not the documented shape."""

    retryable = True
