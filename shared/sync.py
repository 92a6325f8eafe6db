"""One sync run: fetch, normalize, filter, plan, apply, report.

Nothing is written to a watchlist until the whole feed has been read and
checked, so a broken or empty feed never empties a watchlist: an empty feed only
lets rows expire on their own ``ValidUntil``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.credentials import TokenCredential

from shared import rules as rules_module
from shared.errors import SyncError, ThreatFoxError
from shared.exports import fetch_export
from shared.filters import Filters
from shared.indicators import Indicator
from shared.pipeline import desired_rows, fetch_feed, prepare_indicators
from shared.report import (
    RunReport,
    WatchlistReport,
    WorkspaceReport,
    log_summary,
)
from shared.sentinel import SentinelClient
from shared.settings import Settings, WorkspaceRef
from shared.state import StateStore, SyncState
from shared.watchlists import (
    Row,
    RowVerdict,
    WatchlistPlan,
    WatchlistSpec,
    format_time,
    indicator_from_row,
    plan_watchlist,
    split_into_uploads,
    watchlist_specs,
)

__all__ = ["SyncOptions", "run_sync"]

logger = logging.getLogger(__name__)

# Deletions by how much they are worth when the monthly budget runs short.
_DELETE_PRIORITY = {
    "expired": 0,
    "allowlisted": 1,
    "withdrawn": 2,
    "filtered": 3,
    "duplicate": 4,
}


@dataclass
class SyncOptions:
    """Per-run choices: what the HTTP trigger and the CLI may change."""

    dry_run: bool = False
    days: int | None = None
    manage_rules: bool | None = None
    now: datetime | None = None
    credential: TokenCredential | None = None
    threatfox_options: dict[str, Any] = field(default_factory=dict)
    state_store: StateStore | None = None
    reconcile: bool | None = None
    # Seconds after the start past which no further watchlist write starts (the
    # HTTP trigger sets it to answer within the platform's 230-second limit).
    write_deadline_s: float | None = None


@dataclass
class _Candidates:
    """The feed's indicators after normalizing, filtering and merging."""

    indicators: list[Indicator] = field(default_factory=list)
    live_ids: frozenset[str] | None = None


def _now(options: SyncOptions) -> datetime:
    return options.now or datetime.now(UTC)


def _feed_days(
    settings: Settings,
    options: SyncOptions,
    state: SyncState,
    now: datetime,
    report: RunReport,
) -> int:
    """Pick the window: the setting, widened to cover an outage or a first run."""
    report.feed.days_configured = settings.days
    if options.days is not None:
        report.feed.widened_reason = None
        return options.days
    if state.last_success_at is None:
        report.feed.widened_reason = "first run: backfilling the widest window"
        return 7
    last = datetime.fromisoformat(state.last_success_at)
    needed = math.ceil((now - last) / timedelta(days=1) + 1 / 24)
    if needed > settings.days:
        report.feed.widened_reason = f"last successful sync was {state.last_success_at}"
        return min(7, needed)
    return settings.days


def _fetch(
    settings: Settings, days: int, options: SyncOptions, report: RunReport
) -> list[object]:
    started = time.monotonic()
    result = fetch_feed(settings, days, **options.threatfox_options)
    report.feed.query_status = result.status
    report.feed.records = len(result.records)
    report.feed.attempts = result.attempts
    report.feed.duration_s = round(time.monotonic() - started, 3)
    logger.info(
        "Fetched %d ThreatFox records (days=%d, status=%s, attempts=%d)",
        len(result.records),
        days,
        result.status,
        result.attempts,
    )
    return list(result.records)


def _reconciliation_due(
    settings: Settings, options: SyncOptions, state: SyncState, now: datetime
) -> bool:
    if options.reconcile is not None:
        return options.reconcile
    if settings.reconcile_interval_hours == 0:
        return False
    if state.last_reconcile_at is None:
        return True
    last = datetime.fromisoformat(state.last_reconcile_at)
    return now - last >= timedelta(hours=settings.reconcile_interval_hours)


