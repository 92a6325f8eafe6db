"""What the Function triggers do, kept out of function_app.py so tests call it directly.

Each handler takes the app settings as a mapping and returns plain data (status
code and JSON-ready body); function_app.py only adapts them to azure-functions.

An HTTP sync runs the same work as the timer with tighter bounds: ThreatFox is
retried for at most 45 s, and no watchlist write starts after 150 s; what is
left is reported as deferred and done by the next run. A normal run takes
seconds. Each ARM call's own retries are bounded too (shared/sentinel.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.errors import ConfigError, SyncError, SyncLockedError
from shared.report import RunReport
from shared.settings import Settings
from shared.state import StateStore
from shared.sync import SyncOptions, run_sync

__all__ = [
    "RequestError",
    "handle_huntpack",
    "handle_status",
    "handle_sync",
    "parse_sync_request",
    "run_timer_sync",
]

logger = logging.getLogger(__name__)

JsonResponse = tuple[int, dict[str, Any]]
# The platform cuts HTTP calls at 230 s: an on-demand sync retries ThreatFox for
# at most 45 s and starts no watchlist write after 150 s (the rest is deferred to
# the next run and reported as such).
HTTP_FEED_RETRY_SECONDS = 45
HTTP_WRITE_DEADLINE_SECONDS = 150
_SYNC_FIELDS = {"days": int, "dry_run": bool, "rules": bool}


class RequestError(ValueError):
    """The HTTP request is malformed; ``field`` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class SyncRequest:
    """An on-demand sync: all fields optional."""

    days: int | None = None
    dry_run: bool = False
    rules: bool | None = None


def parse_sync_request(body: bytes) -> SyncRequest:
    """Validate ``{"days": 1..7, "dry_run": bool, "rules": bool}`` (body optional)."""
    if not body.strip():
        return SyncRequest()
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestError("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise RequestError("The body must be a JSON object.")
    for name, value in data.items():
        expected = _SYNC_FIELDS.get(name)
        if expected is None:
            allowed = ", ".join(_SYNC_FIELDS)
            raise RequestError(f"Unknown field {name!r}; allowed: {allowed}.", name)
        # bool is an int in Python; a JSON true is not a number of days.
        if type(value) is not expected:
            raise RequestError(f"Field {name!r} must be a {expected.__name__}.", name)
    days = data.get("days")
    if days is not None and not 1 <= days <= 7:
        raise RequestError("Field 'days' must be from 1 to 7.", "days")
    return SyncRequest(
        days=days, dry_run=data.get("dry_run", False), rules=data.get("rules")
    )


def _settings(environ: Mapping[str, str]) -> Settings:
    return Settings.from_mapping(environ)


def _config_error(error: ConfigError) -> JsonResponse:
    return 500, {"error": str(error), "setting": error.setting}


def handle_sync(
    body: bytes, environ: Mapping[str, str], **overrides: Any
) -> JsonResponse:
    """Run an on-demand sync; 200 with the report, 400/409/500/502 otherwise."""
    try:
        request = parse_sync_request(body)
    except RequestError as error:
        return 400, {"error": str(error), "field": error.field}
    try:
        settings = _settings(environ)
        options = SyncOptions(
            dry_run=request.dry_run,
            days=request.days,
            manage_rules=request.rules,
            state_store=StateStore.from_settings(settings),
            threatfox_options={"max_total_seconds": HTTP_FEED_RETRY_SECONDS},
            write_deadline_s=HTTP_WRITE_DEADLINE_SECONDS,
        )
        for name, value in overrides.items():
            setattr(options, name, value)
        report = run_sync(settings, options)
    except ConfigError as error:
        return _config_error(error)
    except SyncLockedError as error:
        return 409, {"error": str(error), "running_since": error.started_at}
    except SyncError as error:
        return 502, {"error": str(error)}
    return (200 if report.status == "ok" else 502), report.to_dict()


def run_timer_sync(
    environ: Mapping[str, str], past_due: bool = False, **overrides: Any
) -> RunReport:
    """Run the scheduled sync; raise after the report is written if it failed.

    Raising makes the invocation fail, so the run shows red in the portal.
    """
    if past_due:
        logger.warning("The timer is past due; running the sync now")
    settings = _settings(environ)
    options = SyncOptions(state_store=StateStore.from_settings(settings), **overrides)
    try:
        report = run_sync(settings, options)
    except SyncLockedError as error:
        logger.warning("Scheduled sync skipped: %s", error)
        raise
    if report.status != "ok":
        raise SyncError(f"Sync {report.status}: {report.error}")
    return report


def handle_status(environ: Mapping[str, str]) -> JsonResponse:
    """Return the last run's report and this month's change counts."""
    try:
        settings = _settings(environ)
        state, _etag = StateStore.from_settings(settings).load()
    except ConfigError as error:
        return _config_error(error)
    now = datetime.now(UTC)
    changes = {
        workspace.label: state.changes_this_month(workspace.label, now)
        for workspace in settings.workspaces
    }
    return 200, {
        "last_success_at": state.last_success_at,
        "last_reconcile_at": state.last_reconcile_at,
        "changes_this_month": changes,
        "monthly_change_budget": settings.monthly_change_budget,
        "last_report": state.last_report,
    }


def handle_huntpack(
    params: Mapping[str, str], environ: Mapping[str, str]
) -> tuple[int, str, str]:
    """Return (status, body, mimetype): the family's hunt pack as Markdown."""
    from shared.huntpack import build_packs
    from shared.pipeline import fetch_indicators

    malware = params.get("malware", "").strip()
    if not malware:
        return (
            400,
            json.dumps(
                {"error": "Query parameter 'malware' is required.", "field": "malware"}
            ),
            "application/json",
        )
    try:
        settings = _settings(environ)
        indicators = fetch_indicators(settings)
        packs = build_packs(
            indicators,
            settings,
            malware=malware,
            all_families=False,
            generated_at=datetime.now(UTC),
        )
    except ConfigError as error:
        status, body = _config_error(error)
        return status, json.dumps(body), "application/json"
    except SyncError as error:
        return 502, json.dumps({"error": str(error)}), "application/json"
    except ValueError as error:
        return (
            404,
            json.dumps({"error": str(error), "field": "malware"}),
            "application/json",
        )
    return 200, next(iter(packs.values())), "text/markdown; charset=utf-8"
