"""The sync engine's promises: crash safety, idempotence, expiry, reconciliation,
the monthly budget, throttling, dry run and backfill, against the stand-in."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.pipeline.policies import RetryPolicy
from azure.storage.blob import BlobLeaseClient

from bench.synthetic import full_csv_export, synthetic_records
from shared.sentinel import RETRY_AFTER_CAP_SECONDS, SentinelClient
from shared.state import LOCK_BLOB
from shared.sync import run_sync
from shared.watchlists import (
    MAX_RAW_CONTENT_BYTES,
    render_csv,
    split_into_uploads,
    watchlist_specs,
)
from standin.faults import apply_then_drop, arm_error
from standin.sentinel_state import RandomFailures
from tests.conftest import ROOT, settings_mapping

T0 = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
# 31 days on: every ip:port row of the first feed has expired (TTL 30 days).
T1 = T0 + timedelta(days=31)
ALL_KINDS = "ip,domain,url,hash"
ALIASES = ("ThreatFox-IP", "ThreatFox-Domain", "ThreatFox-URL", "ThreatFox-FileHash")


def _feed(count, seed, end, days=1.0):
    """Synthetic records first seen in the ``days`` before ``end``."""
    return synthetic_records(
        count, seed=seed, start=end - timedelta(days=days), days=days
    )


def _settings(make_settings, workspace, **overrides):
    values = {
        "INDICATOR_KINDS": ALL_KINDS,
        "RULES_ENABLED": "false",
        "SENTINEL_WORKSPACE_NAME": workspace,
    }
    values.update(overrides)
    return make_settings(**values)


def _snapshot(standin, workspace):
    """Every watchlist's rows as a sorted list (item ids differ between runs)."""
    return {
        alias: sorted(
            tuple(sorted(row.items()))
            for row in _items_or_empty(standin, workspace, alias)
        )
        for alias in ALIASES
    }


def _items_or_empty(standin, workspace, alias):
    ws = standin.sentinel.workspace(workspace)
    return (
        standin.sentinel.items(workspace, alias)
        if alias.lower() in ws.watchlists
        else []
    )


def _duplicate_keys(standin, workspace, settings):
    duplicates = {}
    for spec in watchlist_specs(settings).values():
        keys = [
            spec.key_of(row) for row in _items_or_empty(standin, workspace, spec.alias)
        ]
        duplicates[spec.alias] = len(keys) - len(set(keys))
    return duplicates


def _write_count(standin):
    return standin.sentinel.write_calls


def _run_at(standin, settings, make_options, moment, **options):
    standin.threatfox.now = moment
    return run_sync(settings, make_options(settings, now=moment, **options))


def _two_feeds():
    # A: 40 IOCs the day before T0. B: 30 new IOCs the day before T1, one of
    # which re-reports an ip:port of A (new id, new first seen) after it expired.
    feed_a = _feed(40, seed=11, end=T0)
    feed_b = _feed(30, seed=12, end=T1)
    reported_again = next(r for r in feed_a if r["ioc_type"] == "ip:port")
    feed_b[0] = dict(feed_b[0], ioc=reported_again["ioc"], ioc_type="ip:port")
    return feed_a, feed_b


def _clean_history(standin, make_settings, make_options, feed, moments, workspace):
    settings = _settings(make_settings, workspace)
    standin.threatfox.set_records(feed)
    for moment in moments:
        report = _run_at(standin, settings, make_options, moment)
        assert report.status == "ok", report.error
    return settings


# 1. Crash safety


def _planned_writes(standin, settings, make_options, moment):
    """Write calls a run would make: one per delete, one upload per watchlist."""
    dry = _run_at(standin, settings, make_options, moment, dry_run=True)
    watchlists = [w for ws in dry.workspaces for w in ws.watchlists.values()]
    return dry.totals()["deleted"] + sum(1 for w in watchlists if w.added)