def _live_ids(
    settings: Settings, options: SyncOptions, report: RunReport
) -> frozenset[str] | None:
    """Read the keyed export; None unless it was read whole (then nothing is withdrawn)."""
    try:
        export = fetch_export(
            settings.export_url(),
            timeout_seconds=settings.timeout_seconds,
            secret=settings.auth_key,
            **options.threatfox_options,
        )
    except ThreatFoxError as error:
        report.reconciliation = {"ran": False, "reason": settings.redact(str(error))}
        logger.warning("Reconciliation skipped: %s", settings.redact(str(error)))
        return None
    if not export.complete:
        report.reconciliation = {
            "ran": False,
            "reason": "export incomplete",
            "records": len(export.records),
        }
        logger.warning("Reconciliation skipped: the export was not read whole")
        return None
    ids = frozenset(str(record.get("id")) for record in export.records)
    report.reconciliation = {"ran": True, "records": len(ids)}
    logger.info("Reconciliation: export lists %d current IOCs", len(ids))
    return ids


def _feed_ids(records: list[object]) -> frozenset[str]:
    """ThreatFox ids of the raw feed records (any record, kept or not)."""
    return frozenset(
        str(record["id"])
        for record in records
        if isinstance(record, dict) and record.get("id") is not None
    )


def _unwanted_verdict(filters: Filters, live_ids: frozenset[str] | None) -> RowVerdict:
    """Build the check that says why an existing row must go (or None)."""

    def verdict(spec: WatchlistSpec, values: Row) -> str | None:
        indicator = indicator_from_row(spec, values)
        if indicator is None:
            return None
        reason = filters.drop_reason(indicator)
        if reason is not None:
            return "allowlisted" if reason == "allowlisted" else "filtered"
        if (
            live_ids is not None
            and indicator.threatfox_id
            and indicator.threatfox_id not in live_ids
        ):
            return "withdrawn"
        return None

    return verdict


def _fit_budget(
    plans: list[WatchlistPlan], available: int, reports: dict[str, WatchlistReport]
) -> None:
    """Trim plans to the changes the month has left: most valuable first."""
    deletions = [(plan, d) for plan in plans for d in plan.deletions]
    deletions.sort(key=lambda pair: _DELETE_PRIORITY.get(pair[1].reason, 9))
    adds = [(plan, row) for plan in plans for row in plan.adds]
    adds.sort(
        key=lambda pair: (int(pair[1]["Confidence"]), pair[1]["FirstSeen"]),
        reverse=True,
    )
    keep_deletions = deletions[:available]
    keep_adds = adds[: max(0, available - len(keep_deletions))]
    for plan in plans:
        chosen_deletions = [d for p, d in keep_deletions if p is plan]
        chosen_adds = [r for p, r in keep_adds if p is plan]
        report = reports[plan.spec.alias]
        report.deferred_deletes = len(plan.deletions) - len(chosen_deletions)
        report.deferred_adds = len(plan.adds) - len(chosen_adds)
        plan.deletions, plan.adds = chosen_deletions, chosen_adds


def _apply(
    client: SentinelClient,
    plan: WatchlistPlan,
    report: WatchlistReport,
    deadline: float | None,
) -> None:
    """Write one plan: deletes item by item, adds in as few uploads as fit.

    The report is updated after each accepted call. Past ``deadline`` (monotonic
    seconds) no further call starts: the rest is deferred to the next run.
    """

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() > deadline

    uploads = split_into_uploads(plan.spec, plan.adds)
    try:
        for index, deletion in enumerate(plan.deletions):
            if out_of_time():
                report.deferred_deletes += len(plan.deletions) - index
                break
            client.delete_item(plan.spec.alias, deletion.item_id)
            report.write_calls += 1
            report.deleted[deletion.reason] += 1
        for index, upload in enumerate(uploads):
            if out_of_time():
                report.deferred_adds += sum(_row_count(u) for u in uploads[index:])
                break
            client.upload_rows(plan.spec, upload)
            report.write_calls += 1
            report.added += _row_count(upload)
    finally:
        logger.info(
            "Watchlist %s: added=%d deleted=%d present=%d kept=%d deferred=%d calls=%d",
            plan.spec.alias,
            report.added,
            sum(report.deleted.values()),
            report.already_present,
            report.kept_from_earlier,
            report.deferred_adds + report.deferred_deletes,
            report.write_calls,
        )


