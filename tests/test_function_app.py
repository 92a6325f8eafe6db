"""The Function triggers, called through the functions the app registers."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

import function_app
from shared.errors import SyncError
from shared.settings import Settings
from shared.state import StateStore
from standin.faults import auth_failure
from tests.conftest import AUTH_KEY, SAMPLE_FEED, WORKSPACE, settings_mapping

# app.get_functions() may be called once per app (a second call raises).
FUNCTIONS = {f.get_function_name(): f for f in function_app.app.get_functions()}


def _recent_feed(hours_ago: float = 2) -> list[dict]:
    """The sample records, first seen a few hours ago, so nothing has expired."""
    records = json.loads(SAMPLE_FEED.read_text(encoding="utf-8"))["data"]
    seen = (datetime.now(UTC) - timedelta(hours=hours_ago)).strftime(
        "%Y-%m-%d %H:%M:%S UTC"
    )
    return [dict(record, first_seen=seen) for record in records]


@pytest.fixture
def app_env(standin, azurite, monkeypatch):
    """App settings in the environment, as the Functions host provides them."""
    standin.threatfox.now = None
    standin.threatfox.set_records(_recent_feed())
    mapping = settings_mapping(standin, azurite, THREATFOX_SYNC_SCHEDULE="0 0 * * * *")
    for name, value in mapping.items():
        monkeypatch.setenv(name, value)
    return mapping


def _call(name: str, *args):
    return FUNCTIONS[name].get_user_function()(*args)


def _post_sync(body: bytes = b"") -> func.HttpResponse:
    request = func.HttpRequest(method="POST", url="/api/sync", body=body)
    return _call("threatfox_sync_http", request)


def test_app_registers_the_four_triggers():
    assert set(FUNCTIONS) == {
        "threatfox_sync_timer",
        "threatfox_sync_http",
        "threatfox_sync_status",
        "threatfox_huntpack",
    }
    timer = FUNCTIONS["threatfox_sync_timer"].get_trigger().get_dict_repr()
    assert timer["schedule"] == "%THREATFOX_SYNC_SCHEDULE%"
    assert timer["runOnStartup"] is False
    http = FUNCTIONS["threatfox_sync_http"].get_trigger().get_dict_repr()
    assert http["route"] == "sync"
    assert [str(m.value) for m in http["methods"]] == ["POST"]
    assert http["authLevel"] == func.AuthLevel.FUNCTION


def test_timer_runs_the_sync_and_logs_past_due(app_env, standin, caplog):
    caplog.set_level(logging.INFO)

    _call("threatfox_sync_timer", TimerRequest(past_due=True))

    assert "past due" in caplog.text
    assert "threatfox_sync_summary status=ok" in caplog.text
    assert len(standin.sentinel.items(WORKSPACE, "ThreatFox-Domain")) == 5
    assert len(standin.sentinel.items(WORKSPACE, "ThreatFox-IP")) == 4


def test_timer_fails_the_invocation_after_writing_its_report(app_env, standin):
    standin.threatfox.faults.push(auth_failure(status=403))

    with pytest.raises(SyncError, match="THREATFOX_AUTH_KEY"):
        _call("threatfox_sync_timer", TimerRequest(past_due=False))

    state, _etag = StateStore.from_settings(Settings.from_mapping(app_env)).load()
    assert state.last_report is not None
    assert state.last_report["status"] == "failed"
    assert state.last_success_at is None


def test_http_sync_returns_the_report(app_env, standin):
    response = _post_sync(b'{"days": 2}')

    assert response.status_code == 200
    report = json.loads(response.get_body())
    assert report["status"] == "ok"
    assert report["feed"]["days"] == 2
    assert report["workspaces"][0]["watchlists"]["ThreatFox-IP"]["added"] == 4
    assert AUTH_KEY not in response.get_body().decode()


def test_http_dry_run_writes_nothing(app_env, standin):
    response = _post_sync(b'{"dry_run": true, "rules": false}')

    assert response.status_code == 200
    report = json.loads(response.get_body())
    assert report["dry_run"] is True
    assert report["workspaces"][0]["watchlists"]["ThreatFox-Domain"]["added"] == 5
    assert report["workspaces"][0]["rules"] == {"managed": False}
    assert standin.sentinel.write_calls == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"days": 8}', "days"),
        (b'{"days": 0}', "days"),
        (b'{"days": "1"}', "days"),
        (b'{"days": true}', "days"),
        (b'{"dry_run": "yes"}', "dry_run"),
        (b'{"rules": 1}', "rules"),
        (b'{"force": true}', "force"),
        (b"[1, 2]", None),
        (b"{not json", None),
    ],
)
def test_http_sync_rejects_bad_requests(app_env, standin, body, field):
    response = _post_sync(body)

    assert response.status_code == 400
    error = json.loads(response.get_body())
    assert error["field"] == field
    assert error["error"]
    assert standin.sentinel.write_calls == 0


def test_http_sync_conflicts_with_a_running_sync(app_env):
    store = StateStore.from_settings(Settings.from_mapping(app_env))

    with store.lock("2026-12-03T10:00:00Z"):
        response = _post_sync()

    assert response.status_code == 409
    assert json.loads(response.get_body())["running_since"] == "2026-12-03T10:00:00Z"


def test_http_sync_reports_a_feed_failure_as_bad_gateway(app_env, standin):
    standin.threatfox.faults.push(auth_failure(status=401))

    response = _post_sync()

    assert response.status_code == 502
    report = json.loads(response.get_body())
    assert report["status"] == "failed"
    assert "THREATFOX_AUTH_KEY" in report["error"]


def test_http_sync_names_a_bad_setting(app_env, monkeypatch):
    monkeypatch.setenv("THREATFOX_DAYS", "30")

    response = _post_sync()

    assert response.status_code == 500
    assert json.loads(response.get_body())["setting"] == "THREATFOX_DAYS"


def test_status_shows_last_report_and_month_changes(app_env):
    _post_sync()

    request = func.HttpRequest(method="GET", url="/api/status", body=b"")
    response = _call("threatfox_sync_status", request)

    assert response.status_code == 200
    status = json.loads(response.get_body())
    assert status["changes_this_month"] == {"soc-rg/" + WORKSPACE: 11}
    assert status["monthly_change_budget"] == 50000
    assert status["last_report"]["status"] == "ok"
    assert status["last_success_at"] is not None


def _get_huntpack(params: dict[str, str]) -> func.HttpResponse:
    request = func.HttpRequest(
        method="GET", url="/api/huntpack", params=params, body=b""
    )
    return _call("threatfox_huntpack", request)


def test_huntpack_returns_the_family_markdown(app_env):
    response = _get_huntpack({"malware": "quasar rat"})

    assert response.status_code == 200
    assert response.mimetype.startswith("text/markdown")
    pack = response.get_body().decode()
    assert "| Total | 4 IOCs (5 indicator rows: one IP on two ports) |" in pack
    assert "`47[.]239[.]50[.]7:4782`" in pack
    assert '_GetWatchlist("ThreatFox-Domain")' in pack


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({}, 400, "malware"),
        ({"malware": "  "}, 400, "malware"),
        ({"malware": "NoSuchRat"}, 404, "malware"),
    ],
)
def test_huntpack_rejects_a_missing_or_unknown_family(app_env, params, status, field):
    response = _get_huntpack(params)

    assert response.status_code == status
    assert json.loads(response.get_body())["field"] == field
