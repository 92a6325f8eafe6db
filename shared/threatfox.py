"""ThreatFox ``get_iocs`` client: the envelope, every ``query_status``, bounded retries.

The retry machinery here (``RetryPolicy``, ``TransientFailure``, ``send``,
``check_status``, ``retry_transient``) is shared with ``shared.exports`` so both
ThreatFox downloads fail and retry the same way.

Outcomes, checked in the order the reference prescribes (HTTP status, JSON
decodes, top level is an object, ``query_status``, type of ``data``):

- ``ok`` with a list: a ``FeedResult`` holding every element of ``data``. Elements
  that are not objects are passed through untouched so that
  ``shared.normalize.normalize_record`` rejects and counts them (``not_an_object``):
  rejections are counted in one place.
- ``ok`` with anything but a list: ``ThreatFoxError`` (a broken contract, not a
  transient fault; a string is never iterated).
- ``no_result``, ``no_results``, ``unknown_ioc_id``: an empty feed, status
  ``"no_result"``.
- caller-error statuses: ``ThreatFoxRequestError`` naming the parameter; auth
  statuses and HTTP 401/402/403: ``ThreatFoxAuthError`` naming the setting. Never
  retried.
- any other status: ``ThreatFoxError`` with the status; never read as empty.
- HTTP 408, 429, 5xx, a body that is not JSON, timeouts and connection errors:
  retried with jittered exponential backoff (or ``Retry-After``), bounded in
  attempts and in total time, then ``ThreatFoxUnavailableError``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

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
    ThreatFoxError,
    ThreatFoxRequestError,
    ThreatFoxUnavailableError,
)

__all__ = [
    "FeedResult",
    "RetryPolicy",
    "ThreatFoxClient",
    "TransientFailure",
    "check_status",
    "parse_retry_after",
    "retry_transient",
    "send",
]

logger = logging.getLogger(__name__)

AUTH_KEY_SETTING = "THREATFOX_AUTH_KEY"
MIN_DAYS = 1
MAX_DAYS = 7

NO_DATA_STATUSES = frozenset({"no_result", "no_results", "unknown_ioc_id"})
AUTH_STATUSES = frozenset(
    {
        "unknown_auth_key",
        "unauthorized",
        "no_api_key",
        "auth_key_required",
        "user_blacklisted",
    }
)
# Caller-error status -> the request parameter it complains about.
CALLER_ERROR_PARAMETERS = {
    "illegal_days": "days",
    "illegal_search_term": "search_term",
    "illegl_hash": "hash",
    "illegal_hash": "hash",
    "illegal_ioc_id": "id",
    "illegal_tag": "tag",
    "illegal_malware": "malware",
    "unknown_operation": "query",
    "http_post_expected": "HTTP method (POST expected)",
}
AUTH_HTTP_STATUSES = frozenset({401, 402, 403})
RETRYABLE_HTTP_STATUSES = frozenset({408, 429})
# Longest status text quoted back in an error message.
QUOTE_LIMIT = 60

_T = TypeVar("_T")


@dataclass(frozen=True)
class FeedResult:
    """What one ``get_iocs`` call returned.

    Attributes
    ----------
    status : str
        ``"ok"`` or ``"no_result"``.
    records : list
        Every element of ``data`` in order; normally objects, anything else is left
        for ``normalize_record`` to reject.
    attempts : int
        HTTP attempts made, retries included.
    days : int
        The window asked for.
    """

    status: str
    records: list[Any]
    attempts: int
    days: int


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


def _content_type(response: httpx.Response) -> str:
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
        reason = f"HTTP {code} (content type {_content_type(response)})"
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


def _check_days(days: object) -> int:
    # bool is an int subclass; True would be sent as the JSON literal true.
    if isinstance(days, bool) or not isinstance(days, int):
        kind = type(days).__name__
        message = f"days must be an integer {MIN_DAYS}-{MAX_DAYS}, not a {kind}"
        raise ThreatFoxRequestError(message)
    if not MIN_DAYS <= days <= MAX_DAYS:
        message = f"days must be an integer {MIN_DAYS}-{MAX_DAYS}, not {days}"
        raise ThreatFoxRequestError(message)
    return days


def _check_auth_key(auth_key: str) -> None:
    # An empty or non-ASCII key cannot work; httpx's own error could quote it.
    if not auth_key.strip() or not auth_key.isascii() or not auth_key.isprintable():
        message = (
            "the Auth-Key is empty or not printable ASCII; "
            f"check the {AUTH_KEY_SETTING} setting"
        )
        raise ThreatFoxAuthError(message)


def _decode_object(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = json.loads(response.content)
    except ValueError:
        # HTML error pages and cut-off bodies: the body itself is never quoted.
        reason = (
            f"HTTP {response.status_code} with a body that is not JSON "
            f"(content type {_content_type(response)}, {len(response.content)} bytes)"
        )
        raise TransientFailure(reason) from None
    if not isinstance(payload, dict):
        message = f"ThreatFox answered a JSON {type(payload).__name__}, not an object"
        raise ThreatFoxError(message)
    return payload


def _quote(text: str) -> str:
    return repr(text[:QUOTE_LIMIT])


def _read_envelope(payload: dict[str, Any], days: int, attempts: int) -> FeedResult:
    status = payload.get("query_status")
    data = payload.get("data")
    if not isinstance(status, str):
        kind = type(status).__name__
        message = f"ThreatFox answered without a query_status string (got {kind})"
        raise ThreatFoxError(message)

    if status == "ok":
        if not isinstance(data, list):
            kind = type(data).__name__
            message = (
                "ThreatFox answered query_status 'ok' with data of type "
                f"{kind}, expected a list"
            )
            raise ThreatFoxError(message)
        return FeedResult(status="ok", records=data, attempts=attempts, days=days)

    if status in NO_DATA_STATUSES:
        return FeedResult(status="no_result", records=[], attempts=attempts, days=days)

    if status in AUTH_STATUSES:
        message = (
            f"ThreatFox refused the Auth-Key (query_status {status!r}); "
            f"check the {AUTH_KEY_SETTING} setting"
        )
        raise ThreatFoxAuthError(message)

    parameter = CALLER_ERROR_PARAMETERS.get(status)
    if parameter is not None:
        message = (
            f"ThreatFox rejected our request (query_status {status!r}): "
            f"parameter {parameter}"
        )
        if parameter == "days":
            message += f" was {days}"
        raise ThreatFoxRequestError(message, query_status=status)

    message = (
        f"ThreatFox answered an unknown query_status {_quote(status)}; "
        "not read as an empty feed"
    )
    raise ThreatFoxError(message)


class ThreatFoxClient:
    """Client for the ThreatFox API's ``get_iocs`` query.

    Parameters
    ----------
    api_url : str
        The API endpoint (``THREATFOX_API_URL``).
    auth_key : str
        The Auth-Key, sent as a header on every request; never logged or shown.
    timeout_seconds : float
        HTTP timeout of one attempt.
    transport : httpx.BaseTransport, optional
        Test seam (``httpx.MockTransport``).
    max_attempts, max_total_seconds : int, float
        Retry bounds; see ``RetryPolicy``.
    sleep, clock : callable
        Injected by tests to run retries instantly on a fake clock.
    """

    def __init__(
        self,
        api_url: str,
        auth_key: str,
        *,
        timeout_seconds: float = 60,
        transport: httpx.BaseTransport | None = None,
        max_attempts: int = 5,
        max_total_seconds: float = 120,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_auth_key(auth_key)
        self._api_url = api_url
        self._auth_key = auth_key
        self._policy = RetryPolicy(
            max_attempts=max_attempts,
            max_total_seconds=max_total_seconds,
            sleep=sleep,
            clock=clock,
        )
        self._http = httpx.Client(timeout=timeout_seconds, transport=transport)

    def __repr__(self) -> str:
        """Show the endpoint only, never the key."""
        return f"ThreatFoxClient(api_url={self._api_url!r})"

    def __enter__(self) -> ThreatFoxClient:
        """Return the client itself."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the HTTP connections."""
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def get_iocs(self, days: int) -> FeedResult:
        """Fetch the IOCs first seen in the last ``days`` days.

        Parameters
        ----------
        days : int
            Window, an integer 1-7 (checked before anything is sent).

        Returns
        -------
        FeedResult
            ``ok`` with the records, or ``no_result`` with none.

        Raises
        ------
        ThreatFoxRequestError, ThreatFoxAuthError, ThreatFoxUnavailableError,
        ThreatFoxError
            As the module docstring lists.
        """
        days = _check_days(days)
        body = {"query": "get_iocs", "days": days}

        payload, attempts = retry_transient(
            lambda: self._post(body), policy=self._policy, target="ThreatFox get_iocs"
        )
        result = _read_envelope(payload, days, attempts)

        logger.info(
            "ThreatFox get_iocs days=%d: query_status=%s, %d records, %d attempt(s)",
            days,
            payload.get("query_status"),
            len(result.records),
            attempts,
        )
        return result

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        # Every parameter travels in the JSON body; only the key is a header.
        request = self._http.build_request(
            "POST", self._api_url, json=body, headers={"Auth-Key": self._auth_key}
        )
        logger.debug("POST %s query=%s", self._api_url, body["query"])

        response = send(self._http, request)
        check_status(response, "ThreatFox API")
        return _decode_object(response)
