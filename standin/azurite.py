"""Run Azurite (Microsoft's storage emulator, from node_modules) on a free port.

The state document and the sync lock live in blob storage; tests and the demo
exercise them against a real Azurite rather than a fake.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

__all__ = ["Azurite", "AZURITE_ACCOUNT", "AZURITE_KEY"]

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite-blob"
# Azurite's published development account; not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_PORT_LINE = re.compile(r"successfully listens on http://127\.0\.0\.1:(\d+)")


class Azurite:
    """An Azurite blob service on 127.0.0.1, started and stopped by us."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._workdir = tempfile.mkdtemp(prefix="azurite-")
        self.port = 0

    def start(self, timeout: float = 30.0) -> Azurite:
        """Start Azurite on a free port and wait until it listens."""
        if not AZURITE_BIN.exists():
            message = f"Azurite is not installed at {AZURITE_BIN}; run `npm install` (make does)."
            raise RuntimeError(message)
        self._process = subprocess.Popen(
            [
                str(AZURITE_BIN),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--location",
                self._workdir,
                "--debug",
                str(Path(self._workdir) / "debug.log"),
                "--skipApiVersionCheck",
                "--disableTelemetry",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.port = self._wait_for_port(timeout)
        return self

    def _wait_for_port(self, timeout: float) -> int:
        assert self._process is not None and self._process.stdout is not None
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            line = self._process.stdout.readline()
            if not line and self._process.poll() is not None:
                break
            seen.append(line)
            match = _PORT_LINE.search(line)
            if match:
                # Keep draining its output so a chatty Azurite never blocks on a full pipe.
                threading.Thread(target=self._drain, daemon=True).start()
                return int(match.group(1))
        self.stop()
        raise RuntimeError("Azurite did not start: " + "".join(seen)[-2000:])

    def _drain(self) -> None:
        process = self._process
        if process is not None and process.stdout is not None:
            for _line in process.stdout:
                pass

    @property
    def connection_string(self) -> str:
        """Connection string for azure-storage-blob (development account)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};"
        )

    def stop(self) -> None:
        """Stop Azurite and remove its folder."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
