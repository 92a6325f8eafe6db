"""What each watchlist holds, how rows render as CSV, and the plan of changes.

One watchlist per indicator kind. A row's key is (search key value, port) and
its content is fixed for the life of the indicator, so the plan only ever adds
rows for new keys and deletes rows that expired, were withdrawn, became
unwanted, or duplicate another row. It never updates a row in place: an update
spends a change from the workspace's monthly budget and buys nothing a rule uses.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.indicators import Indicator
from shared.settings import Settings

__all__ = [
    "ALL_COLUMNS",
    "MAX_LINE_CHARS",
    "MAX_RAW_CONTENT_BYTES",
    "MAX_ROW_BYTES",
    "Deletion",
    "ExistingItem",
    "Row",
    "RowVerdict",
    "WatchlistPlan",
    "WatchlistSpec",
    "format_time",
    "indicator_from_row",
    "parse_time",
    "plan_watchlist",
    "render_csv",
    "render_row",
    "row_size_problem",
    "split_into_uploads",
    "watchlist_specs",
]

# Sentinel's limits for a local (rawContent) upload; we keep a margin under each.
MAX_RAW_CONTENT_BYTES = 3_800_000
MAX_LINE_CHARS = 10_240
MAX_ROW_BYTES = 10_000
_UPLOAD_BUDGET_BYTES = MAX_RAW_CONTENT_BYTES - 50_000

_COMMON_COLUMNS = (
    "ThreatType",
    "Malware",
    "ThreatFoxId",
    "Confidence",
    "FirstSeen",
    "ValidUntil",
    "Tags",
    "Reference",
)
_KIND_COLUMNS = {
    "ip": ("IPAddress", "Port"),
    "domain": ("Domain",),
    "url": ("Url", "UrlHost", "Port", "OriginalUrl"),
    "hash": ("FileHash", "HashAlgorithm"),
}
# Every column any product watchlist has, in order (what _GetWatchlist can return).
ALL_COLUMNS = tuple(
    dict.fromkeys(
        [*(c for columns in _KIND_COLUMNS.values() for c in columns), *_COMMON_COLUMNS]
    )
)
_TITLES = {
    "ip": ("IP", "C2 and payload IP addresses with their ports"),
    "domain": ("Domain", "C2 and payload domains"),
    "url": ("URL", "Malware URLs (canonical form, with host and port)"),
    "hash": ("FileHash", "Malware file hashes"),
}
_HASH_ALGORITHMS = {
    "md5_hash": "MD5",
    "sha1_hash": "SHA1",
    "sha256_hash": "SHA256",
    "sha3_384_hash": "SHA3-384",
}
_IOC_TYPE_BY_ALGORITHM = {name: ioc_type for ioc_type, name in _HASH_ALGORITHMS.items()}
# A cell starting with one of these would run as a formula in a spreadsheet.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

Row = dict[str, str]


@dataclass(frozen=True)
class WatchlistSpec:
    """One product watchlist: alias, portal texts, search key and columns."""

    kind: str
    alias: str
    display_name: str
    description: str
    search_key: str
    columns: tuple[str, ...]
    ttl: timedelta

    def key_of(self, values: Mapping[str, str]) -> tuple[str, str]:
        """Return the row key: the search key value and the port (if any)."""
        return (values.get(self.search_key, "").strip(), values.get("Port", "").strip())


def watchlist_specs(settings: Settings) -> dict[str, WatchlistSpec]:
    """Return the spec of every watchlist the settings enable, by kind."""
    specs = {}
    for kind in settings.kinds:
        title, description = _TITLES[kind]
        columns = _KIND_COLUMNS[kind] + _COMMON_COLUMNS
        specs[kind] = WatchlistSpec(
            kind=kind,
            alias=settings.watchlist_alias(kind),
            display_name=f"ThreatFox {title} indicators",
            description=f"abuse.ch ThreatFox: {description}. Managed by the ThreatFox sync; "
            "rows expire at ValidUntil. Do not edit by hand.",
            search_key=columns[0],
            columns=columns,
            ttl=timedelta(days=settings.ttl_days[kind]),
        )
    return specs


def format_time(moment: datetime) -> str:
    """Write a UTC time as ISO 8601 with a Z, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime | None:
    """Read a time written by ``format_time`` (or any ISO 8601); None if unreadable."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _kind_values(indicator: Indicator) -> Row:
    if indicator.kind == "ip":
        return {"IPAddress": indicator.ioc, "Port": str(indicator.port or "")}
    if indicator.kind == "domain":
        return {"Domain": indicator.ioc}
    if indicator.kind == "url":
        return {
            "Url": indicator.ioc,
            "UrlHost": indicator.host or "",
            "Port": str(indicator.port or ""),
            "OriginalUrl": indicator.original,
        }
    algorithm = _HASH_ALGORITHMS.get(indicator.ioc_type, "Unknown")
    return {"FileHash": indicator.ioc, "HashAlgorithm": algorithm}


def render_row(indicator: Indicator, spec: WatchlistSpec) -> Row:
    """Turn an indicator into its watchlist row; every value is fixed for its life."""
    row = _kind_values(indicator)
    row.update(
        ThreatType=indicator.threat_type,
        Malware=indicator.malware_printable,
        ThreatFoxId=indicator.threatfox_id,
        Confidence=str(indicator.confidence_level),
        FirstSeen=format_time(indicator.first_seen),
        ValidUntil=format_time(indicator.first_seen + spec.ttl),
        Tags=", ".join(indicator.tags),
        Reference=indicator.reference or "",
    )
    return {column: row[column] for column in spec.columns}


def indicator_from_row(
    spec: WatchlistSpec, values: Mapping[str, str]
) -> Indicator | None:
    """Read a row back as an indicator, so today's filters can judge old rows.

    Rows only carry the printable malware name, so a malware filter given as a
    Malpedia id cannot match rows written earlier. None when the row is not one
    of ours (no readable confidence or first seen).
    """
    first_seen = parse_time(values.get("FirstSeen", ""))
    confidence = values.get("Confidence", "").strip()
    if first_seen is None or not confidence.isdigit():
        return None
    port = values.get("Port", "").strip()
    algorithm = values.get("HashAlgorithm", "")
    ioc_type = {
        "ip": "ip:port",
        "domain": "domain",
        "url": "url",
        "hash": _IOC_TYPE_BY_ALGORITHM.get(algorithm, "sha256_hash"),
    }[spec.kind]
    return Indicator(
        kind=spec.kind,
        ioc=values.get(spec.search_key, "").strip(),
        port=int(port) if port.isdigit() else None,
        ioc_type=ioc_type,
        threatfox_id=values.get("ThreatFoxId", "").strip(),
        threat_type=values.get("ThreatType", ""),
        malware="",
        malware_printable=values.get("Malware", ""),
        malware_alias=(),
        confidence_level=int(confidence),
        first_seen=first_seen,
        reference=values.get("Reference") or None,
        tags=tuple(tag for tag in values.get("Tags", "").split(", ") if tag),
        original=values.get("OriginalUrl") or values.get(spec.search_key, ""),
        host=values.get("UrlHost") or None,
    )


def _cell(value: str) -> str:
    # Quoting by the csv module does not stop a spreadsheet evaluating =cmd|...;
    # a leading apostrophe does, and Sentinel keeps it as plain text.
    if value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def render_csv(spec: WatchlistSpec, rows: Iterable[Row]) -> str:
    """Render rows as the CSV Sentinel expects: header, then one line per row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(spec.columns)
    for row in rows:
        writer.writerow([_cell(row[column]) for column in spec.columns])
    return buffer.getvalue()


