"""From raw ThreatFox records to the indicators and rows every command shares.

The sync, ``export`` and hunt packs all go through the same steps, so a row in
an exported CSV is exactly the row the sync would upload.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.errors import ThreatFoxError
from shared.filters import Filters
from shared.indicators import Indicator, merge_duplicates
from shared.normalize import Rejection, normalize_record
from shared.report import IndicatorReport
from shared.settings import Settings
from shared.threatfox import FeedResult, ThreatFoxClient
from shared.watchlists import (
    Row,
    WatchlistSpec,
    render_row,
    row_size_problem,
)

__all__ = [
    "desired_rows",
    "feed_indicators",
    "fetch_feed",
    "fetch_indicators",
    "load_feed_file",
    "prepare_indicators",
]

logger = logging.getLogger(__name__)


def load_feed_file(path: Path) -> list[object]:
    """Read a saved get_iocs response (or a bare list of records)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ThreatFoxError(
            f"{path} is not a JSON get_iocs response: {error}"
        ) from None
    if isinstance(document, list):
        return list(document)
    if not isinstance(document, dict):
        raise ThreatFoxError(
            f"{path} is neither a get_iocs response nor a list of records"
        )
    status = document.get("query_status")
    if status in ("no_result", "no_results"):
        return []
    data = document.get("data")
    if status != "ok" or not isinstance(data, list):
        what = (
            f"'data' is a {type(data).__name__}"
            if status == "ok"
            else f"query_status is {status!r}"
        )
        raise ThreatFoxError(f"{path} holds no list of records: {what}")
    return list(data)


def fetch_feed(settings: Settings, days: int, **client_options: Any) -> FeedResult:
    """Call get_iocs once (with the client's bounded retries).

    ``client_options`` go to ``ThreatFoxClient`` (tests pass a fast ``sleep``).
    """
    with ThreatFoxClient(
        settings.api_url,
        settings.auth_key,
        timeout_seconds=settings.timeout_seconds,
        **client_options,
    ) as client:
        return client.get_iocs(days)


@contextmanager
def _collector_paused() -> Iterator[None]:
    # Normalizing allocates millions of small objects, and each allocation burst
    # makes the cyclic collector rescan the whole decoded feed (hundreds of MB
    # on a backfill) for cycles it cannot hold: JSON data and indicators have
    # none. Reference counting still frees everything as usual.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def prepare_indicators(
    records: Iterable[object], filters: Filters, counts: IndicatorReport
) -> list[Indicator]:
    """Normalize, filter and merge records, counting every drop by reason."""
    with _collector_paused():
        return _prepare(records, filters, counts)


def _prepare(
    records: Iterable[object], filters: Filters, counts: IndicatorReport
) -> list[Indicator]:
    indicators: list[Indicator] = []
    for record in records:
        outcome = normalize_record(record)
        if isinstance(outcome, Rejection):
            if outcome.reason.startswith("unsupported_type:"):
                counts.unsupported_types[outcome.ioc_type or "?"] += 1
            else:
                counts.invalid[outcome.reason] += 1
            continue
        indicators.append(outcome)
    kept, dropped = filters.apply(indicators)
    for reason, count in dropped.items():
        if reason == "allowlisted":
            counts.allowlisted += count
        else:
            counts.filtered[reason] += count
    merged, duplicates = merge_duplicates(kept)
    counts.duplicates_merged = duplicates
    for indicator in merged:
        counts.kept[indicator.kind] += 1
    logger.info(
        "Normalized indicators: kept=%d invalid=%d unsupported=%d filtered=%d "
        "allowlisted=%d merged=%d",
        len(merged),
        sum(counts.invalid.values()),
        sum(counts.unsupported_types.values()),
        sum(counts.filtered.values()),
        counts.allowlisted,
        duplicates,
    )
    return merged


def feed_indicators(
    records: Iterable[object], settings: Settings
) -> tuple[list[Indicator], IndicatorReport]:
    """Run the whole pipeline with the settings' filters; return indicators and counts."""
    counts = IndicatorReport()
    indicators = prepare_indicators(records, Filters.from_settings(settings), counts)
    return indicators, counts


def fetch_indicators(settings: Settings, days: int | None = None) -> list[Indicator]:
    """Fetch the feed and run the pipeline (hunt packs use this)."""
    feed = fetch_feed(settings, days or settings.days)
    indicators, _counts = feed_indicators(feed.records, settings)
    return indicators


def desired_rows(
    spec: WatchlistSpec, indicators: Sequence[Indicator], counts: IndicatorReport
) -> list[Row]:
    """Render the rows of one watchlist; rows over Sentinel's size limits are counted."""
    rows = []
    for indicator in indicators:
        if indicator.kind != spec.kind:
            continue
        row = render_row(indicator, spec)
        problem = row_size_problem(spec, row)
        if problem:
            counts.invalid[problem] += 1
            continue
        rows.append(row)
    return rows
