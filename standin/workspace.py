"""Watchlists and items of one Sentinel workspace, with the service's write rules.

Rules modelled (see /work/shared/reference/sentinel-api.md sections 3-6):
- a PUT with rawContent appends rows; a new row identical in every column to an
  existing row, or to an earlier new row, is dropped; nothing is ever deleted;
- the CSV must hold the search-key column, with no blank value in it;
- rawContent over 3.8 MB or any line over 10,240 characters is refused;
- every item created, updated or deleted counts against a monthly change limit; a
  rawContent PUT that would cross it is refused whole. Deleting a whole watchlist is
  not counted (the service's accounting for that is undocumented).
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MAX_LINE_CHARS",
    "MAX_RAW_CONTENT_BYTES",
    "ItemRecord",
    "WatchlistRecord",
    "Workspace",
    "WorkspaceError",
]

MAX_RAW_CONTENT_BYTES = 3_800_000
MAX_LINE_CHARS = 10_240
SOURCES = ("Local file", "Remote storage")
REQUIRED_PROPERTIES = ("displayName", "provider", "source", "itemsSearchKey")
ALIAS_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_"
)


class WorkspaceError(Exception):
    """A refused request; carries the HTTP status and ARM error code."""

    def __init__(self, message: str, status: int = 400, code: str = "BadRequest"):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _row_identity(values: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


@dataclass
class ItemRecord:
    item_id: str
    values: dict[str, str]
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)
    etag: str = field(default_factory=lambda: f'"{uuid.uuid4()}"')


@dataclass
class WatchlistRecord:
    alias: str
    properties: dict[str, Any]
    watchlist_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)
    etag: str = field(default_factory=lambda: f'"{uuid.uuid4()}"')
    items: dict[str, ItemRecord] = field(default_factory=dict)

    @property
    def search_key(self) -> str:
        return str(self.properties["itemsSearchKey"])


def _check_alias(alias: str) -> None:
    if not 3 <= len(alias) <= 64 or not set(alias) <= ALIAS_CHARS:
        raise WorkspaceError(f"Invalid watchlist alias '{alias}'.")
    if not (alias[0].isalnum() and alias[-1].isalnum()):
        raise WorkspaceError(f"Invalid watchlist alias '{alias}'.")


def _check_properties(properties: dict[str, Any]) -> None:
    for name in REQUIRED_PROPERTIES:
        value = properties.get(name)
        if not isinstance(value, str) or not value.strip():
            raise WorkspaceError(f"The '{name}' property is required.")
    if properties["source"] not in SOURCES:
        raise WorkspaceError(
            f"Invalid source '{properties['source']}'; expected one of {list(SOURCES)}."
        )
    skip = properties.get("numberOfLinesToSkip", 0)
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise WorkspaceError("numberOfLinesToSkip must be a non-negative integer.")


def _check_size(raw_content: str) -> None:
    size = len(raw_content.encode("utf-8"))
    if size > MAX_RAW_CONTENT_BYTES:
        raise WorkspaceError(
            f"The rawContent is {size} bytes; the limit for a local file upload "
            f"is {MAX_RAW_CONTENT_BYTES} bytes (3.8 MB)."
        )
    for number, line in enumerate(raw_content.splitlines(), start=1):
        if len(line) > MAX_LINE_CHARS:
            raise WorkspaceError(
                f"Line {number} is {len(line)} characters long; the limit is "
                f"{MAX_LINE_CHARS}."
            )


def parse_raw_content(
    raw_content: str, skip: int, search_key: str
) -> list[dict[str, str]]:
    """Rows of a CSV upload as column -> value maps, validated like the service."""
    _check_size(raw_content)
    rows = [row for row in csv.reader(io.StringIO(raw_content, newline="")) if row]
    rows = rows[skip:]
    if not rows:
        raise WorkspaceError("No header row found in the provided rawContent.")

    header = [name.strip() for name in rows[0]]
    if search_key not in header:
        raise WorkspaceError(
            f"The itemsSearchKey '{search_key}' is not a column of the rawContent header."
        )

    parsed: list[dict[str, str]] = []
    for number, row in enumerate(rows[1:], start=1):
        if len(row) > len(header):
            raise WorkspaceError(f"Row {number} has more values than the header.")
        values = dict(zip(header, row + [""] * (len(header) - len(row)), strict=True))
        if not values[search_key].strip():
            raise WorkspaceError(
                f"Row {number} has a blank value in the search key column '{search_key}'."
            )
        parsed.append(values)

    if not parsed:
        raise WorkspaceError(
            "There are no watchlist items found in the provided rawContent."
        )
    return parsed


class Workspace:
    """Watchlists, items, rules and the monthly change counter of one workspace."""

    def __init__(self, name: str, change_limit: int) -> None:
        self.name = name
        self.change_limit = change_limit
        self.changes = 0
        self.watchlists: dict[str, WatchlistRecord] = {}
        self.rules: dict[str, dict[str, Any]] = {}

    def _spend(self, count: int) -> None:
        if self.changes + count > self.change_limit:
            raise WorkspaceError(
                f"Watchlist item change limit exceeded: this request needs {count} "
                f"change(s), {self.changes} of {self.change_limit} allowed this month "
                "are used."
            )
        self.changes += count

    def watchlist(self, alias: str) -> WatchlistRecord:
        record = self.watchlists.get(alias.lower())
        if record is None:
            raise WorkspaceError(
                f"Watchlist '{alias}' not found.", status=404, code="NotFound"
            )
        return record

    def put_watchlist(
        self, alias: str, properties: dict[str, Any]
    ) -> tuple[WatchlistRecord, bool]:
        """Create or update; returns the record and whether it was created."""
        _check_alias(alias)
        _check_properties(properties)
        existing = self.watchlists.get(alias.lower())
        if existing is not None and properties["itemsSearchKey"] != existing.search_key:
            raise WorkspaceError(
                "The itemsSearchKey of an existing watchlist cannot be changed "
                f"('{existing.search_key}' to '{properties['itemsSearchKey']}')."
            )

        raw_content = properties.get("rawContent")
        rows: list[dict[str, str]] = []
        if raw_content is not None:
            if properties.get("contentType") != "text/csv":
                raise WorkspaceError(
                    "contentType must be 'text/csv' when rawContent is given."
                )
            if not isinstance(raw_content, str):
                raise WorkspaceError("rawContent must be a string.")
            skip = int(properties.get("numberOfLinesToSkip", 0))
            rows = parse_raw_content(raw_content, skip, properties["itemsSearchKey"])

        record = existing or WatchlistRecord(alias, {})
        new_rows = self._new_rows(record, rows)
        self._spend(len(new_rows))

        kept = {
            name: value for name, value in properties.items() if name != "rawContent"
        }
        record.properties = {**record.properties, **kept}
        record.updated = _now()
        record.etag = f'"{uuid.uuid4()}"'
        for values in new_rows:
            item = ItemRecord(str(uuid.uuid4()), values)
            record.items[item.item_id] = item
        self.watchlists[alias.lower()] = record
        return record, existing is None

    @staticmethod
    def _new_rows(
        record: WatchlistRecord, rows: list[dict[str, str]]
    ) -> list[dict[str, str]]:
        """Rows not identical in every column to an existing or earlier new row."""
        seen = {_row_identity(item.values) for item in record.items.values()}
        fresh: list[dict[str, str]] = []
        for values in rows:
            identity = _row_identity(values)
            if identity not in seen:
                seen.add(identity)
                fresh.append(values)
        return fresh

    def delete_watchlist(self, alias: str) -> bool:
        return self.watchlists.pop(alias.lower(), None) is not None

    def put_item(
        self, alias: str, item_id: str, body: dict[str, Any]
    ) -> tuple[ItemRecord, bool]:
        record = self.watchlist(alias)
        try:
            uuid.UUID(item_id)
        except ValueError:
            raise WorkspaceError(
                f"The watchlist item id '{item_id}' is not a GUID."
            ) from None

        properties = body.get("properties")
        values = (
            properties.get("itemsKeyValue") if isinstance(properties, dict) else None
        )
        if not isinstance(values, dict) or not values:
            raise WorkspaceError("The 'itemsKeyValue' property is required.")
        if not str(values.get(record.search_key, "")).strip():
            raise WorkspaceError(
                f"itemsKeyValue has no value for the search key '{record.search_key}'."
            )

        self._spend(1)
        text_values = {
            str(name): "" if value is None else str(value)
            for name, value in values.items()
        }
        existing = record.items.get(item_id.lower())
        if existing is not None:
            existing.values = text_values
            existing.updated = _now()
            existing.etag = f'"{uuid.uuid4()}"'
            return existing, False
        item = ItemRecord(item_id.lower(), text_values)
        record.items[item.item_id] = item
        return item, True

    def item(self, alias: str, item_id: str) -> ItemRecord:
        item = self.watchlist(alias).items.get(item_id.lower())
        if item is None:
            raise WorkspaceError(
                f"Watchlist item '{item_id}' not found.", status=404, code="NotFound"
            )
        return item

    def delete_item(self, alias: str, item_id: str) -> bool:
        record = self.watchlist(alias)
        if item_id.lower() not in record.items:
            return False
        self._spend(1)
        del record.items[item_id.lower()]
        return True