def row_size_problem(spec: WatchlistSpec, row: Row) -> str | None:
    """Say why a row cannot be uploaded (too long), or None when it fits."""
    line = render_csv(spec, [row]).split("\r\n", 1)[1]
    if len(line) > MAX_LINE_CHARS or len(line.encode()) > MAX_ROW_BYTES:
        return "row_too_long"
    return None


def split_into_uploads(spec: WatchlistSpec, rows: Sequence[Row]) -> list[str]:
    """Split rows into as few rawContent bodies as the size limit allows."""
    header = render_csv(spec, [])
    uploads: list[str] = []
    lines: list[str] = []
    size = len(header.encode())
    for row in rows:
        line = render_csv(spec, [row])[len(header) :]
        line_size = len(line.encode())
        if lines and size + line_size > _UPLOAD_BUDGET_BYTES:
            uploads.append(header + "".join(lines))
            lines, size = [], len(header.encode())
        lines.append(line)
        size += line_size
    if lines:
        uploads.append(header + "".join(lines))
    return uploads


@dataclass(frozen=True)
class ExistingItem:
    """A watchlist item as Sentinel holds it."""

    item_id: str
    values: Row


@dataclass(frozen=True)
class Deletion:
    """One item to delete, with why (expired, allowlisted, withdrawn, duplicate...)."""

    item_id: str
    reason: str
    key: tuple[str, str]