def _row_count(upload: str) -> int:
    # One header line, then one CRLF-terminated line per row (values never hold
    # a CRLF: normalization rejects control characters in indicators).
    return upload.count("\r\n") - 1


def _fill_plan_report(
    plan: WatchlistPlan, report: WatchlistReport, dry_run: bool
) -> None:
    report.existing = plan.existing
    report.already_present = plan.already_present
    report.kept_from_earlier = plan.kept_from_earlier
    report.unmanaged = plan.unmanaged
    if dry_run:
        report.added = len(plan.adds)
        for deletion in plan.deletions:
            report.deleted[deletion.reason] += 1


def _allowlist_entries(client: SentinelClient, settings: Settings) -> list[str]:
    """Read the analysts' allowlist watchlist: its search key column holds the entries."""
    alias = settings.allowlist_watchlist
    if not alias:
        return []
    watchlist = client.get_watchlist(alias)
    if watchlist is None:
        logger.warning(
            "Allowlist watchlist %s does not exist; only static entries apply", alias
        )
        return []
    search_key = str(watchlist.get("items_search_key") or "")
    items = client.list_items(alias)
    return [
        item.values.get(search_key, "").strip()
        for item in items
        if item.values.get(search_key)
    ]


def _sync_workspace(
    settings: Settings,
    workspace: WorkspaceRef,
    candidates: _Candidates,
    filters: Filters,
    options: SyncOptions,
    store: StateStore | None,
    state: SyncState,
    report: RunReport,
    deadline: float | None,
) -> WorkspaceReport:
    now = _now(options)
    ws_report = WorkspaceReport(
        workspace=workspace.label, monthly_budget=settings.monthly_change_budget
    )
    with SentinelClient(settings, workspace, options.credential) as client:
        extra = _allowlist_entries(client, settings)
        ws_report.allowlist_watchlist_entries = len(extra)
        ws_filters = Filters.from_settings(settings, extra) if extra else filters
        indicators = [
            i for i in candidates.indicators if ws_filters.drop_reason(i) is None
        ]
        verdict = _unwanted_verdict(ws_filters, candidates.live_ids)

        plans = []
        for spec in watchlist_specs(settings).values():
            desired = desired_rows(spec, indicators, report.indicators)
            existing = client.list_items(spec.alias)
            plan = plan_watchlist(spec, desired, existing, now, verdict)
            ws_report.watchlists[spec.alias] = WatchlistReport()
            _fill_plan_report(plan, ws_report.watchlists[spec.alias], options.dry_run)
            plans.append(plan)

        spent = state.changes_this_month(workspace.label, now)
        _fit_budget(
            plans, max(0, settings.monthly_change_budget - spent), ws_report.watchlists
        )
        ws_report.changes_this_month = spent
        if not options.dry_run:
            for plan in plans:
                _apply_and_count(client, plan, ws_report, store, state, now, deadline)

        manage_rules = (
            settings.rules_enabled
            if options.manage_rules is None
            else options.manage_rules
        )
        if manage_rules:
            ws_report.rules = rules_module.sync_rules(
                client, settings, dry_run=options.dry_run
            )
        else:
            ws_report.rules = {"managed": False}
    _warn_deferred(ws_report)
    return ws_report


def _apply_and_count(
    client: SentinelClient,
    plan: WatchlistPlan,
    ws_report: WorkspaceReport,
    store: StateStore | None,
    state: SyncState,
    now: datetime,
    deadline: float | None,
) -> None:
    """Apply one plan and count its changes, even those made before a failure."""
    report = ws_report.watchlists[plan.spec.alias]
    try:
        _apply(client, plan, report, deadline)
    finally:
        # The report is updated after each accepted call, so it holds exactly
        # what the service did before an error stopped the run.
        done = report.added + sum(report.deleted.values())
        ws_report.changes_this_month += done
        _record_changes(store, state, ws_report.workspace, now, done)