@pytest.mark.parametrize("phase", ["backfill", "expiry"])
@pytest.mark.parametrize("cut_share", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_crash_after_any_write_converges(
    standin, make_settings, make_options, phase, cut_share
):
    feed_a, feed_b = _two_feeds()
    moments = [T0, T1, T1 + timedelta(hours=1)]
    clean = _clean_history(
        standin, make_settings, make_options, feed_a + feed_b, moments, "ws-clean"
    )
    clean_writes = _write_count(standin)
    crashing = _settings(make_settings, "ws-crash")

    # The crash hits the first run (backfill) or the run with deletes and adds;
    # the process is run again five minutes later, as a retrying timer would.
    crash_index = 0 if phase == "backfill" else 1
    for index, moment in enumerate(moments):
        if index == crash_index:
            cut = int(
                _planned_writes(standin, crashing, make_options, moment) * cut_share
            )
            before = _write_count(standin)
            standin.sentinel.fail_writes_after(cut, arm_error(400, "Crash"))
            crashed = _run_at(standin, crashing, make_options, moment)
            standin.sentinel.write_cutoff = None
            assert crashed.status == "failed"
            assert _write_count(standin) - before == cut + 1
            moment += timedelta(minutes=5)
        assert _run_at(standin, crashing, make_options, moment).status == "ok"

    assert _snapshot(standin, "ws-crash") == _snapshot(standin, "ws-clean")
    assert set(_duplicate_keys(standin, "ws-crash", clean).values()) == {0}
    assert clean_writes > 10


def test_crash_where_the_service_applied_but_the_client_never_heard(
    standin, make_settings, make_options
):
    feed_a, feed_b = _two_feeds()
    moments = [T0, T1, T1 + timedelta(hours=1)]
    _clean_history(
        standin, make_settings, make_options, feed_a + feed_b, moments, "ws-clean"
    )
    crashing = _settings(make_settings, "ws-crash")

    assert _run_at(standin, crashing, make_options, T0).status == "ok"
    # From the third write on, every write is applied and its answer dropped;
    # azure-core retries, the retries are applied and dropped too, then it gives up.
    standin.sentinel.fail_writes_after(3, apply_then_drop())
    crashed = _run_at(standin, crashing, make_options, T1)
    standin.sentinel.write_cutoff = None
    rerun = _run_at(standin, crashing, make_options, T1 + timedelta(hours=1))

    assert crashed.status == "failed"
    assert "delete an item" in crashed.error
    assert rerun.status == "ok"
    assert _snapshot(standin, "ws-crash") == _snapshot(standin, "ws-clean")


def test_changes_made_before_a_crash_are_counted(standin, make_settings, make_options):
    settings = _settings(make_settings, "ws-count")
    standin.threatfox.set_records(
        _feed(40, seed=11, end=T0) + _feed(30, seed=12, end=T1)
    )
    first = _run_at(standin, settings, make_options, T0)
    standin.sentinel.fail_writes_after(5, arm_error(400, "Crash"))

    crashed = _run_at(standin, settings, make_options, T1)
    standin.sentinel.write_cutoff = None

    state, _etag = make_options(settings).state_store.load()
    assert crashed.status == "failed"
    # Five item deletes reached the service; the state must know it spent them.
    assert state.changes_this_month("soc-rg/ws-count", T1) == 5
    assert standin.sentinel.counters()["changes"]["ws-count"] == (
        first.workspaces[0].changes_this_month + 5
    )


def _write_settings_file(tmp_path, standin, azurite, **overrides):
    mapping = settings_mapping(standin, azurite, **overrides)
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"Values": mapping}), encoding="utf-8")
    return path, mapping


def _cli_sync(settings_file, moment, **popen):
    command = [
        sys.executable,
        "-m",
        "shared",
        "--settings",
        str(settings_file),
        "sync",
        "--as-of",
        moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
    ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        **popen,
    )


