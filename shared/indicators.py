"""The indicator model, and how several ThreatFox records for one key merge.

An ``Indicator`` is one normalized ThreatFox IOC. Its ``key`` (kind, value,
port) is what the sync dedupes on and what identifies a watchlist row. How raw
records become indicators lives in ``shared.normalize``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

__all__ = [
    "Indicator",
    "IndicatorKey",
    "merge_duplicates",
]

IndicatorKey = tuple[str, str, int | None]


@dataclass(frozen=True, slots=True)
class Indicator:
    """One normalized IOC, ready to become a watchlist row.

    ``kind`` is ``ip``, ``domain``, ``url`` or ``hash``. ``ioc`` is the
    normalized value: an IP address without port, a lower-case ASCII domain, a
    canonical URL, or lower-case hex. ``port`` is the ip:port port, or the URL's
    effective port. ``original`` keeps ThreatFox's raw value.
    """

    kind: str
    ioc: str
    port: int | None
    ioc_type: str
    threatfox_id: str
    threat_type: str
    malware: str
    malware_printable: str
    malware_alias: tuple[str, ...]
    confidence_level: int
    first_seen: datetime
    reference: str | None
    tags: tuple[str, ...]
    original: str
    host: str | None = None

    @property
    def key(self) -> IndicatorKey:
        """What makes two indicators the same row: kind, value and port."""
        return (self.kind, self.ioc, self.port)


def _oldest_id(ids: Iterable[str]) -> str:
    # ThreatFox ids are increasing integers written as strings.
    return min(ids, key=lambda value: (len(value), value))


def _union(groups: Iterable[Iterable[str]]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for group in groups:
        for item in group:
            seen.setdefault(item, None)
    return tuple(seen)


def _merge(records: list[Indicator]) -> Indicator:
    ordered = sorted(records, key=lambda indicator: indicator.first_seen)
    references = [r.reference for r in ordered if r.reference]
    return replace(
        ordered[0],
        threatfox_id=_oldest_id(r.threatfox_id for r in ordered),
        confidence_level=max(r.confidence_level for r in ordered),
        malware_printable=" / ".join(_union([r.malware_printable] for r in ordered)),
        malware=",".join(_union([r.malware] for r in ordered)),
        malware_alias=_union(r.malware_alias for r in ordered),
        tags=_union(r.tags for r in ordered),
        reference=references[0] if references else None,
    )


def merge_duplicates(indicators: Iterable[Indicator]) -> tuple[list[Indicator], int]:
    """Merge indicators sharing a key; return them in first-seen order and the merge count.

    For each key the result keeps the oldest ThreatFox id, the highest
    confidence, the earliest first seen and the union of malware names, aliases
    and tags, so the choice is stable whatever order the feed used.
    """
    groups: dict[IndicatorKey, list[Indicator]] = {}
    for indicator in indicators:
        groups.setdefault(indicator.key, []).append(indicator)
    merged = [
        group[0] if len(group) == 1 else _merge(group) for group in groups.values()
    ]
    merged.sort(key=lambda i: (i.first_seen, i.kind, i.ioc, i.port or 0))
    duplicates = sum(len(group) - 1 for group in groups.values())
    return merged, duplicates
