"""ThreatFox stand-in: the get_iocs endpoint and the keyed export files.

Served at the real paths, relative to the stand-in's base URL: ``POST /api/v1/`` and
``GET /v2/files/exports/{key}/{name}``.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from standin.faults import FaultQueue, apply_fault

__all__ = ["EXPORT_NAMES", "ThreatFoxState", "threatfox_routes"]

EXPORT_NAMES = ("full.csv.zip", "recent.csv", "recent.json", "full.json.zip")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
NO_RESULT_TEXT = "Your search did not yield any results"
DAYS_TEXT = "Number of days must be an integer between 1 and 7"


def _first_seen(record: dict[str, Any]) -> datetime | None:
    raw = record.get("first_seen")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.strptime(raw, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _records_from_document(document: Any) -> list[dict[str, Any]]:
    """Accept a get_iocs response or a bare list of records."""
    if isinstance(document, dict):
        document = document.get("data", [])
    if not isinstance(document, list):
        raise ValueError("feed must be a get_iocs response or a list of records")
    return [dict(record) for record in document]


class ThreatFoxState:
    """Everything the ThreatFox stand-in serves; tests change it at run time.

    ``now`` is the stand-in's clock for the ``days`` window; ``None`` serves every
    record whatever its date (the default, handy for fixed samples).
    """

    def __init__(self, auth_key: str = "test-auth-key") -> None:
        self._lock = threading.Lock()
        self.auth_key = auth_key
        self.now: datetime | None = None
        self.auth_status = 401
        self.auth_query_status = "unknown_auth_key"
        self.faults = FaultQueue()
        self._records: list[dict[str, Any]] = []
        self._exports: dict[str, bytes] = {}
        self.requests = 0
        self.export_requests = 0
        self.last_headers: dict[str, str] = {}
        self.last_body: bytes = b""

    def reset(self) -> None:
        """Back to an empty feed, no faults, zero counters (the key is kept)."""
        with self._lock:
            self._records = []
            self._exports = {}
            self.now = None
            self.auth_status = 401
            self.auth_query_status = "unknown_auth_key"
            self.requests = 0
            self.export_requests = 0
            self.last_headers = {}
            self.last_body = b""
        self.faults.clear()

    @property
    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records)

    def set_records(self, records: Any) -> None:
        """Serve these records (a list, or a whole get_iocs response)."""
        parsed = _records_from_document(records)
        with self._lock:
            self._records = parsed

    def load_feed(self, path: str | Path) -> None:
        self.set_records(json.loads(Path(path).read_text(encoding="utf-8")))

    def set_export(self, name: str, content: bytes) -> None:
        if name not in EXPORT_NAMES:
            raise ValueError(f"unknown export file {name!r}")
        with self._lock:
            self._exports[name] = content

    def export(self, name: str) -> bytes | None:
        with self._lock:
            return self._exports.get(name)

    def iocs_within(self, days: int) -> list[dict[str, Any]]:
        """Records first seen within ``days`` days of ``now`` (all when now is None)."""
        records = self.records
        if self.now is None:
            return records
        start = self.now - timedelta(days=days)
        return [
            record
            for record in records
            if (seen := _first_seen(record)) is not None and start <= seen <= self.now
        ]

    def note_request(self, headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            self.requests += 1
            self.last_headers = headers
            self.last_body = body


def _envelope(status: str, data: Any = None, http_status: int = 200) -> JSONResponse:
    content: dict[str, Any] = {"query_status": status}
    if data is not None:
        content["data"] = data
    return JSONResponse(content, status_code=http_status)


def _get_iocs(state: ThreatFoxState, query: dict[str, Any]) -> JSONResponse:
    days = query.get("days", 3)

    # bool is an int in Python but not a JSON integer.
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 7:
        return _envelope("illegal_days", DAYS_TEXT)

    records = state.iocs_within(days)
    if not records:
        return _envelope("no_result", NO_RESULT_TEXT)
    return _envelope("ok", records)


def _answer_query(
    state: ThreatFoxState, headers: dict[str, str], body: bytes
) -> Response:
    if headers.get("auth-key") != state.auth_key:
        return _envelope(
            state.auth_query_status,
            "Authentication failed: unknown or missing Auth-Key",
            state.auth_status,
        )

    try:
        query = json.loads(body)
    except ValueError:
        return _envelope("unknown_operation")
    if not isinstance(query, dict):
        return _envelope("unknown_operation")

    if query.get("query") == "get_iocs":
        return _get_iocs(state, query)
    return _envelope("unknown_operation")


def threatfox_routes(state: ThreatFoxState) -> list[Route]:
    async def api(request: Request) -> Response:
        body = await request.body()
        headers = {name.lower(): value for name, value in request.headers.items()}
        state.note_request(headers, body)

        async def produce() -> Response:
            return _answer_query(state, headers, body)

        return await apply_fault(state.faults.take("get_iocs"), produce)

    async def not_post(request: Request) -> Response:
        return _envelope("http_post_expected", "HTTP POST expected", 405)

    async def export(request: Request) -> Response:
        with state._lock:
            state.export_requests += 1
        key = request.path_params["key"]
        name = request.path_params["name"]

        async def produce() -> Response:
            if key != state.auth_key:
                return Response("Unauthorized", 401, media_type="text/plain")
            content = state.export(name)
            if content is None:
                return Response("Not Found", 404, media_type="text/plain")
            return Response(content, 200, media_type="application/octet-stream")

        return await apply_fault(state.faults.take("export"), produce)

    return [
        Route("/api/v1/", api, methods=["POST"]),
        Route("/api/v1/", not_post, methods=["GET"]),
        Route("/v2/files/exports/{key}/{name}", export, methods=["GET"]),
    ]