@dataclass
class WatchlistPlan:
    """Changes that bring one watchlist to its desired state."""

    spec: WatchlistSpec
    adds: list[Row] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)
    already_present: int = 0
    kept_from_earlier: int = 0
    unmanaged: int = 0
    existing: int = 0


# Says why an existing row is no longer wanted (allow-listed, filtered, withdrawn).
RowVerdict = Callable[[WatchlistSpec, Row], str | None]


def _choose_survivor(items: list[ExistingItem]) -> ExistingItem:
    # Keep the row that stays valid longest; rows we cannot date sort last.
    def validity(item: ExistingItem) -> tuple[bool, datetime]:
        until = parse_time(item.values.get("ValidUntil", ""))
        return (until is not None, until or datetime.min.replace(tzinfo=UTC))

    return max(items, key=validity)


def _plan_existing_key(
    spec: WatchlistSpec,
    key: tuple[str, str],
    items: list[ExistingItem],
    now: datetime,
    unwanted: RowVerdict,
    plan: WatchlistPlan,
) -> bool:
    """Plan deletions for one key's existing items; return True if one survives."""
    live: list[ExistingItem] = []
    for item in items:
        until = parse_time(item.values.get("ValidUntil", ""))
        reason = unwanted(spec, item.values)
        if reason is None and until is not None and until <= now:
            reason = "expired"
        if reason is not None:
            plan.deletions.append(Deletion(item.item_id, reason, key))
            continue
        if until is None:
            plan.unmanaged += 1
        live.append(item)
    if not live:
        return False
    survivor = _choose_survivor(live)
    for item in live:
        if item is not survivor:
            plan.deletions.append(Deletion(item.item_id, "duplicate", key))
    return True


def plan_watchlist(
    spec: WatchlistSpec,
    desired: Sequence[Row],
    existing: Sequence[ExistingItem],
    now: datetime,
    unwanted: RowVerdict,
) -> WatchlistPlan:
    """Compare the feed's rows with what the watchlist holds and plan the changes.

    Desired state: the feed's rows, plus existing rows that are still valid and
    still wanted. A key already present is never rewritten, even if the feed's
    copy differs (say a raised confidence): see the module docstring.
    """
    plan = WatchlistPlan(spec=spec, existing=len(existing))
    by_key: dict[tuple[str, str], list[ExistingItem]] = {}
    for item in existing:
        by_key.setdefault(spec.key_of(item.values), []).append(item)

    present = {
        key
        for key, items in by_key.items()
        if _plan_existing_key(spec, key, items, now, unwanted, plan)
    }

    desired_keys: set[tuple[str, str]] = set()
    for row in desired:
        key = spec.key_of(row)
        if key in desired_keys:
            continue
        desired_keys.add(key)
        if key in present:
            plan.already_present += 1
        elif (parse_time(row["ValidUntil"]) or now) > now:
            plan.adds.append(row)
    plan.kept_from_earlier = len(present - desired_keys)
    return plan
