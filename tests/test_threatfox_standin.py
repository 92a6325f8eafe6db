"""The ThreatFox client and export fetcher against the stand-in, over real HTTP."""

import json
import logging
from pathlib import Path

import pytest

from shared.errors import (
    ThreatFoxAuthError,
    ThreatFoxError,
    ThreatFoxUnavailableError,
)
from shared.exports import fetch_export
from shared.threatfox import ThreatFoxClient
from standin.faults import (
    auth_failure,
    cut_body,
    delay,
    drop_connection,
    envelope,
    http_error,
    truncated_json,
)
from standin.server import StandIn

KEY = "standin-k3y-NOT-FOR-LOGS"
EXPORTS = Path(__file__).parent / "data" / "exports"
RECORD = {
    "id": "1700042",
    "ioc": "login-check.example.net",
    "ioc_type": "domain",
    "threat_type": "botnet_cc",
    "malware": "win.examplerat",
    "malware_printable": "ExampleRAT",
    "malware_alias": None,
    "confidence_level": 75,
    "first_seen": "2026-11-30 08:15:02 UTC",
    "last_seen": None,
    "reference": None,
    "reporter": "example_reporter",
    "tags": ["c2"],
}


@pytest.fixture(scope="module")
def standin():
    with StandIn(auth_key=KEY) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(standin):
    standin.reset()
    standin.threatfox.set_records([RECORD])


class Sleeps(list):
    """Records waits instead of sleeping."""

    def __call__(self, seconds):
        self.append(seconds)


def get_iocs(standin, key=KEY, sleeps=None, **kwargs):
    kwargs.setdefault("timeout_seconds", 5)
    with ThreatFoxClient(
        standin.threatfox_url,
        key,
        sleep=sleeps if sleeps is not None else Sleeps(),
        **kwargs,
    ) as client:
        return client.get_iocs(1)


def test_a_clean_fetch_sends_the_key_as_a_header_and_days_in_the_body(standin):
    result = get_iocs(standin)

    assert (result.status, result.records, result.attempts) == ("ok", [RECORD], 1)
    assert standin.threatfox.last_headers["auth-key"] == KEY
    assert json.loads(standin.threatfox.last_body) == {"query": "get_iocs", "days": 1}


def test_an_empty_feed_is_no_result(standin):
    standin.threatfox.set_records([])

    result = get_iocs(standin)

    assert (result.status, result.records) == ("no_result", [])


def test_an_html_502_is_retried(standin):
    standin.threatfox.faults.push(http_error(502, on="get_iocs"))
    sleeps = Sleeps()

    result = get_iocs(standin, sleeps=sleeps)

    assert (result.records, result.attempts, len(sleeps)) == ([RECORD], 2, 1)


def test_a_429_retry_after_is_honoured(standin):
    standin.threatfox.faults.push(http_error(429, retry_after=9, on="get_iocs"))
    sleeps = Sleeps()

    result = get_iocs(standin, sleeps=sleeps)

    assert sleeps == [9.0]
    assert result.attempts == 2


def test_a_delay_past_the_timeout_is_retried(standin):
    standin.threatfox.faults.push(delay(1.0, on="get_iocs"))

    result = get_iocs(standin, timeout_seconds=0.2)

    assert (result.records, result.attempts) == ([RECORD], 2)


@pytest.mark.parametrize("fault", [truncated_json(), cut_body(), drop_connection()])
def test_damaged_answers_are_retried(standin, fault):
    standin.threatfox.faults.push(fault)

    result = get_iocs(standin)

    assert (result.records, result.attempts) == ([RECORD], 2)
    assert standin.threatfox.requests == 2


def test_persistent_failure_ends_in_a_clear_error(standin):
    standin.threatfox.faults.push(*[http_error(503, on="get_iocs")] * 3)

    with pytest.raises(ThreatFoxUnavailableError) as caught:
        get_iocs(standin, max_attempts=3)

    assert "after 3 attempt(s)" in str(caught.value)
    assert "HTTP 503 (content type text/html" in str(caught.value)
    assert standin.threatfox.requests == 3