def test_sigkill_mid_sync_then_rerun_converges(
    standin, azurite, make_settings, make_options, tmp_path
):
    # Enough expired ip:port rows that the run needs a few hundred deletes.
    feed = _feed(600, seed=21, end=T0) + _feed(300, seed=22, end=T1)
    moments = [T0, T1]
    _clean_history(standin, make_settings, make_options, feed, moments, "ws-clean")
    settings_file, mapping = _write_settings_file(
        tmp_path,
        standin,
        azurite,
        INDICATOR_KINDS=ALL_KINDS,
        RULES_ENABLED="false",
        SENTINEL_WORKSPACE_NAME="ws-killed",
    )
    crashing = _settings(
        make_settings, "ws-killed", STATE_CONTAINER=mapping["STATE_CONTAINER"]
    )
    assert _run_at(standin, crashing, make_options, T0).status == "ok"

    standin.threatfox.now = T1
    standin.sentinel.latency = 0.05
    before = _write_count(standin)
    process = _cli_sync(settings_file, T1)
    deadline = time.monotonic() + 60
    while _write_count(standin) - before < 60 and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    killed_after = _write_count(standin) - before
    standin.sentinel.latency = 0.0

    # The killed process still holds the 60 s lease: a rerun now is refused
    # clearly (exit code 3, the holder's start time) rather than waiting.
    refused = _cli_sync(settings_file, T1)
    _out, err = refused.communicate(timeout=60)
    assert refused.returncode == 3
    assert "A sync is already running (started 2026-05-11T12:00:00Z)" in err

    # An operator (or 60 s) frees it; the rerun then finishes the job.
    store = make_options(crashing).state_store
    lease = BlobLeaseClient(store._container.get_blob_client(LOCK_BLOB))
    lease.break_lease(lease_break_period=0)
    rerun = _cli_sync(settings_file, T1)
    out, err = rerun.communicate(timeout=120)

    assert 60 <= killed_after < 300
    assert rerun.returncode == 0, err
    assert json.loads(out)["status"] == "ok"
    assert _snapshot(standin, "ws-killed") == _snapshot(standin, "ws-clean")
    assert set(_duplicate_keys(standin, "ws-killed", crashing).values()) == {0}


# 2. Idempotence


def test_repeated_raw_content_put_and_delete_of_a_gone_item(
    standin, make_settings, make_options
):
    settings = _settings(make_settings, "ws-idem")
    standin.threatfox.set_records(_feed(20, seed=31, end=T0))
    _run_at(standin, settings, make_options, T0)
    spec = watchlist_specs(settings)["domain"]
    rows = standin.sentinel.items("ws-idem", spec.alias)
    changes = standin.sentinel.counters()["changes"]["ws-idem"]

    with SentinelClient(settings, settings.workspaces[0]) as client:
        client.upload_rows(spec, render_csv(spec, rows))
        client.upload_rows(spec, render_csv(spec, rows))
        item_id = client.list_items(spec.alias)[0].item_id
        client.delete_item(spec.alias, item_id)
        client.delete_item(spec.alias, item_id)

    assert len(standin.sentinel.items("ws-idem", spec.alias)) == len(rows) - 1
    assert standin.sentinel.counters()["changes"]["ws-idem"] == changes + 1


def test_retried_writes_after_dropped_answers_create_no_duplicate(
    standin, make_settings, make_options
):
    settings = _settings(make_settings, "ws-retry")
    standin.threatfox.set_records(
        _feed(40, seed=11, end=T0) + _feed(30, seed=12, end=T1)
    )
    first = _run_at(standin, settings, make_options, T0)
    # The first upload and the first delete are applied, their answers dropped.
    standin.sentinel.faults.push(
        apply_then_drop(on="raw_content_put"), apply_then_drop(on="item_delete")
    )

    report = _run_at(standin, settings, make_options, T1)

    applied = standin.sentinel.counters()["applied"]
    assert report.status == "ok", report.error
    assert set(_duplicate_keys(standin, "ws-retry", settings).values()) == {0}
    # The service saw the repeated calls; only the first of each changed anything.
    assert applied["item_delete"] == report.totals()["deleted"] + 1
    assert standin.sentinel.counters()["changes"]["ws-retry"] == (
        first.workspaces[0].changes_this_month + report.workspaces[0].changes_this_month
    )


