"""One-shot faults shared by the ThreatFox and Sentinel stand-ins.

A fault replaces, delays or damages the answer to one request. Tests queue faults
on a ``FaultQueue``; each request takes the first queued fault whose ``on`` matches
its operation kind.

Dropping a connection honestly needs help from the server: once uvicorn has written
the status line nothing can be taken back, and an app that returns without an answer
gets a 500 from uvicorn. So ``DroppingH11Protocol`` (used by ``StandIn`` and by
``python -m standin``) hands each request a marker; a ``DropResponse`` sets it and the
protocol then aborts the TCP connection before a single response byte is written.
The client sees a connection closed without a response. Served by a plain uvicorn,
a ``DropResponse`` degrades to uvicorn's own 500.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "DropResponse",
    "DroppingH11Protocol",
    "Fault",
    "FaultKind",
    "FaultQueue",
    "apply_fault",
    "apply_then_drop",
    "arm_error",
    "auth_failure",
    "cut_body",
    "delay",
    "drop_connection",
    "envelope",
    "http_error",
    "truncated_json",
]

FaultKind = Literal[
    "status", "json", "delay", "truncate", "cut", "drop", "apply_then_drop"
]

DROP_MARKER = "standin.drop"

HTML_ERROR_PAGE = (
    "<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>{status} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Fault:
    """One damaged answer.

    kind:
      status           answer ``status`` with ``body`` (HTML page by default) and ``headers``
      json             answer ``status`` with ``payload`` as JSON (any envelope)
      delay            sleep ``seconds`` then answer normally (client timeouts)
      truncate         answer normally but send only the first ``keep`` bytes (default
                       half) as a complete response: valid HTTP, broken JSON
      cut              send the status line and half the body, then close: the client
                       sees a response that ends early (the request was applied)
      drop             close the connection before any response byte (not applied)
      apply_then_drop  apply the request, then drop: the service did it, the client
                       never heard
    on: operation kind this fault waits for (e.g. "item_put", "write"); None = any.
    """

    kind: FaultKind
    status: int = 503
    body: str | None = None
    content_type: str = "text/html"
    headers: dict[str, str] = field(default_factory=dict)
    payload: Any = None
    seconds: float = 0.0
    keep: int | None = None
    on: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        """Build a fault from the control API's JSON form (same field names)."""
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def http_error(
    status: int = 502,
    body: str | None = None,
    retry_after: int | None = None,
    on: str | None = None,
) -> Fault:
    """A status with an HTML page (upstream 5xx answers are HTML)."""
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return Fault("status", status=status, body=body, headers=headers, on=on)


def arm_error(
    status: int = 503,
    code: str = "ServiceUnavailable",
    retry_after: int | None = None,
    on: str | None = None,
) -> Fault:
    """A status with an ARM error body."""
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    body = json.dumps({"error": {"code": code, "message": "Injected fault."}})
    return Fault(
        "status",
        status=status,
        body=body,
        content_type="application/json",
        headers=headers,
        on=on,
    )


def envelope(payload: Any, status: int = 200, on: str | None = None) -> Fault:
    """Answer any JSON document, e.g. {"query_status": "ok", "data": "a string"}."""
    return Fault("json", status=status, payload=payload, on=on)


def auth_failure(
    status: int = 401, query_status: str = "unknown_auth_key", on: str | None = None
) -> Fault:
    """A ThreatFox auth refusal regardless of the key sent."""
    payload = {"query_status": query_status, "data": "Injected auth failure"}
    return Fault("json", status=status, payload=payload, on=on)


def delay(seconds: float, on: str | None = None) -> Fault:
    return Fault("delay", seconds=seconds, on=on)


def truncated_json(keep: int | None = None, on: str | None = None) -> Fault:
    return Fault("truncate", keep=keep, on=on)


def cut_body(on: str | None = None) -> Fault:
    return Fault("cut", on=on)


def drop_connection(on: str | None = None) -> Fault:
    return Fault("drop", on=on)


def apply_then_drop(on: str | None = None) -> Fault:
    return Fault("apply_then_drop", on=on)


class FaultQueue:
    """Thread-safe queue of one-shot faults (tests add from another thread)."""

    def __init__(self) -> None:
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()

    def push(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def extend(self, faults: Iterable[Fault]) -> None:
        self.push(*faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def take(self, *kinds: str) -> Fault | None:
        """Remove and return the first fault aimed at any of ``kinds`` (or at any)."""
        with self._lock:
            for fault in self._faults:
                if fault.on is None or fault.on in kinds:
                    self._faults.remove(fault)
                    return fault
        return None


class DropResponse(Response):
    """Ask ``DroppingH11Protocol`` to abort the connection without answering."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        marker = scope.get(DROP_MARKER)
        if isinstance(marker, list):
            marker.append(True)
            return

        # Not served through our protocol: the best left is an error answer.
        await super().__call__(scope, receive, send)


class CutResponse(Response):
    """Announce the full length, send half the body, then stop (uvicorn closes)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        half = self.body[: len(self.body) // 2]
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": self.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": half, "more_body": True})


class DroppingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a real connection drop, with TCP_NODELAY."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inner_app = self.app
        self.app = self._guarded

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Without TCP_NODELAY the separate header and body writes meet the client's
        # delayed ACK and every request costs about 40 ms on loopback.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[arg-type]

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        marker: list[bool] = []
        scope[DROP_MARKER] = marker
        await self._inner_app(scope, receive, send)
        if marker:
            self.transport.abort()

            # Let connection_lost run so uvicorn does not answer 500 instead.
            await asyncio.sleep(0)


async def apply_fault(
    fault: Fault | None, produce: Callable[[], Awaitable[Response]]
) -> Response:
    """Answer with ``produce()`` as damaged by ``fault``."""
    if fault is None:
        return await produce()

    match fault.kind:
        case "delay":
            await asyncio.sleep(fault.seconds)
            return await produce()
        case "status":
            body = fault.body
            if body is None:
                body = HTML_ERROR_PAGE.format(status=fault.status)
            return Response(
                body, fault.status, headers=fault.headers, media_type=fault.content_type
            )
        case "json":
            content = json.dumps(fault.payload).encode()
            return Response(
                content,
                fault.status,
                headers=fault.headers,
                media_type="application/json",
            )
        case "drop":
            return DropResponse()
        case "apply_then_drop":
            await produce()
            return DropResponse()
        case "truncate":
            answer = await produce()
            keep = fault.keep if fault.keep is not None else len(answer.body) // 2
            return Response(
                bytes(answer.body[:keep]),
                answer.status_code,
                media_type=answer.media_type,
            )
        case "cut":
            answer = await produce()
            return CutResponse(
                bytes(answer.body), answer.status_code, media_type=answer.media_type
            )
    raise ValueError(f"unknown fault kind {fault.kind!r}")