def test_a_wrong_key_is_an_auth_error_and_not_retried(standin):
    with pytest.raises(ThreatFoxAuthError, match="THREATFOX_AUTH_KEY"):
        get_iocs(standin, key="some-other-key")

    assert standin.threatfox.requests == 1


@pytest.mark.parametrize(
    ("status", "query_status"), [(403, "unknown_auth_key"), (200, "user_blacklisted")]
)
def test_injected_auth_failures_are_auth_errors(standin, status, query_status):
    standin.threatfox.faults.push(auth_failure(status, query_status, on="get_iocs"))

    with pytest.raises(ThreatFoxAuthError):
        get_iocs(standin)

    assert standin.threatfox.requests == 1


def test_ok_with_a_string_is_a_contract_error_not_a_crash(standin):
    standin.threatfox.faults.push(envelope({"query_status": "ok", "data": "oops"}))

    with pytest.raises(ThreatFoxError, match="data of type str"):
        get_iocs(standin)


def test_the_key_stays_out_of_every_log_line_over_real_http(standin, caplog):
    caplog.set_level(logging.DEBUG)
    standin.threatfox.faults.push(http_error(502), drop_connection(), truncated_json())

    get_iocs(standin)

    assert caplog.records
    assert KEY not in caplog.text


def export_url(standin, key=KEY, name="full.csv.zip"):
    return f"{standin.exports_url}/{key}/{name}"


def test_an_export_is_fetched_and_parsed(standin):
    standin.threatfox.set_export(
        "full.csv.zip", (EXPORTS / "full15.csv.zip").read_bytes()
    )

    result = fetch_export(export_url(standin), sleep=Sleeps())

    assert (len(result.records), result.declared_count, result.complete) == (8, 8, True)


def test_an_export_behind_an_html_502_is_retried(standin):
    standin.threatfox.set_export("recent.json", (EXPORTS / "recent.json").read_bytes())
    standin.threatfox.faults.push(http_error(502, on="export"))

    result = fetch_export(export_url(standin, name="recent.json"), sleep=Sleeps())

    assert len(result.records) == 4
    assert standin.threatfox.export_requests == 2


def test_an_export_cut_off_mid_body_is_retried(standin):
    standin.threatfox.set_export("recent.csv", (EXPORTS / "recent.csv").read_bytes())
    standin.threatfox.faults.push(cut_body(on="export"))

    result = fetch_export(export_url(standin, name="recent.csv"), sleep=Sleeps())

    assert (len(result.records), result.complete) == (3, True)


def test_a_short_but_well_framed_export_is_returned_incomplete(standin):
    standin.threatfox.set_export(
        "full.csv.zip", (EXPORTS / "full15.csv.zip").read_bytes()
    )
    standin.threatfox.faults.push(truncated_json(keep=700, on="export"))

    result = fetch_export(export_url(standin), sleep=Sleeps())

    assert result.complete is False
    assert 0 < len(result.records) < 8


def test_a_wrong_export_key_is_an_auth_error_with_the_url_redacted(standin, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-export-key-123"

    with pytest.raises(ThreatFoxAuthError) as caught:
        fetch_export(export_url(standin, key=wrong), sleep=Sleeps())

    assert wrong not in str(caught.value)
    assert "/exports/<redacted>/full.csv.zip" in str(caught.value)
    assert wrong not in caplog.text


def test_the_export_key_stays_out_of_http_library_logs(standin, caplog):
    caplog.set_level(logging.DEBUG)
    standin.threatfox.set_export(
        "full.csv.zip", (EXPORTS / "full15.csv.zip").read_bytes()
    )
    standin.threatfox.faults.push(
        http_error(503, on="export"), drop_connection(on="export")
    )

    fetch_export(export_url(standin), sleep=Sleeps())

    assert any(record.name == "httpx" for record in caplog.records)
    assert KEY not in caplog.text