# 3. Expiry


def test_rows_carry_valid_until_per_kind_and_expire(
    standin, make_settings, make_options
):
    settings = _settings(make_settings, "ws-ttl", TTL_URL_DAYS="10")
    feed_a, feed_b = _two_feeds()
    standin.threatfox.set_records(feed_a + feed_b)
    _run_at(standin, settings, make_options, T0)

    ttl = {"ThreatFox-IP": 30, "ThreatFox-Domain": 90, "ThreatFox-URL": 10}
    ttl["ThreatFox-FileHash"] = 180
    for alias, days in ttl.items():
        for row in standin.sentinel.items("ws-ttl", alias):
            first_seen = datetime.fromisoformat(row["FirstSeen"])
            valid_until = datetime.fromisoformat(row["ValidUntil"])
            assert valid_until - first_seen == timedelta(days=days)

    report = _run_at(standin, settings, make_options, T1)

    watchlists = report.workspaces[0].watchlists
    a_ips = {r["ioc"] for r in feed_a if r["ioc_type"] == "ip:port"}
    assert watchlists["ThreatFox-IP"].deleted["expired"] == len(a_ips)
    assert watchlists["ThreatFox-URL"].deleted["expired"] > 0
    assert watchlists["ThreatFox-Domain"].deleted == {}
    # The ip:port re-reported after it expired is back, with its new first seen.
    again = feed_b[0]["ioc"].rsplit(":", 1)
    rows = [
        row
        for row in standin.sentinel.items("ws-ttl", "ThreatFox-IP")
        if [row["IPAddress"], row["Port"]] == again
    ]
    assert [row["ThreatFoxId"] for row in rows] == [feed_b[0]["id"]]


def test_raised_confidence_does_not_rewrite_a_row(standin, make_settings, make_options):
    settings = _settings(make_settings, "ws-conf")
    feed = _feed(20, seed=41, end=T0)
    low = next(r for r in feed if r["ioc_type"] == "domain")
    low["confidence_level"] = 50
    standin.threatfox.set_records(feed)
    _run_at(standin, settings, make_options, T0)
    changes = standin.sentinel.counters()["changes"]["ws-conf"]

    low["confidence_level"] = 100
    standin.threatfox.set_records(feed)
    report = _run_at(standin, settings, make_options, T0 + timedelta(hours=1))

    rows = standin.sentinel.items("ws-conf", "ThreatFox-Domain")
    assert [r["Confidence"] for r in rows if r["Domain"] == low["ioc"]] == ["50"]
    assert report.totals()["added"] == report.totals()["deleted"] == 0
    assert standin.sentinel.counters()["changes"]["ws-conf"] == changes


# 4. Reconciliation


def _export_zip(records, trailer=True):
    """The full CSV export as ThreatFox ships it: banner, header comment, trailer."""
    return full_csv_export(records, trailer=trailer)


def _reconciling(make_settings, workspace, **overrides):
    return _settings(
        make_settings, workspace, RECONCILE_INTERVAL_HOURS="24", **overrides
    )


