"""The run report: what a sync fetched, dropped, changed and deferred.

One report per run. It is logged once as a structured summary line (the
``threatfox_sync_summary`` message, with the counts as custom dimensions in
Application Insights), returned by the HTTP trigger, printed by the CLI and kept
in the state document for ``GET /api/status``. It never holds a secret.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

__all__ = [
    "FeedReport",
    "IndicatorReport",
    "RunReport",
    "WatchlistReport",
    "WorkspaceReport",
    "log_summary",
]

logger = logging.getLogger(__name__)

SUMMARY_MESSAGE = "threatfox_sync_summary"


@dataclass
class FeedReport:
    """How the feed was read."""

    days: int = 0
    days_configured: int = 0
    widened_reason: str | None = None
    query_status: str | None = None
    records: int = 0
    attempts: int = 0
    duration_s: float = 0.0


@dataclass
class IndicatorReport:
    """What normalizing, filtering and merging made of the records."""

    invalid: Counter[str] = field(default_factory=Counter)
    unsupported_types: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)
    allowlisted: int = 0
    duplicates_merged: int = 0
    kept: Counter[str] = field(default_factory=Counter)


@dataclass
class WatchlistReport:
    """Changes to one watchlist."""

    existing: int = 0
    added: int = 0
    already_present: int = 0
    kept_from_earlier: int = 0
    unmanaged: int = 0
    deleted: Counter[str] = field(default_factory=Counter)
    deferred_adds: int = 0
    deferred_deletes: int = 0
    write_calls: int = 0


@dataclass
class WorkspaceReport:
    """One workspace's part of the run."""

    workspace: str
    status: str = "ok"
    error: str | None = None
    changes_this_month: int = 0
    monthly_budget: int = 0
    allowlist_watchlist_entries: int = 0
    watchlists: dict[str, WatchlistReport] = field(default_factory=dict)
    rules: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunReport:
    """Everything one sync did."""

    started_at: str
    dry_run: bool
    as_of: str | None = None
    status: str = "ok"
    error: str | None = None
    finished_at: str | None = None
    duration_s: float = 0.0
    feed: FeedReport = field(default_factory=FeedReport)
    indicators: IndicatorReport = field(default_factory=IndicatorReport)
    reconciliation: dict[str, Any] = field(default_factory=lambda: {"ran": False})
    workspaces: list[WorkspaceReport] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-ready data."""
        plain: dict[str, Any] = _plain(self)
        return plain

    def totals(self) -> dict[str, int]:
        """Return the run's headline counts across workspaces."""
        watchlists = [w for ws in self.workspaces for w in ws.watchlists.values()]
        return {
            "fetched": self.feed.records,
            "invalid": sum(self.indicators.invalid.values()),
            "unsupported": sum(self.indicators.unsupported_types.values()),
            "filtered": sum(self.indicators.filtered.values()),
            "allowlisted": self.indicators.allowlisted,
            "duplicates_merged": self.indicators.duplicates_merged,
            "kept": sum(self.indicators.kept.values()),
            "added": sum(w.added for w in watchlists),
            "deleted": sum(sum(w.deleted.values()) for w in watchlists),
            "deferred": sum(w.deferred_adds + w.deferred_deletes for w in watchlists),
            "deferred_adds": sum(w.deferred_adds for w in watchlists),
            "write_calls": sum(w.write_calls for w in watchlists),
            "workspaces_failed": sum(1 for ws in self.workspaces if ws.status != "ok"),
        }


def _plain(value: Any) -> Any:
    # dataclasses.asdict rebuilds a Counter from (key, value) pairs, which counts
    # the pairs; convert by hand instead.
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def log_summary(report: RunReport) -> None:
    """Log the one structured summary line of a run.

    The counts go in ``extra`` so Application Insights stores them as custom
    dimensions; the message text repeats them for plain log readers.
    """
    totals = report.totals()
    dimensions = {
        "status": report.status,
        "dry_run": report.dry_run,
        "days": report.feed.days,
        "duration_s": report.duration_s,
        **totals,
    }
    level = logging.INFO if report.status == "ok" else logging.ERROR
    logger.log(
        level,
        "%s status=%s dry_run=%s days=%d fetched=%d kept=%d added=%d deleted=%d "
        "deferred=%d invalid=%d filtered=%d duration_s=%.1f",
        SUMMARY_MESSAGE,
        report.status,
        report.dry_run,
        report.feed.days,
        totals["fetched"],
        totals["kept"],
        totals["added"],
        totals["deleted"],
        totals["deferred"],
        totals["invalid"],
        totals["filtered"],
        report.duration_s,
        extra={"custom_dimensions": dimensions, **dimensions},
    )
