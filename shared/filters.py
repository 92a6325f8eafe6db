"""Which normalized indicators the sync keeps: filters from settings, and the allowlist.

``Filters.from_settings(settings, extra_allowlist)`` builds the filters once per
run; ``Filters.apply(indicators)`` returns the kept indicators and counts of the
dropped ones by reason. Each dropped indicator is counted once, under the first
rule that drops it, in this order:

=============================  ==============================================
``filtered:kind``              kind not in INDICATOR_KINDS
``filtered:threat_type``       threat type not in THREAT_TYPES (when set)
``filtered:min_confidence``    confidence below MIN_CONFIDENCE
``filtered:malware_include``   no family in MALWARE_INCLUDE (when set)
``filtered:malware_exclude``   a family in MALWARE_EXCLUDE
``filtered:tags_exclude``      a tag in TAGS_EXCLUDE
``non_public_ip:<category>``   private, loopback, ... address (DROP_NON_PUBLIC_IPS)
``allowlisted``                matches the allowlist
=============================  ==============================================

Malware names match the Malpedia id, the printable name or an alias, ignoring
case. Allowlist entries are domains (matching the domain and its subdomains),
IP addresses and CIDR ranges; see ``shared/data/default_allowlist.txt`` for how
the bundled entries differ.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shared.indicators import Indicator
from shared.normalize import ip_category, normalize_domain, normalize_ip
from shared.settings import Settings

__all__ = ["DEFAULT_ALLOWLIST_PATH", "Allowlist", "Filters", "read_allowlist_file"]

logger = logging.getLogger(__name__)

DEFAULT_ALLOWLIST_PATH = Path(__file__).parent / "data" / "default_allowlist.txt"

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def read_allowlist_file(path: Path) -> list[str]:
    """Read an allowlist file: one entry a line, ``#`` starts a comment."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.partition("#")[0].strip()
        if entry:
            entries.append(entry)
    return entries


def _parse_network(entry: str) -> _Network | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def _is_ip_host(host: str) -> bool:
    # Hosts are canonical: IPv6 has colons, IPv4 only digits and dots, and a
    # domain's top-level label starts with a letter.
    return ":" in host or host.replace(".", "").isdigit()


def _domain_match(domain: str, entries: frozenset[str]) -> str | None:
    # The domain itself, then each parent: a.b.example.com, b.example.com, ...
    candidate = domain
    while True:
        if candidate in entries:
            return candidate
        _, dot, candidate = candidate.partition(".")
        if not dot:
            return None


@dataclass(frozen=True)
class Allowlist:
    """Allow-listed domains, addresses and networks.

    ``host_domains`` match domain indicators and URL hosts; ``domain_only``
    (the bundled default list) match domain indicators only. ``ignored`` holds
    entries that were neither a domain, an IP nor a CIDR range.
    """

    host_domains: frozenset[str] = frozenset()
    domain_only: frozenset[str] = frozenset()
    addresses: frozenset[str] = frozenset()
    networks: tuple[_Network, ...] = ()
    ignored: tuple[str, ...] = ()

    @classmethod
    def from_entries(
        cls, entries: Iterable[str], *, default_entries: Iterable[str] = ()
    ) -> Allowlist:
        """Parse entries; ``default_entries`` get the narrower default-list matching."""
        domains: set[str] = set()
        domain_only: set[str] = set()
        addresses: set[str] = set()
        networks: list[_Network] = []
        ignored: list[str] = []
        for target, source in ((domains, entries), (domain_only, default_entries)):
            for entry in source:
                kind, value = _classify(entry)
                if kind == "domain":
                    target.add(value)
                elif kind == "address":
                    addresses.add(value)
                elif kind == "network":
                    networks.append(ipaddress.ip_network(value))
                else:
                    ignored.append(entry)
        if ignored:
            logger.warning(
                "Ignored %d allowlist entries that are not a domain, IP or CIDR",
                len(ignored),
            )
        return cls(
            frozenset(domains),
            frozenset(domain_only),
            frozenset(addresses),
            tuple(networks),
            tuple(ignored),
        )

    def match(self, indicator: Indicator) -> str | None:
        """Return the allowlist entry that covers ``indicator``, or None."""
        if indicator.kind == "ip":
            return self._match_ip(indicator.ioc)
        if indicator.kind == "domain":
            return _domain_match(indicator.ioc, self.host_domains) or _domain_match(
                indicator.ioc, self.domain_only
            )
        if indicator.kind == "url" and indicator.host:
            if _is_ip_host(indicator.host):
                return self._match_ip(indicator.host)
            return _domain_match(indicator.host, self.host_domains)
        return None

    def _match_ip(self, address: str) -> str | None:
        if address in self.addresses:
            return address
        if not self.networks:
            return None
        ip = ipaddress.ip_address(address)
        for network in self.networks:
            if ip in network:
                return str(network)
        return None