def _record_changes(
    store: StateStore | None,
    state: SyncState,
    label: str,
    now: datetime,
    done: int,
) -> None:
    # Counted after every watchlist (and after a failed one), so only a killed
    # process loses a count: at most one watchlist's changes.
    state.add_changes(label, now, done)
    if store is not None and done:
        store.update(lambda stored: stored.add_changes(label, now, done))


def _warn_deferred(ws_report: WorkspaceReport) -> None:
    deferred = sum(
        w.deferred_adds + w.deferred_deletes for w in ws_report.watchlists.values()
    )
    if deferred:
        logger.warning(
            "%s: %d changes deferred to a later run (monthly budget or time limit)",
            ws_report.workspace,
            deferred,
        )


def _finish(
    report: RunReport,
    started: float,
    store: StateStore | None,
    now: datetime,
    options: SyncOptions,
) -> RunReport:
    report.finished_at = format_time(datetime.now(UTC))
    report.duration_s = round(time.monotonic() - started, 3)
    if store is not None and not options.dry_run:
        # Deferred adds keep the window from moving on: the next run widens it
        # again (catch-up) so those records are still in the feed it reads.
        succeeded = report.status == "ok" and report.totals()["deferred_adds"] == 0
        reconciled = report.reconciliation.get("ran") is True

        def change(state: SyncState) -> None:
            state.last_report = report.to_dict()
            if succeeded:
                state.last_success_at = now.isoformat()
            if reconciled:
                state.last_reconcile_at = now.isoformat()

        store.update(change)
    log_summary(report)
    return report


def run_sync(settings: Settings, options: SyncOptions | None = None) -> RunReport:
    """Run one sync under the lock and return its report.

    Failures are in the report, not raised: a failure to read the feed stops the
    run before any write; a failure in one workspace is reported and the others
    go on. Only ``SyncLockedError`` is raised, when another sync holds the lock.
    """
    options = options or SyncOptions()
    store = options.state_store
    if store is None or options.dry_run:
        # A dry run writes nothing, so it needs no lock and may run beside a sync.
        return _run(settings, options, store)
    with store.lock(format_time(_now(options))):
        return _run(settings, options, store)


def _run(
    settings: Settings, options: SyncOptions, store: StateStore | None
) -> RunReport:
    now = _now(options)
    started = time.monotonic()
    report = RunReport(
        started_at=format_time(datetime.now(UTC)),
        dry_run=options.dry_run,
        as_of=format_time(now) if options.now is not None else None,
    )
    deadline = None
    if options.write_deadline_s is not None:
        deadline = started + options.write_deadline_s
    state, _etag = store.load() if store is not None else (SyncState(), None)
    try:
        days = _feed_days(settings, options, state, now, report)
        report.feed.days = days
        records = _fetch(settings, days, options, report)
        filters = Filters.from_settings(settings)
        candidates = _Candidates(
            indicators=prepare_indicators(records, filters, report.indicators)
        )
        if _reconciliation_due(settings, options, state, now):
            exported = _live_ids(settings, options, report)
            if exported is not None:
                # The export file lags the API: an IOC the feed lists right now is
                # live even if the last export predates it. Without this, each
                # reconciliation deleted and re-added such rows (two wasted changes).
                candidates.live_ids = exported | _feed_ids(records)
    except SyncError as error:
        report.status, report.error = "failed", settings.redact(str(error))
        logger.error("Sync stopped before any write: %s", report.error)
        return _finish(report, started, store, now, options)

    for workspace in settings.workspaces:
        try:
            ws_report = _sync_workspace(
                settings,
                workspace,
                candidates,
                filters,
                options,
                store,
                state,
                report,
                deadline,
            )
        except SyncError as error:
            ws_report = WorkspaceReport(
                workspace=workspace.label,
                status="failed",
                error=settings.redact(str(error)),
            )
            logger.error("Workspace %s failed: %s", workspace.label, ws_report.error)
        report.workspaces.append(ws_report)
    if any(ws.status != "ok" for ws in report.workspaces):
        report.status = (
            "failed"
            if all(ws.status != "ok" for ws in report.workspaces)
            else "partial"
        )
        report.error = "; ".join(
            f"{ws.workspace}: {ws.error}" for ws in report.workspaces if ws.error
        )
    return _finish(report, started, store, now, options)
