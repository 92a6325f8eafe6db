"""The hunt pack's "likely benign look-alikes", derived from the family's indicators.

Three patterns, each from ``shared/data/benign_lookalikes.json``:

- a domain (or URL host) under a dynamic-DNS or free-hosting provider: other
  names in the same zone belong to other customers;
- an IP (or URL host IP) tagged with a large cloud provider: the address is
  shared and reassigned, so hits far from the indicator's window or on other
  ports are likely another tenant;
- a URL on a file-sharing site: the host is busy and benign, only the path is
  the indicator.

Each entry carries a complete KQL query whose last ``where`` is the exclusion.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from shared.huntpack_markdown import code_span, defang_host
from shared.huntpack_queries import kql_timespan
from shared.indicators import Indicator
from shared.kql_literals import kql_datetime_literal, kql_string_literal
from shared.rules import rule_template
from shared.settings import Settings

__all__ = ["LOOKALIKES_PATH", "Lookalike", "find_lookalikes"]

LOOKALIKES_PATH = Path(__file__).parent / "data" / "benign_lookalikes.json"
# Infrastructure is often up for days before anyone reports it.
BEFORE_FIRST_SEEN = timedelta(days=7)
_CATEGORY_TEXT = {
    "dynamic_dns": "dynamic-DNS provider",
    "free_hosting": "free hosting provider",
}


def _rule_host_pattern() -> str:
    # The rules' own pattern for the host of a URL (with or without a scheme),
    # read from the rule file so the exclusions cannot drift from the matching.
    found = re.search(
        r'^let host_of = (@"[^"]*");$', rule_template("CommonSecurityLog"), re.MULTILINE
    )
    if found is None:
        raise RuntimeError("shared/kql/CommonSecurityLog.kql no longer defines host_of")
    return found.group(1)


_HOST_OF = _rule_host_pattern()


@dataclass(frozen=True)
class Lookalike:
    """One look-alike: a title, why it looks similar, and the KQL exclusion.

    ``title`` and ``explanation`` are Markdown, with every value already made
    safe by ``shared.huntpack_markdown``.
    """

    title: str
    explanation: str
    query: str


@cache
def _catalogue() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(LOOKALIKES_PATH.read_text(encoding="utf-8"))
    return data


def _zone_of(host: str, category: str) -> tuple[str, str] | None:
    for provider, zones in _catalogue()[category].items():
        for zone in zones:
            if host == zone or host.endswith("." + zone):
                return provider, zone
    return None


def _cloud_of(tags: Sequence[str]) -> tuple[str, str] | None:
    wanted = {tag.lower(): tag for tag in tags}
    for provider, names in _catalogue()["cloud_tags"].items():
        for name in names:
            if name in wanted:
                return provider, wanted[name]
    return None


def _host(indicator: Indicator) -> str | None:
    if indicator.kind == "domain":
        return indicator.ioc
    if indicator.kind == "url":
        return indicator.host
    return None


def _is_ip(host: str) -> bool:
    return ":" in host or host.replace(".", "").isdigit()


def _zone_entry(
    category: str, provider: str, zone: str, hosts: list[str], lookback: str
) -> Lookalike:
    zone_text = kql_string_literal(zone)
    own = " or ".join(
        f"Host == {kql_string_literal(h)} or Host endswith {kql_string_literal('.' + h)}"
        for h in hosts
    )
    query = "\n".join(
        [
            "DnsEvents",
            f"| where TimeGenerated > ago({lookback})",
            '| extend Host = trim_end(@"\\.", tolower(Name))',
            f"| where Host == {zone_text} or Host endswith {kql_string_literal('.' + zone)}",
            f"// Exclusion: names under {zone} other than the indicator's are other",
            f"// {provider} customers.",
            f"| where {own}",
            "| summarize Queries = count(), Clients = dcount(ClientIP) by Host",
        ]
    )
    listed = ", ".join(code_span(defang_host(h)) for h in hosts)
    shown = defang_host(zone)
    explanation = (
        f"{listed} {'is' if len(hosts) == 1 else 'are'} under {code_span(shown)}, a "
        f"{_CATEGORY_TEXT[category]} ({provider}). Anyone can register a name there, so "
        f"other names under {code_span(shown)} are unrelated customers (home servers, game "
        "servers, test sites): do not widen the hunt to the provider's zone, and "
        "keep only the indicator's own names when a search reaches the zone."
    )
    return Lookalike(f"{code_span(shown)} ({provider})", explanation, query)


def _cloud_entry(
    address: str,
    provider: str,
    tag: str,
    indicators: list[Indicator],
    settings: Settings,
    lookback: str,
) -> Lookalike:
    ports = sorted({i.port for i in indicators if i.port})
    start = min(i.first_seen for i in indicators) - BEFORE_FIRST_SEEN
    end = max(
        i.first_seen + timedelta(days=settings.ttl_days[i.kind]) for i in indicators
    )
    ip = kql_string_literal(address)
    port_list = ", ".join(str(port) for port in ports)
    port_test = f" or IndicatorPort !in ({port_list})" if ports else ""
    query = "\n".join(
        [
            "CommonSecurityLog",
            f"| where TimeGenerated > ago({lookback})",
            f"| where DestinationIP == {ip} or SourceIP == {ip}",
            f"| extend IndicatorPort = iff(DestinationIP == {ip}, DestinationPort, SourcePort)",
            "// Exclusion: before the indicator's window, after it, or on another port",
            "// the address more likely serves another tenant.",
            f"| where not(TimeGenerated < {kql_datetime_literal(start)}"
            f" or TimeGenerated > {kql_datetime_literal(end)}{port_test})",
        ]
    )
    on_ports = f" on port{'s' if len(ports) > 1 else ''} {port_list}" if ports else ""
    explanation = (
        f"{code_span(defang_host(address))} is tagged {code_span(tag)}: {provider} address space. Cloud "
        "addresses "
        "are shared and handed to new tenants within days, so traffic to this "
        "address long before or after the report, or on other ports, is likely a "
        f"different customer's service. The indicator is listed{on_ports} from "
        f"{start:%Y-%m-%d} (a week before the first report) to {end:%Y-%m-%d} "
        "(its ValidUntil)."
    )
    return Lookalike(
        f"{code_span(defang_host(address))} ({provider})", explanation, query
    )


def _file_sharing_entry(
    indicator: Indicator, provider: str, lookback: str
) -> Lookalike:
    host = indicator.host or ""
    _, _, rest = indicator.ioc.partition("://")
    path = "/" + rest.partition("/")[2]
    query = "\n".join(
        [
            "CommonSecurityLog",
            f"| where TimeGenerated > ago({lookback})",
            f"| extend Host = tolower(extract({_HOST_OF}, 1, RequestURL))",
            f"| where Host == {kql_string_literal(host)}",
            "// Exclusion: other paths on the site are other people's files.",
            f"| where RequestURL contains_cs {kql_string_literal(path)}",
        ]
    )
    explanation = (
        f"The URL is on {code_span(defang_host(host))} ({provider}), a file-sharing site used by "
        "many "
        "people in most organisations. Only the listed path is the indicator; "
        "other downloads from the same host are ordinary use, so never hunt or "
        "block on the host alone."
    )
    return Lookalike(
        f"{code_span(defang_host(host))} ({provider}, file sharing)", explanation, query
    )


def _zone_entries(indicators: Sequence[Indicator], lookback: str) -> list[Lookalike]:
    hosts_by_zone: dict[tuple[str, str, str], list[str]] = {}
    for indicator in indicators:
        host = _host(indicator)
        if host is None or _is_ip(host):
            continue
        for category in ("dynamic_dns", "free_hosting"):
            found = _zone_of(host, category)
            if found is not None:
                hosts = hosts_by_zone.setdefault((category, *found), [])
                if host not in hosts:
                    hosts.append(host)
    return [
        _zone_entry(category, provider, zone, hosts, lookback)
        for (category, provider, zone), hosts in sorted(hosts_by_zone.items())
    ]


def _cloud_entries(
    indicators: Sequence[Indicator], settings: Settings, lookback: str
) -> list[Lookalike]:
    by_address: dict[str, list[Indicator]] = {}
    for indicator in indicators:
        address = indicator.ioc if indicator.kind == "ip" else _host(indicator)
        if address is not None and _is_ip(address):
            by_address.setdefault(address, []).append(indicator)
    entries = []
    for address, group in sorted(by_address.items()):
        found = _cloud_of([tag for i in group for tag in i.tags])
        if found is not None:
            entries.append(_cloud_entry(address, *found, group, settings, lookback))
    return entries


def find_lookalikes(
    indicators: Sequence[Indicator], settings: Settings, *, lookback: timedelta
) -> list[Lookalike]:
    """Return the look-alikes the family's own indicators give reason to expect."""
    window = kql_timespan(lookback)
    entries = _zone_entries(indicators, window) + _cloud_entries(
        indicators, settings, window
    )
    for indicator in indicators:
        if indicator.kind == "url" and indicator.host:
            found = _zone_of(indicator.host, "file_sharing")
            if found is not None:
                entries.append(_file_sharing_entry(indicator, found[0], window))
    return entries