def _classify(entry: str) -> tuple[str, str]:
    text = entry.strip().lower()
    if "/" in text:
        network = _parse_network(text)
        return ("network", str(network)) if network is not None else ("ignored", text)
    try:
        return "address", normalize_ip(text)
    except ValueError:
        pass
    try:
        return "domain", normalize_domain(text, platforms_allowed=True)
    except ValueError:
        # A bare public suffix ("com") would allow-list a whole TLD: ignored too.
        return "ignored", text


def _malware_names(indicator: Indicator) -> set[str]:
    # After a merge, malware is comma-joined and the printable names " / "-joined.
    names = {name.strip().lower() for name in indicator.malware.split(",")}
    names.update(
        name.strip().lower() for name in indicator.malware_printable.split(" / ")
    )
    names.update(alias.lower() for alias in indicator.malware_alias)
    return names


@dataclass(frozen=True)
class Filters:
    """Every keep-or-drop rule of one run."""

    kinds: frozenset[str]
    min_confidence: int
    threat_types: frozenset[str]
    malware_include: frozenset[str]
    malware_exclude: frozenset[str]
    tags_exclude: frozenset[str]
    drop_non_public_ips: bool
    allowlist: Allowlist

    @classmethod
    def from_settings(
        cls, settings: Settings, extra_allowlist: Iterable[str] = ()
    ) -> Filters:
        """Build the filters; ``extra_allowlist`` are the analysts' watchlist entries."""
        default = (
            read_allowlist_file(DEFAULT_ALLOWLIST_PATH)
            if settings.use_default_allowlist
            else []
        )
        allowlist = Allowlist.from_entries(
            [*settings.allowlist, *extra_allowlist], default_entries=default
        )
        return cls(
            kinds=frozenset(settings.kinds),
            min_confidence=settings.min_confidence,
            threat_types=frozenset(settings.threat_types),
            malware_include=frozenset(m.lower() for m in settings.malware_include),
            malware_exclude=frozenset(m.lower() for m in settings.malware_exclude),
            tags_exclude=frozenset(t.lower() for t in settings.tags_exclude),
            drop_non_public_ips=settings.drop_non_public_ips,
            allowlist=allowlist,
        )

    def is_allowed(self, indicator: Indicator) -> str | None:
        """Return the allowlist entry covering ``indicator`` (never list it), or None."""
        return self.allowlist.match(indicator)

    def drop_reason(self, indicator: Indicator) -> str | None:
        """Return the report key of the first rule dropping ``indicator``, or None."""
        if indicator.kind not in self.kinds:
            return "filtered:kind"
        if self.threat_types and indicator.threat_type not in self.threat_types:
            return "filtered:threat_type"
        if indicator.confidence_level < self.min_confidence:
            return "filtered:min_confidence"
        reason = self._family_or_tag_reason(indicator)
        if reason is None and self.drop_non_public_ips:
            reason = _non_public_reason(indicator)
        if reason is None and self.allowlist.match(indicator) is not None:
            reason = "allowlisted"
        return reason

    def apply(
        self, indicators: Iterable[Indicator]
    ) -> tuple[list[Indicator], Counter[str]]:
        """Return the kept indicators, in input order, and drop counts by reason."""
        kept = []
        dropped: Counter[str] = Counter()
        for indicator in indicators:
            reason = self.drop_reason(indicator)
            if reason is None:
                kept.append(indicator)
            else:
                dropped[reason] += 1
        return kept, dropped

    def _family_or_tag_reason(self, indicator: Indicator) -> str | None:
        if self.malware_include or self.malware_exclude:
            names = _malware_names(indicator)
            if self.malware_include and names.isdisjoint(self.malware_include):
                return "filtered:malware_include"
            if not names.isdisjoint(self.malware_exclude):
                return "filtered:malware_exclude"
        if self.tags_exclude and any(
            tag.lower() in self.tags_exclude for tag in indicator.tags
        ):
            return "filtered:tags_exclude"
        return None


def _non_public_reason(indicator: Indicator) -> str | None:
    if indicator.kind == "ip":
        address = indicator.ioc
    elif indicator.kind == "url" and indicator.host and _is_ip_host(indicator.host):
        address = indicator.host
    else:
        return None
    category = ip_category(address)
    return None if category is None else "non_public_ip:" + category
