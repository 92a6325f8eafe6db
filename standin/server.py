"""One Starlette app serving both stand-ins, and a runner for tests and benchmarks.

Paths: ThreatFox at its real paths ``/api/v1/`` and ``/v2/files/exports/{key}/{name}``;
Sentinel at ``/subscriptions/...``; the control API at ``/_standin/...``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

from standin.control import control_routes
from standin.faults import DroppingH11Protocol
from standin.sentinel import SentinelState, sentinel_routes
from standin.threatfox import ThreatFoxState, threatfox_routes

__all__ = ["StandIn", "create_app", "serve"]

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 10.0


def create_app(threatfox: ThreatFoxState, sentinel: SentinelState) -> Starlette:
    routes = [
        *threatfox_routes(threatfox),
        *sentinel_routes(sentinel),
        *control_routes(threatfox, sentinel),
    ]
    return Starlette(routes=routes)


def _config(app: Starlette, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=DroppingH11Protocol,
        lifespan="off",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=1,
    )


def serve(
    threatfox: ThreatFoxState,
    sentinel: SentinelState,
    host: str = "127.0.0.1",
    port: int = 8088,
    log_level: str = "info",
) -> None:
    """Run in the foreground until interrupted (``python -m standin``)."""
    config = _config(create_app(threatfox, sentinel), log_level)
    config.host = host
    config.port = port
    uvicorn.Server(config).run()


class StandIn:
    """Both stand-ins served by uvicorn on 127.0.0.1 in a background thread.

    ``StandIn()`` starts at once on a free port; use it as a context manager or call
    ``stop()``. ``threatfox`` and ``sentinel`` are the live state objects.
    """

    def __init__(
        self,
        auth_key: str = "test-auth-key",
        threatfox: ThreatFoxState | None = None,
        sentinel: SentinelState | None = None,
        log_level: str = "warning",
    ) -> None:
        self.threatfox = threatfox or ThreatFoxState(auth_key)
        self.sentinel = sentinel or SentinelState()
        self.app = create_app(self.threatfox, self.sentinel)

        # Bind first so the port is known before the server thread runs.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"

        self._server = uvicorn.Server(_config(self.app, log_level))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"standin-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._wait_started()

    def _wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the stand-in server did not start")
            time.sleep(0.01)

    @property
    def threatfox_url(self) -> str:
        """The get_iocs endpoint, with the trailing slash the real one has."""
        return f"{self.base_url}/api/v1/"

    @property
    def exports_url(self) -> str:
        """Base of the keyed export files: ``{exports_url}/{key}/{name}``."""
        return f"{self.base_url}/v2/files/exports"

    @property
    def arm_endpoint(self) -> str:
        """The ``base_url`` to give the SecurityInsights client."""
        return self.base_url

    def reset(self) -> None:
        """Empty both stand-ins and switch every fault off."""
        self.threatfox.reset()
        self.sentinel.reset()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()

    def __enter__(self) -> StandIn:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
