"""Control API under /_standin/ for a stand-in running in another process.

- ``POST /_standin/reset``: empty both stand-ins, switch every fault off.
- ``GET /_standin/counters``: ThreatFox request counts, Sentinel calls by kind,
  change counters and item counts per watchlist.
- ``POST /_standin/threatfox/records``: body is a get_iocs response or a list.
- ``POST /_standin/threatfox/config``: ``{"auth_key", "now" (ISO 8601 or null),
  "auth_status", "auth_query_status"}``, each optional.
- ``PUT /_standin/threatfox/exports/{name}``: body is the file's bytes.
- ``POST /_standin/faults``: ``{"target": "threatfox"|"sentinel", "faults": [Fault
  as JSON, e.g. {"kind": "status", "status": 502}]}``; ``DELETE`` clears both queues.
- ``POST /_standin/sentinel/config``: ``{"latency", "change_limit", "tables",
  "known_tables", "enforce_etag", "page_size", "throttle": {"enabled", "reads":
  [capacity, per_second], ...}, "random_failures": {"rate", "seed", "kinds"} | null,
  "fail_writes_after": {"count", "fault"} | null}``, each optional.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from standin.faults import Fault
from standin.sentinel import RandomFailures, SentinelState
from standin.threatfox import ThreatFoxState

__all__ = ["control_routes"]


def _configure_threatfox(state: ThreatFoxState, config: dict[str, Any]) -> None:
    if "auth_key" in config:
        state.auth_key = str(config["auth_key"])
    if "now" in config:
        now = config["now"]
        state.now = None if now is None else datetime.fromisoformat(now)
    if "auth_status" in config:
        state.auth_status = int(config["auth_status"])
    if "auth_query_status" in config:
        state.auth_query_status = str(config["auth_query_status"])


def _configure_throttle(state: SentinelState, config: dict[str, Any]) -> None:
    sizes = {
        name: (int(value[0]), float(value[1]))
        for name, value in config.items()
        if name != "enabled"
    }
    state.throttle.configure(enabled=bool(config.get("enabled", True)), **sizes)


def _configure_sentinel(state: SentinelState, config: dict[str, Any]) -> None:
    with state.lock:
        if "latency" in config:
            state.latency = float(config["latency"])
        if "change_limit" in config:
            state.set_change_limit(int(config["change_limit"]))
        if "tables" in config:
            state.tables = set(config["tables"])
        if "known_tables" in config:
            state.known_tables = set(config["known_tables"])
        if "enforce_etag" in config:
            state.enforce_etag = bool(config["enforce_etag"])
        if "page_size" in config:
            state.page_size = int(config["page_size"])
        if "random_failures" in config:
            failures = config["random_failures"]
            state.random_failures = (
                None if failures is None else RandomFailures(**failures)
            )
        if "fail_writes_after" in config:
            cutoff = config["fail_writes_after"]
            if cutoff is None:
                state.write_cutoff = None
            else:
                fault = cutoff.get("fault")
                state.fail_writes_after(
                    int(cutoff["count"]), None if fault is None else Fault(**fault)
                )
    if "throttle" in config:
        _configure_throttle(state, config["throttle"])


def control_routes(threatfox: ThreatFoxState, sentinel: SentinelState) -> list[Route]:
    async def reset(request: Request) -> Response:
        threatfox.reset()
        sentinel.reset()
        return JSONResponse({"reset": True})

    async def counters(request: Request) -> Response:
        return JSONResponse(
            {
                "threatfox": {
                    "requests": threatfox.requests,
                    "export_requests": threatfox.export_requests,
                    "records": len(threatfox.records),
                },
                "sentinel": sentinel.counters(),
            }
        )

    async def records(request: Request) -> Response:
        threatfox.set_records(await request.json())
        return JSONResponse({"records": len(threatfox.records)})

    async def threatfox_config(request: Request) -> Response:
        _configure_threatfox(threatfox, await request.json())
        return JSONResponse({"configured": True})

    async def export(request: Request) -> Response:
        threatfox.set_export(request.path_params["name"], await request.body())
        return JSONResponse({"stored": request.path_params["name"]})

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            threatfox.faults.clear()
            sentinel.faults.clear()
            return JSONResponse({"cleared": True})
        document = await request.json()
        queue = (
            threatfox.faults if document["target"] == "threatfox" else sentinel.faults
        )
        queue.extend(Fault.from_json(fault) for fault in document["faults"])
        return JSONResponse({"queued": len(queue)})

    async def sentinel_config(request: Request) -> Response:
        _configure_sentinel(sentinel, await request.json())
        return JSONResponse({"configured": True})

    return [
        Route("/_standin/reset", reset, methods=["POST"]),
        Route("/_standin/counters", counters, methods=["GET"]),
        Route("/_standin/threatfox/records", records, methods=["POST"]),
        Route("/_standin/threatfox/config", threatfox_config, methods=["POST"]),
        Route("/_standin/threatfox/exports/{name}", export, methods=["PUT"]),
        Route("/_standin/faults", faults, methods=["POST", "DELETE"]),
        Route("/_standin/sentinel/config", sentinel_config, methods=["POST"]),
    ]
