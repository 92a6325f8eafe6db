"""ThreatFox ``get_iocs`` client: the envelope, every ``query_status``, bounded retries.

The retry machinery (``shared.http_retry``) is shared with ``shared.exports`` so
both ThreatFox downloads fail and retry the same way.

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
from typing import Any

import httpx

from shared.errors import (
    ThreatFoxAuthError,
    ThreatFoxError,
    ThreatFoxRequestError,
)
from shared.http_retry import (
    RetryPolicy,
    TransientFailure,
    check_status,
    content_type,
    retry_transient,
    send,
)

__all__ = ["CALLER_ERROR_PARAMETERS", "FeedResult", "ThreatFoxClient"]

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
# Longest status text quoted back in an error message.
QUOTE_LIMIT = 60


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
            f"(content type {content_type(response)}, {len(response.content)} bytes)"
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