def test_reconciliation_deletes_withdrawn_rows_once_per_interval(
    standin, make_settings, make_options
):
    settings = _reconciling(make_settings, "ws-rec")
    feed = _feed(40, seed=51, end=T0)
    standin.threatfox.set_records(feed)
    standin.threatfox.set_export("full.csv.zip", _export_zip(feed))
    first = _run_at(standin, settings, make_options, T0)
    # ThreatFox withdraws two IOCs: gone from the API and from the export.
    withdrawn = [r for r in feed if r["ioc_type"] == "domain"][:2]
    current = [r for r in feed if r not in withdrawn]
    standin.threatfox.set_records(current)
    standin.threatfox.set_export("full.csv.zip", _export_zip(current))

    not_due = _run_at(standin, settings, make_options, T0 + timedelta(hours=1))
    due = _run_at(standin, settings, make_options, T0 + timedelta(hours=24))
    standin.threatfox.set_export("full.csv.zip", _export_zip(current[5:]))
    again = _run_at(standin, settings, make_options, T0 + timedelta(hours=25))

    assert first.reconciliation == {"ran": True, "records": 40}
    assert not_due.reconciliation == {"ran": False}
    assert not_due.totals()["deleted"] == 0
    assert due.reconciliation == {"ran": True, "records": 38}
    assert due.workspaces[0].watchlists["ThreatFox-Domain"].deleted == {"withdrawn": 2}
    assert due.totals()["deleted"] == 2
    domains = {
        r["Domain"] for r in standin.sentinel.items("ws-rec", "ThreatFox-Domain")
    }
    assert not domains & {r["ioc"] for r in withdrawn}
    assert again.reconciliation == {"ran": False}
    assert again.totals()["deleted"] == 0
    assert standin.threatfox.export_requests == 2


def test_an_ioc_newer_than_the_export_is_not_withdrawn(
    standin, make_settings, make_options
):
    settings = _reconciling(make_settings, "ws-fresh")
    feed = _feed(20, seed=52, end=T0)
    standin.threatfox.set_records(feed)
    standin.threatfox.set_export("full.csv.zip", _export_zip(feed))
    _run_at(standin, settings, make_options, T0)
    # A new IOC reaches the API before the next export file is written.
    fresh = _feed(1, seed=53, end=T0 + timedelta(hours=23))
    standin.threatfox.set_records(fresh + feed)
    _run_at(standin, settings, make_options, T0 + timedelta(hours=23))
    changes = standin.sentinel.counters()["changes"]["ws-fresh"]

    report = _run_at(standin, settings, make_options, T0 + timedelta(hours=24))

    assert report.reconciliation["ran"] is True
    assert report.totals()["deleted"] == report.totals()["added"] == 0
    assert standin.sentinel.counters()["changes"]["ws-fresh"] == changes


