"""ARM-style throttling: one token bucket per operation type (reads, writes, deletes)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ArmThrottle", "BucketSpec", "TokenBucket", "Verdict"]

#: ARM's regional token-bucket figures per subscription and principal.
DEFAULT_SPECS = {
    "reads": (250, 25.0),
    "writes": (200, 10.0),
    "deletes": (200, 10.0),
}


@dataclass(frozen=True)
class BucketSpec:
    capacity: int
    refill_per_second: float


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    remaining: int
    retry_after: int


class TokenBucket:
    """A bucket that starts full and refills continuously."""

    def __init__(
        self, spec: BucketSpec, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.spec = spec
        self._clock = clock
        self._tokens = float(spec.capacity)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        gained = (now - self._stamp) * self.spec.refill_per_second
        self._tokens = min(float(self.spec.capacity), self._tokens + gained)
        self._stamp = now

    def take(self) -> Verdict:
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return Verdict(True, int(self._tokens), 0)

        # Whole seconds until one token is back, as ARM's Retry-After is integer.
        missing = 1.0 - self._tokens
        wait = max(1, math.ceil(missing / self.spec.refill_per_second))
        return Verdict(False, 0, wait)


class ArmThrottle:
    """Per-operation-type buckets; off unless ``enabled``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.enabled = False
        self.specs = {
            name: BucketSpec(capacity, rate)
            for name, (capacity, rate) in DEFAULT_SPECS.items()
        }
        self._buckets: dict[str, TokenBucket] = {}

    def configure(
        self,
        enabled: bool = True,
        **specs: tuple[int, float],
    ) -> None:
        """Switch throttling and optionally resize buckets, e.g. reads=(5, 1.0)."""
        with self._lock:
            self.enabled = enabled
            for name, (capacity, rate) in specs.items():
                if name not in DEFAULT_SPECS:
                    raise ValueError(f"unknown bucket {name!r}")
                self.specs[name] = BucketSpec(capacity, rate)
            self._buckets = {}

    def reset(self) -> None:
        with self._lock:
            self.enabled = False
            self.specs = {
                name: BucketSpec(capacity, rate)
                for name, (capacity, rate) in DEFAULT_SPECS.items()
            }
            self._buckets = {}

    def take(self, bucket: str) -> Verdict | None:
        """Spend a token from ``bucket``; None when throttling is off."""
        with self._lock:
            if not self.enabled:
                return None
            if bucket not in self._buckets:
                self._buckets[bucket] = TokenBucket(self.specs[bucket], self._clock)
            return self._buckets[bucket].take()
