"""Bounded retries for abuse.ch downloads (the API and the keyed exports).

Both ThreatFox calls fail and retry the same way: HTTP 408, 429 and 5xx, bodies
that are not JSON, timeouts and connection errors are transient and retried
with jittered exponential backoff (or the server's ``Retry-After``), bounded in
attempts and in total time; 401/402/403 are configuration errors and never
retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from shared.errors import (
    ThreatFoxAuthError,
    ThreatFoxRequestError,
    ThreatFoxUnavailableError,
)

__all__ = [
    "AUTH_HTTP_STATUSES",
    "RETRYABLE_HTTP_STATUSES",
    "RetryPolicy",
    "TransientFailure",
    "check_status",
    "content_type",
    "parse_retry_after",
    "retry_transient",
    "send",
]

logger = logging.getLogger(__name__)

AUTH_KEY_SETTING = "THREATFOX_AUTH_KEY"
AUTH_HTTP_STATUSES = frozenset({401, 402, 403})
RETRYABLE_HTTP_STATUSES = frozenset({408, 429})

_T = TypeVar("_T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a ThreatFox download is retried.

    Total time bounds the sleeps: no retry starts when its wait would end past
    ``max_total_seconds`` from the first attempt. One attempt may still run up to
    its HTTP timeout, so the worst case is ``max_total_seconds`` plus one timeout.
    """

    max_attempts: int = 5
    max_total_seconds: float = 120
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    backoff_max_seconds: float = 30
    retry_after_cap_seconds: float = 60

    def __post_init__(self) -> None:
        """Refuse bounds that would never retry or never stop."""
        if self.max_attempts < 1:
            message = f"max_attempts must be at least 1, not {self.max_attempts}"
            raise ValueError(message)
        if self.max_total_seconds <= 0:
            message = (
                f"max_total_seconds must be positive, not {self.max_total_seconds}"
            )
            raise ValueError(message)


class TransientFailure(Exception):
    """One attempt failed in a way worth retrying; ``reason`` carries no secrets."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _StopWhenOutOfTime(stop_base):
    """Stop when the next wait would end past the time budget (injectable clock)."""

    def __init__(self, budget_seconds: float, clock: Callable[[], float]) -> None:
        self._budget_seconds = budget_seconds
        self._clock = clock
        self._started = clock()

    def __call__(self, retry_state: RetryCallState) -> bool:
        elapsed = self._clock() - self._started
        return elapsed + retry_state.upcoming_sleep > self._budget_seconds


def content_type(response: httpx.Response) -> str:
    """Return the response's content type for messages (never its body)."""
    return response.headers.get("content-type", "none") or "none"


def parse_retry_after(
    value: str | None, *, now: datetime | None = None
) -> float | None:
    """Read a ``Retry-After`` header as seconds to wait.

    Parameters
    ----------
    value : str or None
        Delay in seconds or an HTTP-date.
    now : datetime, optional
        The current time, for HTTP-dates (tests pass a fixed one).

    Returns
    -------
    float or None
        Seconds, never negative; None when the header is absent or unreadable.
    """
    if value is None or not value.strip():
        return None

    text = value.strip()
    if text.isdigit():
        return float(text)

    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (moment - current).total_seconds())


def send(
    client: httpx.Client,
    request: httpx.Request,
    *,
    redact: Callable[[str], str] | None = None,
) -> httpx.Response:
    """Send one request, turning transport failures into ``TransientFailure``.

    Parameters
    ----------
    client : httpx.Client
        The client to send with.
    request : httpx.Request
        The built request.
    redact : callable, optional
        Applied to httpx's error text when the URL is a secret. When given, the
        httpx exception (which holds the request and its URL) is not chained.

    Returns
    -------
    httpx.Response
        The response, body read.
    """
    cause: Exception
    failure: Exception
    try:
        return client.send(request)
    except (
        httpx.UnsupportedProtocol,
        httpx.LocalProtocolError,
        httpx.TooManyRedirects,
    ) as exc:
        message = (
            f"request could not be sent ({type(exc).__name__}): {_scrub(exc, redact)}"
        )
        failure, cause = ThreatFoxRequestError(message), exc
    except (httpx.TransportError, httpx.DecodingError) as exc:
        reason = f"{type(exc).__name__}: {_scrub(exc, redact)}"
        failure, cause = TransientFailure(reason), exc

    # Raised outside the handlers so that, when the URL is a secret, the httpx
    # exception (which holds the request and its URL) is not even the context.
    raise failure from _cause(cause, redact)