def _truncated(content):
    return content[: len(content) // 2]


@pytest.mark.parametrize(
    ("export", "reason"),
    [
        (lambda feed: _export_zip(feed, trailer=False), "export incomplete"),
        (lambda feed: _truncated(_export_zip(feed * 20)), "export incomplete"),
        (None, "404"),
    ],
    ids=["no-trailer", "truncated-zip", "not-found"],
)
def test_incomplete_export_skips_reconciliation(
    standin, make_settings, make_options, export, reason
):
    settings = _settings(make_settings, "ws-skip")
    feed = _feed(30, seed=54, end=T0)
    standin.threatfox.set_records(feed)
    _run_at(standin, settings, make_options, T0)
    reconciling = _reconciling(
        make_settings, "ws-skip", STATE_CONTAINER=settings.state_container
    )
    if export is not None:
        standin.threatfox.set_export("full.csv.zip", export(feed[:5]))

    report = _run_at(standin, reconciling, make_options, T0 + timedelta(hours=1))
    state, _etag = make_options(reconciling).state_store.load()

    assert report.status == "ok"
    assert report.reconciliation["ran"] is False
    assert reason in report.reconciliation["reason"]
    assert report.totals()["deleted"] == 0
    # Not counted as a reconciliation: the next run tries again.
    assert state.last_reconcile_at is None


# 5. Monthly change budget

B0 = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
B1 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_budget_spends_on_expired_deletes_then_best_adds_and_resumes_next_month(
    standin, make_settings, make_options
):
    ips = {"INDICATOR_KINDS": "ip", "TTL_IP_DAYS": "45"}
    roomy = _settings(make_settings, "ws-budget", **ips)
    old = [r for r in _feed(30, seed=61, end=B0) if r["ioc_type"] == "ip:port"][:3]
    new = [r for r in _feed(60, seed=62, end=B1) if r["ioc_type"] == "ip:port"][:10]
    standin.threatfox.set_records(old + new)
    _run_at(standin, roomy, make_options, B0)
    tight = _settings(
        make_settings,
        "ws-budget",
        MONTHLY_CHANGE_BUDGET="5",
        STATE_CONTAINER=roomy.state_container,
        **ips,
    )

    june = _run_at(standin, tight, make_options, B1)
    june_later = _run_at(standin, tight, make_options, B1 + timedelta(hours=1))
    # A month on the feed no longer lists them; serve them whatever the date.
    standin.threatfox.now = None
    july = run_sync(tight, make_options(tight, now=datetime(2026, 7, 1, 1, tzinfo=UTC)))

    ip = june.workspaces[0].watchlists["ThreatFox-IP"]
    assert (ip.deleted, ip.added, ip.deferred_deletes, ip.deferred_adds) == (
        {"expired": 3},
        2,
        0,
        8,
    )
    assert june.workspaces[0].changes_this_month == 5
    best = sorted(new, key=lambda r: (r["confidence_level"], r["first_seen"]))[-2:]
    rows = standin.sentinel.items("ws-budget", "ThreatFox-IP")
    assert {r["ThreatFoxId"] for r in rows} >= {r["id"] for r in best}
    later = june_later.workspaces[0]
    assert later.watchlists["ThreatFox-IP"].deferred_adds == 8
    assert later.changes_this_month == 5
    assert june_later.totals()["write_calls"] == 0
    assert july.workspaces[0].watchlists["ThreatFox-IP"].added == 5
    assert july.workspaces[0].watchlists["ThreatFox-IP"].deferred_adds == 3
    assert july.workspaces[0].changes_this_month == 5


def test_service_change_limit_fails_the_workspace_and_loses_nothing(
    standin, make_settings, make_options
):
    settings = _settings(make_settings, "ws-limit")
    standin.threatfox.set_records(_feed(40, seed=71, end=T0))
    standin.sentinel.set_change_limit(10)

    refused = _run_at(standin, settings, make_options, T0)
    standin.sentinel.set_change_limit(100_000)
    rerun = _run_at(standin, settings, make_options, T0 + timedelta(hours=1))

    assert refused.status == "failed"
    assert "change limit exceeded" in refused.error
    assert rerun.status == "ok"
    kept = sum(rerun.indicators.kept.values())
    stored = sum(len(_items_or_empty(standin, "ws-limit", a)) for a in ALIASES)
    assert stored == kept > 30
    assert set(_duplicate_keys(standin, "ws-limit", settings).values()) == {0}


# 6. Throttling and faults through the real SDK


def test_sync_converges_through_throttling_and_random_faults(
    standin, make_settings, make_options
):
    feed_a, feed_b = _two_feeds()
    moments = [T0, T1]
    _clean_history(
        standin, make_settings, make_options, feed_a + feed_b, moments, "ws-clean"
    )
    settings = _settings(make_settings, "ws-rough")
    standin.sentinel.throttle.configure(
        writes=(4, 4.0), deletes=(4, 4.0), reads=(8, 8.0)
    )
    standin.sentinel.random_failures = RandomFailures(rate=0.15, seed=3)
    started = time.monotonic()
    for moment in moments:
        report = _run_at(standin, settings, make_options, moment)
        assert report.status == "ok", report.error
    elapsed = time.monotonic() - started

    assert _snapshot(standin, "ws-rough") == _snapshot(standin, "ws-clean")
    calls = standin.sentinel.counters()["calls"]
    applied = standin.sentinel.counters()["applied"]
    assert sum(calls.values()) > sum(applied.values())
    assert elapsed < 60


def test_retry_after_is_honoured_once_and_retries_are_bounded(
    standin, make_settings, make_options
):
    settings = _settings(make_settings, "ws-429")
    standin.threatfox.set_records(_feed(10, seed=81, end=T0))
    _run_at(standin, settings, make_options, T0)
    standin.sentinel.faults.push(
        arm_error(429, "TooManyRequests", retry_after=2, on="item_get")
    )

    with SentinelClient(settings, settings.workspaces[0]) as client:
        item_id = client.list_items("ThreatFox-Domain")[0].item_id
        started = time.monotonic()
        client._client.watchlist_items.get(
            "soc-rg", "ws-429", "ThreatFox-Domain", item_id
        )
        waited = time.monotonic() - started
        policy = client._client._config.retry_policy

    assert 2.0 <= waited < 3.0
    assert standin.sentinel.counters()["calls"]["item_get"] == 2
    # One retry layer, bounded: azure-core's own policy with finite totals.
    assert isinstance(policy, RetryPolicy)
    assert policy.total_retries == 8
    assert policy.backoff_max == 20
    assert policy.timeout == 90


# 7. Dry run


def test_dry_run_reports_the_same_plan_as_the_real_run(
    standin, make_settings, make_options
):
    settings = _settings(make_settings, "ws-dry")
    feed_a, feed_b = _two_feeds()
    standin.threatfox.set_records(feed_a + feed_b)
    _run_at(standin, settings, make_options, T0)
    writes = _write_count(standin)

    dry = _run_at(standin, settings, make_options, T1, dry_run=True)
    dry_writes = _write_count(standin) - writes
    real = _run_at(standin, settings, make_options, T1)

    def plan(report):
        return {
            alias: (w.added, dict(w.deleted), w.already_present, w.kept_from_earlier)
            for alias, w in report.workspaces[0].watchlists.items()
        }

    assert dry_writes == 0
    assert plan(dry) == plan(real)
    assert dry.totals()["deleted"] > 0 and dry.totals()["added"] > 0
    assert {k: v for k, v in dry.totals().items() if k != "write_calls"} == {
        k: v for k, v in real.totals().items() if k != "write_calls"
    }


# 8. Backfill


def test_backfill_of_seven_days_takes_one_upload_per_watchlist(
    standin, make_settings, make_options
):
    settings = _settings(make_settings, "ws-backfill")
    standin.threatfox.set_records(_feed(4200, seed=91, end=T0, days=7))

    report = _run_at(standin, settings, make_options, T0)

    watchlists = report.workspaces[0].watchlists
    assert report.status == "ok"
    assert report.feed.days == 7
    assert sum(w.added for w in watchlists.values()) > 3900
    assert {a: w.write_calls for a, w in watchlists.items()} == dict.fromkeys(
        ALIASES, 1
    )
    assert standin.sentinel.counters()["calls"]["raw_content_put"] == 4


def test_uploads_split_under_the_raw_content_limit(standin, make_settings):
    settings = _settings(make_settings, "ws-split")
    spec = watchlist_specs(settings)["domain"]
    rows = [
        dict.fromkeys(spec.columns, "x")
        | {"Domain": f"host{n}.example.com", "Reference": "r" * 4000}
        for n in range(2000)
    ]
    uploads = split_into_uploads(spec, rows)
    with SentinelClient(settings, settings.workspaces[0]) as client:
        for upload in uploads:
            client.upload_rows(spec, upload)

    assert len(uploads) == 3
    assert all(len(u.encode()) <= MAX_RAW_CONTENT_BYTES for u in uploads)
    assert len(standin.sentinel.items("ws-split", spec.alias)) == 2000


def test_a_huge_retry_after_is_capped(standin, make_settings):
    settings = _settings(make_settings, "ws-cap")

    with SentinelClient(settings, settings.workspaces[0]) as client:
        policy = client._client._config.retry_policy

    class Answer:
        def __init__(self, value):
            self.http_response = type("R", (), {"headers": {"Retry-After": value}})()

    assert policy.get_retry_after(Answer("7200")) == RETRY_AFTER_CAP_SECONDS
    assert policy.get_retry_after(Answer("2")) == 2
