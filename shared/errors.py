"""Errors raised by the sync, in one tree.

::

    SyncError
    ├── ConfigError            a setting is missing or invalid; fix the app settings
    ├── ThreatFoxError         the feed could not be read
    │   ├── ThreatFoxAuthError     the Auth-Key was refused (never retried)
    │   ├── ThreatFoxRequestError  ThreatFox rejected our request (a bug; never retried)
    │   └── ThreatFoxUnavailableError  5xx, HTML, timeouts, truncated JSON (after retries)
    ├── SentinelError(status_code, body)   the management API refused or failed
    └── SyncLockedError        another sync holds the lock

Messages never carry the Auth-Key, a token or an export URL: build them from
setting names and redacted values only.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "SentinelError",
    "SyncError",
    "SyncLockedError",
    "ThreatFoxAuthError",
    "ThreatFoxError",
    "ThreatFoxRequestError",
    "ThreatFoxUnavailableError",
]


class SyncError(Exception):
    """Root of every error the sync raises on purpose."""


class ConfigError(SyncError):
    """A setting is missing or invalid."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class ThreatFoxError(SyncError):
    """The ThreatFox feed could not be read."""


class ThreatFoxAuthError(ThreatFoxError):
    """ThreatFox refused the Auth-Key: a configuration error, never retried."""


class ThreatFoxRequestError(ThreatFoxError):
    """ThreatFox rejected the request itself (for example ``illegal_days``)."""

    def __init__(self, message: str, *, query_status: str | None = None) -> None:
        super().__init__(message)
        self.query_status = query_status


class ThreatFoxUnavailableError(ThreatFoxError):
    """ThreatFox kept failing (5xx, HTML, timeouts, bad JSON) after the retries."""


class SentinelError(SyncError):
    """The Sentinel management API refused or failed a call."""

    def __init__(
        self, message: str, *, status_code: int | None = None, body: str = ""
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class SyncLockedError(SyncError):
    """Another sync holds the lock; ``started_at`` says since when."""

    def __init__(self, message: str, *, started_at: str | None = None) -> None:
        super().__init__(message)
        self.started_at = started_at