def _cause(exc: Exception, redact: Callable[[str], str] | None) -> Exception | None:
    # httpx exceptions hold the request, URL included: keep them out of the chain
    # when the URL is a secret.
    return exc if redact is None else None


def _scrub(exc: Exception, redact: Callable[[str], str] | None) -> str:
    text = str(exc) or "no detail"
    return text if redact is None else redact(text)


def check_status(response: httpx.Response, target: str) -> None:
    """Map the HTTP status to an outcome: pass, retry, auth error or request error.

    Parameters
    ----------
    response : httpx.Response
        The answer.
    target : str
        What was asked, for messages (never a secret URL).
    """
    code = response.status_code
    if 200 <= code < 300:
        return

    if code in AUTH_HTTP_STATUSES:
        message = (
            f"{target} answered HTTP {code}: the Auth-Key is missing, unknown or "
            f"blocked; check the {AUTH_KEY_SETTING} setting"
        )
        raise ThreatFoxAuthError(message)

    if code in RETRYABLE_HTTP_STATUSES or code >= 500:
        reason = f"HTTP {code} (content type {content_type(response)})"
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise TransientFailure(reason, retry_after=retry_after)

    message = f"{target} refused the request with HTTP {code}; not retried"
    raise ThreatFoxRequestError(message)


def _wait_for(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_random_exponential(multiplier=1, max=policy.backoff_max_seconds)

    def wait(retry_state: RetryCallState) -> float:
        # The server's own Retry-After wins over our backoff, within a cap.
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, TransientFailure) and failure.retry_after is not None:
            return min(failure.retry_after, policy.retry_after_cap_seconds)
        return float(backoff(retry_state))

    return wait


def _last_reason(retry_state: RetryCallState) -> str:
    failure = retry_state.outcome.exception() if retry_state.outcome else None
    return failure.reason if isinstance(failure, TransientFailure) else "unknown"


def retry_transient(
    operation: Callable[[], _T], *, policy: RetryPolicy, target: str
) -> tuple[_T, int]:
    """Run ``operation``, retrying on ``TransientFailure`` within the policy's bounds.

    Parameters
    ----------
    operation : callable
        One attempt; raises ``TransientFailure`` for faults worth retrying.
    policy : RetryPolicy
        Attempts, time budget, sleep and clock.
    target : str
        What is fetched, for log lines and messages (never a secret URL).

    Returns
    -------
    tuple
        The operation's value and the number of attempts it took.

    Raises
    ------
    ThreatFoxUnavailableError
        When the attempts or the time budget ran out; the message holds the last
        reason (status and content type, or exception class), never a body.
    """
    started = policy.clock()

    def log_retry(retry_state: RetryCallState) -> None:
        logger.warning(
            "%s: attempt %d of %d failed (%s); retrying in %.1f s",
            target,
            retry_state.attempt_number,
            policy.max_attempts,
            _last_reason(retry_state),
            retry_state.upcoming_sleep,
        )

    retrying = Retrying(
        retry=retry_if_exception_type(TransientFailure),
        stop=stop_after_attempt(policy.max_attempts)
        | _StopWhenOutOfTime(policy.max_total_seconds, policy.clock),
        wait=_wait_for(policy),
        sleep=policy.sleep,
        before_sleep=log_retry,
        reraise=True,
    )
    attempts = 0

    def counted() -> _T:
        nonlocal attempts
        attempts += 1
        return operation()

    try:
        value = retrying(counted)
    except TransientFailure as failure:
        elapsed = policy.clock() - started
        message = (
            f"{target} is unavailable after {attempts} attempt(s) "
            f"over {elapsed:.0f} s; last failure: {failure.reason}"
        )
        raise ThreatFoxUnavailableError(message) from failure
    return value, attempts
