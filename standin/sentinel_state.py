"""Sentinel stand-in state: workspaces, fidelity switches and call counters."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from standin.faults import Fault, FaultQueue, arm_error, drop_connection
from standin.throttle import ArmThrottle
from standin.workspace import Workspace

__all__ = [
    "API_VERSION",
    "DEFAULT_TABLES",
    "RandomFailures",
    "SentinelState",
]

API_VERSION = "2021-10-01"
DEFAULT_TABLES = frozenset(
    {"CommonSecurityLog", "DeviceNetworkEvents", "DnsEvents", "Watchlist"}
)
DEFAULT_CHANGE_LIMIT = 100_000
PAGE_SIZE = 100
CLASSES = {"GET": "read", "PUT": "write", "DELETE": "delete"}
WRITE_KINDS = frozenset(
    {
        "watchlist_put",
        "raw_content_put",
        "watchlist_delete",
        "item_put",
        "item_delete",
        "rule_put",
        "rule_delete",
    }
)


@dataclass
class RandomFailures:
    """Fail a share of requests with 503 or a dropped connection, reproducibly."""

    rate: float
    seed: int = 0
    kinds: tuple[str, ...] = ("503", "drop")

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def draw(self) -> Fault | None:
        if self._rng.random() >= self.rate:
            return None
        kind = self._rng.choice(self.kinds)
        return drop_connection() if kind == "drop" else arm_error(int(kind))


class SentinelState:
    """In-memory service state plus the fidelity switches (all off by default)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.workspaces: dict[str, Workspace] = {}
        self.throttle = ArmThrottle()
        self.faults = FaultQueue()
        self.reset()

    def reset(self) -> None:
        """Forget every workspace, switch and counter."""
        with self.lock:
            self.workspaces.clear()
            self.tables: set[str] = set(DEFAULT_TABLES)
            self.known_tables: set[str] = set()
            self.change_limit = DEFAULT_CHANGE_LIMIT
            self.latency = 0.0
            self.random_failures: RandomFailures | None = None
            self.write_cutoff: tuple[int, Fault] | None = None
            self.enforce_etag = False
            self.page_size = PAGE_SIZE
            self.calls: Counter[str] = Counter()
            self.applied: Counter[str] = Counter()
            self.writes_seen = 0
        self.throttle.reset()
        self.faults.clear()

    # Test-facing helpers.

    def workspace(self, name: str) -> Workspace:
        """The workspace called ``name``, created on first use."""
        with self.lock:
            key = name.lower()
            if key not in self.workspaces:
                self.workspaces[key] = Workspace(name, self.change_limit)
            return self.workspaces[key]

    def set_change_limit(self, limit: int) -> None:
        with self.lock:
            self.change_limit = limit
            for workspace in self.workspaces.values():
                workspace.change_limit = limit

    def register_table(self, name: str, exists: bool = True) -> None:
        """Make ``name`` a known table; ``exists`` says whether the workspace has it."""
        with self.lock:
            self.known_tables.add(name)
            if exists:
                self.tables.add(name)
            else:
                self.tables.discard(name)

    def fail_writes_after(self, count: int, fault: Fault | None = None) -> None:
        """Let ``count`` writes (PUT or DELETE) through, then give ``fault`` to each."""
        with self.lock:
            self.writes_seen = 0
            self.write_cutoff = (count, fault or arm_error(503))

    def items(self, workspace: str, alias: str) -> list[dict[str, str]]:
        with self.lock:
            record = self.workspace(workspace).watchlist(alias)
            return [dict(item.values) for item in record.items.values()]

    @property
    def write_calls(self) -> int:
        return sum(count for kind, count in self.calls.items() if kind in WRITE_KINDS)

    def counters(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls": dict(self.calls),
                "applied": dict(self.applied),
                "write_calls": self.write_calls,
                "changes": {ws.name: ws.changes for ws in self.workspaces.values()},
                "items": {
                    ws.name: {wl.alias: len(wl.items) for wl in ws.watchlists.values()}
                    for ws in self.workspaces.values()
                },
                "rules": {ws.name: len(ws.rules) for ws in self.workspaces.values()},
            }

    # Gate steps.

    def _pick_fault(self, kind: str, method: str) -> Fault | None:
        mutation = method in ("PUT", "DELETE")
        queued = self.faults.take(kind, CLASSES[method], "mutation" if mutation else "")
        if queued is not None:
            return queued
        with self.lock:
            if mutation and self.write_cutoff is not None:
                self.writes_seen += 1
                allowed, fault = self.write_cutoff
                if self.writes_seen > allowed:
                    return fault
            if self.random_failures is not None:
                return self.random_failures.draw()
        return None
