"""End to end: the sample feed through the real SDK and httpx into the stand-in."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from shared.errors import SyncLockedError
from shared.sentinel import SentinelClient
from shared.sync import run_sync
from standin.faults import auth_failure, envelope, http_error
from tests.conftest import AUTH_KEY, SAMPLE_NOW, WORKSPACE

IP_ROWS = [
    {
        "IPAddress": "2a01:4f8:c17:e3b1::1",
        "Port": "8443",
        "ThreatType": "botnet_cc",
        "Malware": "Cobalt Strike",
        "ThreatFoxId": "1591102",
        "Confidence": "80",
        "FirstSeen": "2026-05-21T22:15:00Z",
        "ValidUntil": "2026-06-20T22:15:00Z",
        "Tags": "",
        "Reference": "",
    },
    {
        "IPAddress": "185.244.25.17",
        "Port": "8080",
        "ThreatType": "botnet_cc",
        "Malware": "Mirai",
        "ThreatFoxId": "1591110",
        "Confidence": "50",
        "FirstSeen": "2026-05-21T23:05:31Z",
        "ValidUntil": "2026-06-20T23:05:31Z",
        "Tags": "elf, mirai",
        "Reference": "",
    },
    {
        # Two ThreatFox records for one ip:port: oldest id, highest confidence,
        # earliest first seen, tags of both.
        "IPAddress": "47.239.50.7",
        "Port": "443",
        "ThreatType": "botnet_cc",
        "Malware": "Quasar RAT",
        "ThreatFoxId": "1591188",
        "Confidence": "100",
        "FirstSeen": "2026-05-22T07:02:44Z",
        "ValidUntil": "2026-06-21T07:02:44Z",
        "Tags": "QuasarRAT, Alibaba, censys",
        "Reference": "https://search.censys.io/hosts/47.239.50.7",
    },
    {
        "IPAddress": "47.239.50.7",
        "Port": "4782",
        "ThreatType": "botnet_cc",
        "Malware": "Quasar RAT",
        "ThreatFoxId": "1591241",
        "Confidence": "75",
        "FirstSeen": "2026-05-22T13:20:05Z",
        "ValidUntil": "2026-06-21T13:20:05Z",
        "Tags": "QuasarRAT",
        "Reference": "https://search.censys.io/hosts/47.239.50.7",
    },
]
QUASAR_REFERENCE = (
    "https://bazaar.abuse.ch/sample/"
    "5d2f0c6a3b8f4e0e9c1a7b3d9e2f4a6c8b0d1e3f5a7c9e1b3d5f7a9c1e3b5d7f/"
)
DOMAIN_ROWS = [
    (
        "mail.tripfan-ads.com",
        "AsyncRAT",
        "1591160",
        "100",
        "2026-05-22T04:40:12Z",
        "2026-08-20T04:40:12Z",
        "AsyncRAT, dcrat",
        "",
    ),
    (
        "xn--bcher-rechnung-gsb.de",
        "Remcos",
        "1591161",
        "75",
        "2026-05-22T05:12:09Z",
        "2026-08-20T05:12:09Z",
        "",
        "",
    ),
    (
        "qinerdime.servehalflife.com",
        "Quasar RAT",
        "1591203",
        "75",
        "2026-05-22T09:41:17Z",
        "2026-08-20T09:41:17Z",
        "QuasarRAT, RAT",
        QUASAR_REFERENCE,
    ),
    (
        "qinerdime.ydns.eu",
        "Quasar RAT",
        "1591204",
        "75",
        "2026-05-22T09:41:18Z",
        "2026-08-20T09:41:18Z",
        "QuasarRAT, RAT",
        QUASAR_REFERENCE,
    ),
    (
        "iotonton.io",
        "Quasar RAT",
        "1591205",
        "75",
        "2026-05-22T09:41:18Z",
        "2026-08-20T09:41:18Z",
        "QuasarRAT, RAT",
        QUASAR_REFERENCE,
    ),
]
URL_ROWS = [
    {
        "Url": "http://185.244.25.17:8080/bins/x86",
        "UrlHost": "185.244.25.17",
        "Port": "8080",
        "OriginalUrl": "http://185.244.25.17:8080/bins/x86",
        "ThreatFoxId": "1591131",
    },
    {
        # Upper case, a default port and a fragment: one canonical URL, two records.
        "Url": "https://docs-secure-update.top/invoice/Q3.js",
        "UrlHost": "docs-secure-update.top",
        "Port": "443",
        "OriginalUrl": "https://Docs-Secure-Update.TOP/invoice/Q3.js#download",
        "ThreatFoxId": "1591150",
    },
]


def _rows(standin, alias):
    return sorted(
        standin.sentinel.items(WORKSPACE, alias),
        key=lambda row: (row[next(iter(row))], row.get("Port", "")),
    )


def _sorted(rows, key):
    return sorted(rows, key=lambda row: (row[key], row.get("Port", "")))


def _writes(standin):
    counters = standin.sentinel.counters()["applied"]
    return {
        kind: count
        for kind, count in counters.items()
        if kind.endswith(("_put", "_delete"))
    }


def test_first_sync_writes_exact_rows(standin, make_settings, make_options):
    settings = make_settings()

    report = run_sync(settings, make_options(settings))

    assert report.status == "ok", report.error
    assert _sorted(
        standin.sentinel.items(WORKSPACE, "ThreatFox-IP"), "IPAddress"
    ) == _sorted(IP_ROWS, "IPAddress")
    domains = standin.sentinel.items(WORKSPACE, "ThreatFox-Domain")
    expected_domains = [
        dict(
            zip(
                (
                    "Domain",
                    "Malware",
                    "ThreatFoxId",
                    "Confidence",
                    "FirstSeen",
                    "ValidUntil",
                    "Tags",
                    "Reference",
                ),
                row,
                strict=True,
            )
        )
        | {"ThreatType": "payload_delivery" if row[1] == "Remcos" else "botnet_cc"}
        for row in DOMAIN_ROWS
    ]
    assert _sorted(domains, "Domain") == _sorted(expected_domains, "Domain")
    urls = standin.sentinel.items(WORKSPACE, "ThreatFox-URL")
    picked = [{key: row[key] for key in URL_ROWS[0]} for row in urls]
    assert _sorted(picked, "Url") == _sorted(URL_ROWS, "Url")
    # Hashes are opt-in: no FileHash watchlist unless INDICATOR_KINDS asks for it.
    # (The stand-in keys watchlists by lower-case alias, as ARM names are case-insensitive.)
    assert set(standin.sentinel.workspace(WORKSPACE).watchlists) == {
        "threatfox-ip",
        "threatfox-domain",
        "threatfox-url",
    }


def test_first_sync_report_counts(standin, make_settings, make_options):
    settings = make_settings()

    report = run_sync(settings, make_options(settings)).to_dict()

    assert report["feed"]["records"] == 22
    assert report["feed"]["days"] == 7
    assert (
        report["feed"]["widened_reason"] == "first run: backfilling the widest window"
    )
    indicators = report["indicators"]
    assert indicators["invalid"] == {"invalid_ip": 1}
    assert indicators["unsupported_types"] == {"envelope_from": 1}
    assert indicators["filtered"] == {
        "filtered:kind": 4,
        "filtered:min_confidence": 1,
        "non_public_ip:private": 1,
    }
    assert indicators["allowlisted"] == 1
    assert indicators["duplicates_merged"] == 2
    assert indicators["kept"] == {"ip": 4, "domain": 5, "url": 2}
    watchlists = report["workspaces"][0]["watchlists"]
    assert {alias: w["added"] for alias, w in watchlists.items()} == {
        "ThreatFox-IP": 4,
        "ThreatFox-Domain": 5,
        "ThreatFox-URL": 2,
    }
    assert all(w["write_calls"] == 1 for w in watchlists.values())
    assert report["workspaces"][0]["changes_this_month"] == 11


def test_second_sync_writes_nothing(standin, make_settings, make_options):
    settings = make_settings()
    run_sync(settings, make_options(settings))
    writes_after_first = _writes(standin)

    standin.threatfox.now = SAMPLE_NOW + timedelta(hours=1)

    second = run_sync(
        settings, make_options(settings, now=SAMPLE_NOW + timedelta(hours=1))
    )

    assert second.status == "ok"
    assert _writes(standin) == writes_after_first
    # The one-day window no longer holds the 2026-05-21 records; their rows stay.
    assert second.feed.days == 1
    watchlists = second.workspaces[0].watchlists
    summary = {
        a: (w.added, w.already_present, w.kept_from_earlier)
        for a, w in watchlists.items()
    }
    assert summary == {
        "ThreatFox-IP": (0, 2, 2),
        "ThreatFox-Domain": (0, 5, 0),
        "ThreatFox-URL": (0, 1, 1),
    }


@pytest.mark.parametrize(
    "fault",
    [
        auth_failure(status=401),
        envelope({"query_status": "ok", "data": "not a list"}),
        envelope({"query_status": "illegal_days", "data": "Days must be 1-7"}),
    ],
    ids=["auth", "wrong-data-type", "caller-error"],
)
def test_failed_feed_leaves_watchlists_untouched(
    standin, make_settings, make_options, fault
):
    settings = make_settings()
    run_sync(settings, make_options(settings))
    before = {
        alias: _rows(standin, alias)
        for alias in ("ThreatFox-IP", "ThreatFox-Domain", "ThreatFox-URL")
    }
    writes = _writes(standin)
    standin.threatfox.faults.push(fault)

    report = run_sync(
        settings, make_options(settings, now=SAMPLE_NOW + timedelta(days=60))
    )

    assert report.status == "failed"
    assert report.workspaces == []
    assert _writes(standin) == writes
    assert {alias: _rows(standin, alias) for alias in before} == before


def test_retried_feed_failures_leave_watchlists_untouched(
    standin, make_settings, make_options
):
    settings = make_settings()
    run_sync(settings, make_options(settings))
    writes = _writes(standin)
    for _ in range(5):
        standin.threatfox.faults.push(http_error(status=502))

    report = run_sync(
        settings, make_options(settings, now=SAMPLE_NOW + timedelta(days=60))
    )

    assert report.status == "failed"
    assert "after 5 attempt(s)" in report.error
    assert _writes(standin) == writes


def test_empty_feed_keeps_rows_until_they_expire(standin, make_settings, make_options):
    settings = make_settings()
    run_sync(settings, make_options(settings))
    standin.threatfox.set_records([])

    still_valid = run_sync(
        settings, make_options(settings, now=SAMPLE_NOW + timedelta(days=2))
    )
    ips_expired = run_sync(
        settings, make_options(settings, now=SAMPLE_NOW + timedelta(days=31))
    )

    assert still_valid.feed.query_status == "no_result"
    assert still_valid.totals()["deleted"] == 0
    assert len(standin.sentinel.items(WORKSPACE, "ThreatFox-Domain")) == 5
    ip_report = ips_expired.workspaces[0].watchlists["ThreatFox-IP"]
    assert ip_report.deleted == {"expired": 4}
    assert standin.sentinel.items(WORKSPACE, "ThreatFox-IP") == []
    assert len(standin.sentinel.items(WORKSPACE, "ThreatFox-Domain")) == 5


def test_dry_run_plans_but_writes_nothing(standin, make_settings, make_options):
    settings = make_settings()

    report = run_sync(settings, make_options(settings, dry_run=True))

    assert report.totals()["added"] == 11
    assert _writes(standin) == {}


def test_duplicate_rows_are_cleaned_up(standin, make_settings, make_options):
    settings = make_settings()
    run_sync(settings, make_options(settings))
    duplicate = dict(IP_ROWS[1], Tags="typed by hand")
    with SentinelClient(settings, settings.workspaces[0]) as client:
        client.put_item(
            "ThreatFox-IP", "6b1a4d2e-0c8f-4e0b-9c57-1f3e2d4c5b6a", duplicate
        )

    report = run_sync(
        settings, make_options(settings, now=SAMPLE_NOW + timedelta(hours=1))
    )

    assert report.workspaces[0].watchlists["ThreatFox-IP"].deleted == {"duplicate": 1}
    assert len(standin.sentinel.items(WORKSPACE, "ThreatFox-IP")) == 4


def test_allowlisting_removes_rows_already_written(
    standin, make_settings, make_options
):
    settings = make_settings()
    run_sync(settings, make_options(settings))
    allowing = make_settings(
        ALLOWLIST="ydns.eu,47.239.50.0/24", STATE_CONTAINER=settings.state_container
    )

    report = run_sync(
        allowing, make_options(allowing, now=SAMPLE_NOW + timedelta(hours=1))
    )

    watchlists = report.workspaces[0].watchlists
    assert watchlists["ThreatFox-Domain"].deleted == {"allowlisted": 1}
    assert watchlists["ThreatFox-IP"].deleted == {"allowlisted": 2}
    domains = {
        row["Domain"] for row in standin.sentinel.items(WORKSPACE, "ThreatFox-Domain")
    }
    assert "qinerdime.ydns.eu" not in domains


def test_second_sync_while_locked_is_refused(standin, make_settings, make_options):
    settings = make_settings()
    options = make_options(settings)

    with (
        options.state_store.lock("2026-05-23T00:00:00Z"),
        pytest.raises(SyncLockedError) as raised,
    ):
        run_sync(settings, make_options(settings))

    assert raised.value.started_at == "2026-05-23T00:00:00Z"


def test_auth_key_never_reaches_logs_reports_or_errors(
    standin, make_settings, make_options, caplog
):
    settings = make_settings()
    standin.threatfox.auth_key = "a-different-key"
    caplog.set_level(logging.DEBUG)

    report = run_sync(settings, make_options(settings))

    assert report.status == "failed"
    assert "THREATFOX_AUTH_KEY" in report.error
    assert AUTH_KEY not in json.dumps(report.to_dict())
    assert AUTH_KEY not in caplog.text
    assert settings.static_token not in caplog.text


def test_one_fetch_serves_several_workspaces_and_one_failure_stops_none(
    standin, make_settings, make_options
):
    ids = ",".join(
        f"/subscriptions/00000000-1111-2222-3333-44444444444{n}/resourceGroups/mssp-{n}"
        f"/providers/Microsoft.OperationalInsights/workspaces/customer-{n}"
        for n in (1, 2, 3)
    )
    settings = make_settings(SENTINEL_WORKSPACES=ids)
    standin.sentinel.workspace("customer-2").change_limit = 0

    report = run_sync(settings, make_options(settings))

    assert standin.threatfox.requests == 1
    assert [(ws.workspace, ws.status) for ws in report.workspaces] == [
        ("mssp-1/customer-1", "ok"),
        ("mssp-2/customer-2", "failed"),
        ("mssp-3/customer-3", "ok"),
    ]
    assert report.status == "partial"
    assert "mssp-2/customer-2" in report.error
    assert len(standin.sentinel.items("customer-1", "ThreatFox-Domain")) == 5
    assert len(standin.sentinel.items("customer-3", "ThreatFox-Domain")) == 5
    assert report.workspaces[0].changes_this_month == 11


def test_writes_past_the_deadline_are_deferred_not_lost(
    standin, make_settings, make_options
):
    settings = make_settings()

    late = run_sync(settings, make_options(settings, write_deadline_s=0.0))
    again = run_sync(
        settings, make_options(settings, now=SAMPLE_NOW + timedelta(minutes=5))
    )

    assert late.status == "ok"
    assert late.as_of == "2026-05-23T00:00:00Z"
    watchlists = late.workspaces[0].watchlists
    assert {alias: (w.added, w.deferred_adds) for alias, w in watchlists.items()} == {
        "ThreatFox-IP": (0, 4),
        "ThreatFox-Domain": (0, 5),
        "ThreatFox-URL": (0, 2),
    }
    # The deferring run did not move the window on: the next one reads 7 days again.
    assert again.feed.days == 7
    assert again.totals()["added"] == 11
    assert len(standin.sentinel.items(WORKSPACE, "ThreatFox-IP")) == 4


def test_auth_key_in_an_unusual_export_url_stays_secret(
    standin, make_settings, make_options, caplog
):
    settings = make_settings(
        THREATFOX_EXPORT_URL="http://127.0.0.1:1/mirror/{auth_key}/full.csv.zip"
    )
    caplog.set_level(logging.DEBUG)

    report = run_sync(settings, make_options(settings, reconcile=True))

    assert report.status == "ok"
    assert report.reconciliation["ran"] is False
    assert "<redacted>" in report.reconciliation["reason"]
    assert AUTH_KEY not in json.dumps(report.to_dict())
    assert AUTH_KEY not in caplog.text
