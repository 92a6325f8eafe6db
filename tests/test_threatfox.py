import json
import logging
from datetime import UTC, datetime
from email.utils import formatdate

import httpx
import pytest

from shared.errors import (
    ThreatFoxAuthError,
    ThreatFoxError,
    ThreatFoxRequestError,
    ThreatFoxUnavailableError,
)
from shared.http_retry import RetryPolicy, parse_retry_after
from shared.threatfox import CALLER_ERROR_PARAMETERS, FeedResult, ThreatFoxClient

API_URL = "https://threatfox.test/api/v1/"
AUTH_KEY = "k3y-SECRET-0123456789abcdef"
HTML_PAGE = (
    b"<html><body><h1>502 Bad Gateway</h1><p>nginx SECRET-PAGE</p></body></html>"
)
RECORD = {
    "id": "1700042",
    "ioc": "login-check.example.net",
    "ioc_type": "domain",
    "threat_type": "botnet_cc",
    "malware": "win.examplerat",
    "malware_printable": "ExampleRAT",
    "confidence_level": 75,
    "first_seen": "2026-11-30 08:15:02 UTC",
    "tags": ["c2"],
}


class FakeClock:
    """A monotonic clock that only moves when the client sleeps (or a test says)."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def envelope(status, data=None, http_status=200, headers=None):
    body = json.dumps({"query_status": status, "data": data}).encode()
    merged = {"content-type": "application/json", **(headers or {})}
    return httpx.Response(http_status, content=body, headers=merged)


def html(http_status, headers=None):
    merged = {"content-type": "text/html; charset=utf-8", **(headers or {})}
    return httpx.Response(http_status, content=HTML_PAGE, headers=merged)


class Script:
    """Answers requests from a list, one per attempt, and records every request."""

    def __init__(self, *answers, clock=None, seconds_per_request=0.0):
        self.answers = list(answers)
        self.requests = []
        self.clock = clock
        self.seconds_per_request = seconds_per_request

    def __call__(self, request):
        self.requests.append(request)
        if self.clock is not None:
            self.clock.now += self.seconds_per_request
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def make_client(script, clock=None, **kwargs):
    clock = clock or FakeClock()
    return ThreatFoxClient(
        API_URL,
        AUTH_KEY,
        transport=httpx.MockTransport(script),
        sleep=clock.sleep,
        clock=clock,
        **kwargs,
    )


def fetch(script, days=1, clock=None, **kwargs):
    with make_client(script, clock=clock, **kwargs) as client:
        return client.get_iocs(days)


def error_texts(error):
    """str and repr of an error and of everything chained to it."""
    texts = []
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        texts += [str(error), repr(error)]
        error = error.__cause__ or error.__context__
    return texts


def test_ok_feed_returns_every_record_and_sends_days_in_the_body():
    script = Script(envelope("ok", [RECORD, {**RECORD, "id": "1700043"}]))

    result = fetch(script, days=3)

    assert result == FeedResult(
        status="ok",
        records=[RECORD, {**RECORD, "id": "1700043"}],
        attempts=1,
        days=3,
    )
    (request,) = script.requests
    assert request.method == "POST"
    assert str(request.url) == API_URL
    assert request.url.query == b""
    assert json.loads(request.content) == {"query": "get_iocs", "days": 3}
    assert request.headers["Auth-Key"] == AUTH_KEY
    assert "days" not in {name.lower() for name in request.headers}


def test_days_is_sent_as_a_json_integer():
    script = Script(envelope("ok", []))

    fetch(script, days=7)

    assert b'"days":7' in script.requests[0].content.replace(b" ", b"")


def test_non_object_elements_are_passed_on_for_normalize_to_reject():
    script = Script(envelope("ok", [RECORD, "stray", 5, None, ["x"]]))

    result = fetch(script)

    assert result.records == [RECORD, "stray", 5, None, ["x"]]


@pytest.mark.parametrize(
    "data", [None, "Your search did not yield any results", {}, 5, True]
)
def test_ok_with_data_that_is_not_a_list_is_a_contract_error(data):
    script = Script(envelope("ok", data))

    with pytest.raises(ThreatFoxError, match="data of type") as caught:
        fetch(script)

    assert type(caught.value) is ThreatFoxError
    assert len(script.requests) == 1


@pytest.mark.parametrize("status", ["no_result", "no_results", "unknown_ioc_id"])
@pytest.mark.parametrize(
    "data", ["Your search did not yield any results", None, [], [RECORD], {}]
)
def test_no_result_statuses_give_an_empty_feed_whatever_data_holds(status, data):
    result = fetch(Script(envelope(status, data)), days=2)

    assert result == FeedResult(status="no_result", records=[], attempts=1, days=2)


def test_no_result_is_logged_once_at_info(caplog):
    caplog.set_level(logging.DEBUG, logger="shared.threatfox")

    fetch(Script(envelope("no_result", "nothing")))

    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert [r.getMessage() for r in infos] == [
        "ThreatFox get_iocs days=1: query_status=no_result, 0 records, 1 attempt(s)"
    ]


def test_ok_fetch_logs_one_info_line_with_counts(caplog):
    caplog.set_level(logging.INFO, logger="shared.threatfox")

    fetch(Script(envelope("ok", [RECORD, RECORD])), days=4)

    assert [r.getMessage() for r in caplog.records] == [
        "ThreatFox get_iocs days=4: query_status=ok, 2 records, 1 attempt(s)"
    ]


@pytest.mark.parametrize(
    ("status", "parameter"), sorted(CALLER_ERROR_PARAMETERS.items())
)
@pytest.mark.parametrize("data", ["Illegal value", None, [RECORD]])
def test_caller_error_statuses_name_the_parameter_and_are_not_retried(
    status, parameter, data
):
    script = Script(envelope(status, data))

    with pytest.raises(ThreatFoxRequestError) as caught:
        fetch(script)

    assert caught.value.query_status == status
    assert status in str(caught.value)
    assert f"parameter {parameter}" in str(caught.value)
    assert len(script.requests) == 1


def test_caller_error_status_list_matches_the_reference():
    assert set(CALLER_ERROR_PARAMETERS) == {
        "illegal_days",
        "illegal_search_term",
        "illegl_hash",
        "illegal_hash",
        "illegal_ioc_id",
        "illegal_tag",
        "illegal_malware",
        "unknown_operation",
        "http_post_expected",
    }


def test_illegal_days_says_which_value_was_sent():
    with pytest.raises(ThreatFoxRequestError, match="parameter days was 5"):
        fetch(Script(envelope("illegal_days", "bad days")), days=5)


@pytest.mark.parametrize(
    "status",
    [
        "unknown_auth_key",
        "unauthorized",
        "no_api_key",
        "auth_key_required",
        "user_blacklisted",
    ],
)
@pytest.mark.parametrize("data", ["Unknown Auth-Key", None, []])
def test_auth_statuses_name_the_setting_and_are_not_retried(status, data):
    script = Script(envelope(status, data))

    with pytest.raises(ThreatFoxAuthError) as caught:
        fetch(script)

    assert "THREATFOX_AUTH_KEY" in str(caught.value)
    assert status in str(caught.value)
    assert len(script.requests) == 1


@pytest.mark.parametrize("http_status", [401, 402, 403])
def test_http_auth_statuses_are_configuration_errors(http_status):
    script = Script(
        envelope("unknown_auth_key", "ratelimited", http_status=http_status)
    )

    with pytest.raises(ThreatFoxAuthError) as caught:
        fetch(script)

    assert f"HTTP {http_status}" in str(caught.value)
    assert "THREATFOX_AUTH_KEY" in str(caught.value)
    assert len(script.requests) == 1


@pytest.mark.parametrize("data", ["text", None, [], [RECORD]])
def test_unknown_status_is_an_error_never_an_empty_feed(data):
    script = Script(envelope("maintenance_mode", data))

    with pytest.raises(ThreatFoxError, match="unknown query_status 'maintenance_mode'"):
        fetch(script)

    assert len(script.requests) == 1


def test_an_unknown_status_is_quoted_shortened():
    with pytest.raises(ThreatFoxError) as caught:
        fetch(Script(envelope("x" * 500, None)))

    assert "x" * 60 in str(caught.value)
    assert "x" * 61 not in str(caught.value)


@pytest.mark.parametrize(
    "payload", [{"data": [RECORD]}, {"query_status": 1, "data": []}]
)
def test_missing_or_non_string_status_is_an_error(payload):
    response = httpx.Response(200, json=payload)

    with pytest.raises(ThreatFoxError, match="without a query_status string"):
        fetch(Script(response))


@pytest.mark.parametrize(
    ("payload", "kind"), [([RECORD], "list"), (None, "NoneType"), ("ok", "str")]
)
def test_top_level_that_is_not_an_object_is_an_error(payload, kind):
    script = Script(httpx.Response(200, content=json.dumps(payload).encode()))

    with pytest.raises(ThreatFoxError, match=f"a JSON {kind}, not an object"):
        fetch(script)

    assert len(script.requests) == 1


@pytest.mark.parametrize("http_status", [400, 404, 405, 410, 422])
def test_other_4xx_are_request_errors_not_retried(http_status):
    script = Script(html(http_status))

    with pytest.raises(ThreatFoxRequestError, match=f"HTTP {http_status}"):
        fetch(script)

    assert len(script.requests) == 1


def test_429_honours_retry_after_seconds():
    clock = FakeClock()
    script = Script(
        envelope("ok", None, http_status=429, headers={"Retry-After": "7"}),
        envelope("ok", [RECORD]),
    )

    result = fetch(script, clock=clock)

    assert clock.sleeps == [7.0]
    assert result.attempts == 2
    assert result.records == [RECORD]


def test_retry_after_as_an_http_date_is_honoured():
    clock = FakeClock()
    later = datetime.now(UTC).timestamp() + 30
    script = Script(
        html(503, headers={"Retry-After": formatdate(later, usegmt=True)}),
        envelope("ok", []),
    )

    fetch(script, clock=clock)

    (slept,) = clock.sleeps
    assert 25 <= slept <= 30


def test_retry_after_is_capped():
    clock = FakeClock()
    script = Script(
        envelope("ok", None, http_status=429, headers={"Retry-After": "3600"}),
        envelope("ok", []),
    )

    fetch(script, clock=clock, max_total_seconds=500)

    assert clock.sleeps == [60.0]


def test_parse_retry_after_reads_seconds_and_dates():
    now = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)

    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 0 ", now=now) == 0.0
    assert parse_retry_after("Tue, 01 Dec 2026 10:00:45 GMT", now=now) == 45.0
    assert parse_retry_after("Tue, 01 Dec 2026 09:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("-5", now=now) is None
    assert parse_retry_after("", now=now) is None
    assert parse_retry_after(None, now=now) is None


@pytest.mark.parametrize("http_status", [500, 502, 503, 504, 408])
def test_server_errors_with_html_are_retried_then_succeed(http_status, caplog):
    caplog.set_level(logging.WARNING, logger="shared.threatfox")
    clock = FakeClock()
    script = Script(html(http_status), envelope("ok", [RECORD]))

    result = fetch(script, clock=clock)

    assert result.attempts == 2
    assert len(clock.sleeps) == 1
    (warning,) = caplog.records
    assert (
        f"HTTP {http_status} (content type text/html; charset=utf-8)"
        in warning.getMessage()
    )
    assert "attempt 1 of 5" in warning.getMessage()


def test_backoff_is_jittered_exponential_and_bounded():
    clock = FakeClock()
    script = Script(html(503))

    with pytest.raises(ThreatFoxUnavailableError):
        fetch(script, clock=clock, max_attempts=5, max_total_seconds=10_000)

    assert len(clock.sleeps) == 4
    for attempt, slept in enumerate(clock.sleeps, start=1):
        assert 0 <= slept <= min(30, 2**attempt)


def test_200_with_html_is_retried_and_never_read_as_empty():
    clock = FakeClock()
    script = Script(html(200))

    with pytest.raises(ThreatFoxUnavailableError) as caught:
        fetch(script, clock=clock, max_attempts=3)

    message = str(caught.value)
    assert "3 attempt(s)" in message
    assert "HTTP 200 with a body that is not JSON (content type text/html" in message
    assert "SECRET-PAGE" not in message
    assert len(script.requests) == 3


def test_truncated_json_is_retried():
    cut = json.dumps({"query_status": "ok", "data": [RECORD]}).encode()[:40]
    script = Script(
        httpx.Response(200, content=cut, headers={"content-type": "application/json"}),
        envelope("ok", [RECORD]),
    )

    result = fetch(script)

    assert result.attempts == 2
    assert result.records == [RECORD]


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("peer closed"),
    ],
)
def test_timeouts_and_connection_errors_are_retried(failure):
    script = Script(failure, envelope("ok", [RECORD]))

    result = fetch(script)

    assert result.attempts == 2


def test_exhausted_connection_errors_name_the_exception_class():
    script = Script(httpx.ConnectError("All connection attempts failed"))

    with pytest.raises(ThreatFoxUnavailableError) as caught:
        fetch(script, max_attempts=2)

    assert "last failure: ConnectError: All connection attempts failed" in str(
        caught.value
    )
    assert isinstance(caught.value.__cause__.__cause__, httpx.ConnectError)


def test_attempts_are_bounded():
    clock = FakeClock()
    script = Script(html(502))

    with pytest.raises(ThreatFoxUnavailableError, match="after 4 attempt"):
        fetch(script, clock=clock, max_attempts=4, max_total_seconds=10_000)

    assert len(script.requests) == 4
    assert len(clock.sleeps) == 3


def test_total_time_is_bounded_by_slow_attempts():
    # Each attempt takes 50 s (a timeout); the budget of 120 s allows three.
    clock = FakeClock()
    script = Script(httpx.ReadTimeout("timed out"), clock=clock, seconds_per_request=50)

    with pytest.raises(ThreatFoxUnavailableError):
        fetch(script, clock=clock, max_attempts=10, max_total_seconds=120)

    # Attempts end near 50 s and 102-106 s (jittered waits of at most 2 s and
    # 4 s); after the third, at about 156 s, the budget is spent.
    assert len(script.requests) == 3
    assert len(clock.sleeps) == 2


def test_no_wait_is_started_that_would_end_past_the_budget():
    clock = FakeClock()
    script = Script(html(503, headers={"Retry-After": "60"}))

    with pytest.raises(ThreatFoxUnavailableError, match="after 2 attempt"):
        fetch(script, clock=clock, max_attempts=10, max_total_seconds=100)

    assert clock.sleeps == [60.0]


@pytest.mark.parametrize("days", [0, 8, -1, "1", True, False, 1.5, None, 3.0])
def test_days_outside_1_to_7_or_not_an_int_is_refused_before_sending(days):
    script = Script(envelope("ok", []))

    with pytest.raises(ThreatFoxRequestError, match="days must be an integer 1-7"):
        fetch(script, days=days)

    assert script.requests == []


@pytest.mark.parametrize("auth_key", ["", "   ", "kéy", "key\n"])
def test_unusable_auth_keys_are_refused_naming_the_setting(auth_key):
    with pytest.raises(ThreatFoxAuthError, match="THREATFOX_AUTH_KEY") as caught:
        ThreatFoxClient(API_URL, auth_key)

    assert auth_key.strip() == "" or auth_key.strip() not in str(caught.value)


@pytest.mark.parametrize(
    "answer",
    [
        envelope("unknown_auth_key", f"bad key {AUTH_KEY}"),
        envelope("ok", None, http_status=403),
        html(503),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("timed out"),
        envelope("illegal_days", None),
        envelope("surprise", None),
    ],
)
def test_the_auth_key_never_leaks_into_logs_or_errors(answer, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(Script(answer), max_attempts=2)

    with pytest.raises(ThreatFoxError) as caught:
        client.get_iocs(1)

    client.close()
    assert AUTH_KEY not in caplog.text
    assert AUTH_KEY not in repr(client)
    for text in error_texts(caught.value):
        assert AUTH_KEY not in text


def test_retry_policy_refuses_bounds_that_never_retry_or_never_stop():
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="max_total_seconds"):
        RetryPolicy(max_total_seconds=0)


def test_client_closes_its_connections_on_exit():
    with make_client(Script(envelope("ok", []))) as client:
        client.get_iocs(1)

    assert client._http.is_closed
