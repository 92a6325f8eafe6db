"""Sentinel management API stand-in: watchlists, items and Scheduled alert rules.

Served under the real ARM path; a workspace is known by its name only and is created
on first use. Every request passes the same gate, in this order: count the call,
bearer token (401), api-version (400), latency, throttle (429), then at most one
fault (queued, write cut-off, random), then the handler.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from standin.arm_json import arm_error_response, item_json, rule_json, watchlist_json
from standin.faults import apply_fault
from standin.rules import validate_scheduled_rule
from standin.sentinel_state import (
    API_VERSION,
    DEFAULT_TABLES,
    RandomFailures,
    SentinelState,
)
from standin.workspace import Workspace, WorkspaceError

__all__ = [
    "API_VERSION",
    "BASE",
    "DEFAULT_TABLES",
    "RandomFailures",
    "SentinelState",
    "sentinel_routes",
]

BASE = (
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.OperationalInsights"
    "/workspaces/{ws}/providers/Microsoft.SecurityInsights"
)
T = TypeVar("T")
BUCKETS = {"GET": "reads", "PUT": "writes", "DELETE": "deletes"}


def _throttle_headers(bucket: str, remaining: int) -> dict[str, str]:
    return {f"x-ms-ratelimit-remaining-subscription-{bucket}": str(remaining)}


def _base(request: Request) -> str:
    params = request.path_params
    return BASE.format(sub=params["sub"], rg=params["rg"], ws=params["ws"])


def _page(
    request: Request, records: list[T], size: int, shape: Callable[[T], dict[str, Any]]
) -> JSONResponse:
    """One page of ``records`` (shaped only for that page) and an absolute nextLink."""
    token = request.query_params.get("$skipToken", "0")
    start = int(token) if token.isdigit() else 0
    page: dict[str, Any] = {
        "value": [shape(one) for one in records[start : start + size]]
    }
    if start + size < len(records):
        # ARM writes the token parameter with a literal "$".
        query = f"api-version={API_VERSION}&$skipToken={start + size}"
        page["nextLink"] = str(request.url.replace(query=query))
    return JSONResponse(page)


Handler = Callable[[Request, Workspace], Response]


async def _gate(
    state: SentinelState, request: Request, kind: str, handler: Handler
) -> Response:
    method = request.method
    bucket = BUCKETS[method]
    with state.lock:
        state.calls[kind] += 1

    authorization = request.headers.get("authorization", "")
    if not authorization.startswith("Bearer ") or not authorization[7:].strip():
        return arm_error_response(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing or invalid.",
        )
    version = request.query_params.get("api-version")
    if version is None:
        return arm_error_response(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if version != API_VERSION:
        return arm_error_response(
            400,
            "NoRegisteredProviderFound",
            f"No registered resource provider found for API version '{version}'. "
            f"The supported api-versions are '{API_VERSION}'.",
        )

    if state.latency > 0:
        await asyncio.sleep(state.latency)
    verdict = state.throttle.take(bucket)
    headers = {} if verdict is None else _throttle_headers(bucket, verdict.remaining)
    if verdict is not None and not verdict.allowed:
        headers["Retry-After"] = str(verdict.retry_after)
        return arm_error_response(
            429,
            "TooManyRequests",
            f"Number of '{bucket}' requests for subscription exceeded the limit. "
            f"Please try again after '{verdict.retry_after}' seconds.",
            headers,
        )

    async def produce() -> Response:
        workspace = state.workspace(request.path_params["ws"])
        try:
            with state.lock:
                response = handler(request, workspace)
        except WorkspaceError as error:
            response = arm_error_response(error.status, error.code, error.message)
        if response.status_code < 300:
            with state.lock:
                state.applied[kind] += 1
        response.headers.update(headers)
        return response

    return await apply_fault(state._pick_fault(kind, method), produce)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        raise WorkspaceError("The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise WorkspaceError("The request body must be a JSON object.")
    return document


def _watchlist_put_kind(body: bytes) -> str:
    """raw_content_put when the body carries rawContent, else watchlist_put."""
    try:
        properties = _parse(body).get("properties")
    except WorkspaceError:
        return "watchlist_put"
    if isinstance(properties, dict) and "rawContent" in properties:
        return "raw_content_put"
    return "watchlist_put"


def _put_watchlist(
    request: Request, workspace: Workspace, body: dict[str, Any]
) -> Response:
    properties = body.get("properties")
    if not isinstance(properties, dict):
        raise WorkspaceError("The 'properties' object is required.")
    record, created = workspace.put_watchlist(request.path_params["alias"], properties)
    return JSONResponse(watchlist_json(_base(request), record), 201 if created else 200)


def _put_item(request: Request, workspace: Workspace, body: dict[str, Any]) -> Response:
    alias = request.path_params["alias"]
    item, created = workspace.put_item(alias, request.path_params["item"], body)
    return JSONResponse(item_json(_base(request), alias, item), 201 if created else 200)


def _put_rule(
    state: SentinelState, request: Request, workspace: Workspace, body: dict[str, Any]
) -> Response:
    rule_id = request.path_params["rule"]
    stored = workspace.rules.get(rule_id.lower())
    etag = body.get("etag")
    if state.enforce_etag and stored is not None and etag and etag != stored["etag"]:
        raise WorkspaceError(
            "The etag does not match the rule's current etag.", 409, "Conflict"
        )

    properties = validate_scheduled_rule(body, state.tables, state.known_tables)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    new = {
        "kind": "Scheduled",
        "etag": f'"{uuid.uuid4()}"',
        "properties": {**properties, "lastModifiedUtc": now},
    }
    workspace.rules[rule_id.lower()] = new
    return JSONResponse(rule_json(_base(request), rule_id, new), 200 if stored else 201)


def _get_rule(request: Request, workspace: Workspace) -> Response:
    rule_id = request.path_params["rule"]
    stored = workspace.rules.get(rule_id.lower())
    if stored is None:
        raise WorkspaceError(f"Alert rule '{rule_id}' not found.", 404, "NotFound")
    return JSONResponse(rule_json(_base(request), rule_id, stored))


def _deleted(removed: bool) -> Response:
    return Response(status_code=200 if removed else 204)


def sentinel_routes(state: SentinelState) -> list[Route]:
    async def watchlists(request: Request) -> Response:
        def listing(request: Request, workspace: Workspace) -> Response:
            base = _base(request)
            records = list(workspace.watchlists.values())
            return _page(
                request, records, state.page_size, lambda wl: watchlist_json(base, wl)
            )

        return await _gate(state, request, "watchlist_list", listing)

    async def watchlist(request: Request) -> Response:
        alias = request.path_params["alias"]
        if request.method == "GET":
            return await _gate(
                state,
                request,
                "watchlist_get",
                lambda r, w: JSONResponse(watchlist_json(_base(r), w.watchlist(alias))),
            )
        if request.method == "DELETE":
            return await _gate(
                state,
                request,
                "watchlist_delete",
                lambda r, w: _deleted(w.delete_watchlist(alias)),
            )

        body = await request.body()
        kind = _watchlist_put_kind(body)
        return await _gate(
            state, request, kind, lambda r, w: _put_watchlist(r, w, _parse(body))
        )

    async def items(request: Request) -> Response:
        alias = request.path_params["alias"]

        def listing(request: Request, workspace: Workspace) -> Response:
            record = workspace.watchlist(alias)
            base = _base(request)
            records = list(record.items.values())
            return _page(
                request,
                records,
                state.page_size,
                lambda item: item_json(base, record.alias, item),
            )

        return await _gate(state, request, "item_list", listing)

    async def item(request: Request) -> Response:
        alias = request.path_params["alias"]
        item_id = request.path_params["item"]
        if request.method == "GET":
            return await _gate(
                state,
                request,
                "item_get",
                lambda r, w: JSONResponse(
                    item_json(_base(r), alias, w.item(alias, item_id))
                ),
            )
        if request.method == "DELETE":
            return await _gate(
                state,
                request,
                "item_delete",
                lambda r, w: _deleted(w.delete_item(alias, item_id)),
            )

        body = await request.body()
        return await _gate(
            state, request, "item_put", lambda r, w: _put_item(r, w, _parse(body))
        )

    async def rules(request: Request) -> Response:
        def listing(request: Request, workspace: Workspace) -> Response:
            base = _base(request)
            records = list(workspace.rules.items())
            return _page(
                request,
                records,
                state.page_size,
                lambda pair: rule_json(base, pair[0], pair[1]),
            )

        return await _gate(state, request, "rule_list", listing)

    async def rule(request: Request) -> Response:
        rule_id = request.path_params["rule"]
        if request.method == "GET":
            return await _gate(state, request, "rule_get", _get_rule)
        if request.method == "DELETE":
            return await _gate(
                state,
                request,
                "rule_delete",
                lambda r, w: _deleted(w.rules.pop(rule_id.lower(), None) is not None),
            )

        body = await request.body()
        return await _gate(
            state,
            request,
            "rule_put",
            lambda r, w: _put_rule(state, r, w, _parse(body)),
        )

    methods = ["GET", "PUT", "DELETE"]
    return [
        Route(f"{BASE}/watchlists", watchlists, methods=["GET"]),
        Route(f"{BASE}/watchlists/{{alias}}", watchlist, methods=methods),
        Route(f"{BASE}/watchlists/{{alias}}/watchlistItems", items, methods=["GET"]),
        Route(
            f"{BASE}/watchlists/{{alias}}/watchlistItems/{{item}}",
            item,
            methods=methods,
        ),
        Route(f"{BASE}/alertRules", rules, methods=["GET"]),
        Route(f"{BASE}/alertRules/{{rule}}", rule, methods=methods),
    ]
