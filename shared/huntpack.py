"""Hunt packs: a Markdown briefing per malware family, from the synced indicators.

The input is what the sync would list (normalize_record, Filters.apply,
merge_duplicates); nothing is fetched here. A pack holds what the rules detect
and why to hunt, an IOC summary, the ATT&CK tactics of the threat types, a
table of defanged values, hunting queries in two sets (watchlists and inlined
values, ``shared.huntpack_queries``), the tables and their connectors, and the
likely benign look-alikes (``shared.huntpack_lookalikes``).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from shared.huntpack_lookalikes import find_lookalikes
from shared.huntpack_markdown import cell, code_span, defang, fenced
from shared.huntpack_queries import TABLES, hunting_queries
from shared.indicators import Indicator
from shared.settings import Settings

__all__ = [
    "HUNT_LOOKBACK",
    "TACTICS",
    "build_pack",
    "build_packs",
    "defang",
    "families",
    "family_matches",
]

HUNT_LOOKBACK = timedelta(days=30)
# threat type -> (tactic, id, why). Standard ATT&CK enterprise tactic ids.
TACTICS = {
    "botnet_cc": (
        "Command and Control",
        "TA0011",
        "the indicator is a server the implant talks to",
    ),
    "payload_delivery": (
        "Initial Access",
        "TA0001",
        "the indicator serves the malware to victims (phishing links, drive-by "
        "and SEO-poisoned downloads) before anything runs; a download by an "
        "implant already in place would be Ingress Tool Transfer under Command "
        "and Control",
    ),
    "payload": ("Execution", "TA0002", "the indicator is the malware file that runs"),
    "cc_skimming": (
        "Collection",
        "TA0009",
        "the indicator receives payment card data taken from web shop pages",
    ),
}
_NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
_KIND_NAMES = {
    "ip": ("IP address", "IP addresses"),
    "domain": ("domain", "domains"),
    "url": ("URL", "URLs"),
    "hash": ("file hash", "file hashes"),
}


def _names(indicator: Indicator) -> list[str]:
    # After a merge, ids are comma-joined and printable names " / "-joined.
    names = [name.strip() for name in indicator.malware_printable.split(" / ")]
    names += [name.strip() for name in indicator.malware.split(",")]
    names += list(indicator.malware_alias)
    return [name for name in names if name]


def family_matches(indicator: Indicator, name: str) -> bool:
    """Tell whether ``name`` is the indicator's family: printable, Malpedia id or alias.

    Case is ignored, and so is whitespace around ``name``.
    """
    wanted = name.strip().lower()
    return any(candidate.lower() == wanted for candidate in _names(indicator))


def families(indicators: Iterable[Indicator]) -> list[str]:
    """Return the printable family names in the indicators, sorted, case-insensitively unique."""
    found: dict[str, str] = {}
    for indicator in indicators:
        for name in indicator.malware_printable.split(" / "):
            found.setdefault(name.strip().lower(), name.strip())
    return sorted((name for name in found.values() if name), key=str.lower)


def _printable_for(indicator: Indicator, name: str) -> str:
    # Which printable name a match stands for: the name itself, the printable
    # name at the Malpedia id's position, else the first one (an alias).
    printable = [n.strip() for n in indicator.malware_printable.split(" / ")]
    ids = [n.strip().lower() for n in indicator.malware.split(",")]
    wanted = name.strip().lower()
    for candidate in printable:
        if candidate.lower() == wanted:
            return candidate
    if wanted in ids and len(ids) == len(printable):
        return printable[ids.index(wanted)]
    return printable[0]


def _unknown_family(name: str, indicators: Sequence[Indicator]) -> ValueError:
    known = {n.lower(): n for i in indicators for n in _names(i)}
    close = difflib.get_close_matches(
        name.strip().lower(), list(known), n=5, cutoff=0.6
    )
    if close:
        hint = "close names: " + ", ".join(known[c] for c in close)
    else:
        hint = "families in the feed: " + (", ".join(families(indicators)) or "none")
    return ValueError(f"no indicator of malware family {name!r}; {hint}")


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _count(number: int, kind: str) -> str:
    singular, plural = _KIND_NAMES[kind]
    return f"{number} {singular if number == 1 else plural}"


def _totals(indicators: Sequence[Indicator]) -> str:
    values = {(i.kind, i.ioc) for i in indicators}
    rows = len(indicators)
    if rows == len(values):
        return f"{rows} IOC{'s' if rows != 1 else ''}"
    ports = Counter(i.ioc for i in indicators if i.kind == "ip")
    multi = sorted(n for n in ports.values() if n > 1)
    if len(multi) == 1:
        detail = f"one IP on {_NUMBERS.get(multi[0], str(multi[0]))} ports"
    else:
        detail = f"{len(multi)} IPs on several ports"
    return f"{len(values)} IOCs ({rows} indicator rows: {detail})"


def _kinds_line(indicators: Sequence[Indicator]) -> str:
    parts = []
    for kind in _KIND_NAMES:
        rows = [i for i in indicators if i.kind == kind]
        if not rows:
            continue
        values = len({i.ioc for i in rows})
        text = _count(values, kind)
        if kind == "ip" and len(rows) != values:
            text += f" ({len(rows)} ip:port rows)"
        parts.append(text)
    return ", ".join(parts)


def _summary(name: str, indicators: Sequence[Indicator]) -> list[str]:
    ids = sorted({m.strip() for i in indicators for m in i.malware.split(",")})
    aliases = sorted({a for i in indicators for a in i.malware_alias}, key=str.lower)
    threat_types = Counter(i.threat_type for i in indicators)
    confidences = [i.confidence_level for i in indicators]
    low, high = min(confidences), max(confidences)
    family = cell(name) + " (Malpedia " + ", ".join(code_span(m) for m in ids)
    family += ("; aliases " + ", ".join(cell(a) for a in aliases)) if aliases else ""
    return [
        "## IOC summary",
        "",
        "| | |",
        "|---|---|",
        f"| Family | {family}) |",
        f"| Total | {_totals(indicators)} |",
        f"| Kinds | {_kinds_line(indicators)} |",
        f"| First seen | earliest {_time(min(i.first_seen for i in indicators))}, "
        f"latest {_time(max(i.first_seen for i in indicators))} |",
        "| Threat types | "
        + ", ".join(f"{cell(t)} ({n})" for t, n in sorted(threat_types.items()))
        + " |",
        f"| Confidence | {low}" + ("" if low == high else f" to {high}") + " |",
    ]


def _tactics(indicators: Sequence[Indicator]) -> list[str]:
    lines = [
        "## MITRE ATT&CK",
        "",
        "| Threat type | Tactic | Why |",
        "|---|---|---|",
    ]
    for threat_type in sorted({i.threat_type for i in indicators}):
        tactic = TACTICS.get(threat_type)
        if tactic is None:
            lines.append(f"| {cell(threat_type)} | not mapped | unknown threat type |")
        else:
            name, tactic_id, why = tactic
            lines.append(f"| {threat_type} | {name} ({tactic_id}) | {why} |")
    return lines


def _indicator_table(indicators: Sequence[Indicator]) -> list[str]:
    lines = [
        "## Indicators",
        "",
        "Values are defanged (`[.]`, `hxxp`): safe to paste into tickets and mail.",
        "",
        "| Type | Value | Threat type | First seen | Confidence |",
        "|---|---|---|---|---|",
    ]
    for i in indicators:
        lines.append(
            f"| {cell(i.ioc_type)} | {code_span(defang(i))} | {cell(i.threat_type)} "
            f"| {_time(i.first_seen)} | {i.confidence_level} |"
        )
    return lines


def _span_text(span: timedelta) -> str:
    hours = int(span.total_seconds()) // 3_600
    if hours % 24 == 0:
        return f"{hours // 24} days"
    return f"{hours} hours"


def _introduction(name: str, settings: Settings, lookback: timedelta) -> list[str]:
    prefix = settings.watchlist_prefix
    return [
        "## What the rules detect, and why hunt",
        "",
        f"The analytics rules `{cell(prefix)} - indicator seen in <table>` match the "
        f"`{cell(prefix)}` watchlists against firewall and proxy logs, Defender for "
        "Endpoint network events and DNS server logs: an IP with its port in either "
        "direction, a domain or any of its subdomains as a host name, URL host or "
        "DNS query, a URL in canonical form, and an IP in a DNS answer. Each rule run "
        "reads only rows ingested since the previous run, so it never looks at "
        "traffic from before an indicator reached the watchlist.",
        "",
        f"That earlier traffic is what this hunt is for: {cell(name)} infrastructure "
        "is usually active for days before it is reported. The queries below apply "
        f"the rules' matching to the last {_span_text(lookback)} of logs (an "
        "indicator stops matching after its ValidUntil). Any hit is a host to "
        "triage for infection.",
    ]


def _query_sets(
    name: str,
    indicators: Sequence[Indicator],
    settings: Settings,
    lookback: timedelta,
) -> list[str]:
    lines = ["## Hunting queries", ""]
    sets = (
        (
            "watchlist",
            "With the product's watchlists",
            "Read the watchlists the sync maintains, filtered to this family "
            "(`Malware` column); they follow the feed as it changes.",
        ),
        (
            "inline",
            "Self-contained (values inlined)",
            "For a workspace without the watchlists: the values are in the query. "
            "ValidUntil is first seen plus the kind's time to live.",
        ),
    )
    for source, title, text in sets:
        queries = hunting_queries(
            indicators, settings, families=[name], source=source, lookback=lookback
        )
        lines += [f"### {title}", "", text, ""]
        if not queries:
            lines += ["None: no IP, domain or URL indicator to match.", ""]
        for table, query in queries.items():
            lines += [f"#### {table}", "", fenced(query, "kql"), ""]
    hashes = [i for i in indicators if i.kind == "hash"]
    if hashes:
        lines += [
            f"The {_count(len(hashes), 'hash')} are not matched by these tables; hunt "
            "them in DeviceFileEvents or DeviceProcessEvents.",
            "",
        ]
    return lines[:-1]


def _tables(indicators: Sequence[Indicator]) -> list[str]:
    kinds = {i.kind for i in indicators}
    lines = [
        "## Sentinel tables",
        "",
        "| Table | What the queries read | Connector to enable |",
        "|---|---|---|",
    ]
    for info in TABLES:
        if kinds.intersection(info.kinds):
            lines.append(f"| {info.table} | {info.what} | {info.connector} |")
    lines += [
        "",
        'A query on a table the workspace lacks fails with a "failed to resolve '
        'table" error: enable the connector named above (Content hub, then Data '
        "connectors) before hunting there.",
    ]
    return lines


def _lookalikes(
    indicators: Sequence[Indicator], settings: Settings, lookback: timedelta
) -> list[str]:
    lines = ["## Likely benign look-alikes", ""]
    entries = find_lookalikes(indicators, settings, lookback=lookback)
    if not entries:
        return [
            *lines,
            "None found: no indicator is under a dynamic-DNS, free-hosting or "
            "file-sharing provider, and no IP carries a cloud provider tag.",
        ]
    for entry in entries:
        lines += [f"### {entry.title}", "", entry.explanation, ""]
        lines += [fenced(entry.query, "kql"), ""]
    return lines[:-1]


def build_pack(
    family: str,
    indicators: list[Indicator],
    settings: Settings,
    *,
    generated_at: datetime,
    lookback: timedelta = HUNT_LOOKBACK,
) -> str:
    """Return the Markdown hunt pack of one family.

    Parameters
    ----------
    family
        Printable name, Malpedia id or alias, any case.
    indicators
        The feed's normalized, filtered and merged indicators (all families).
    settings
        For watchlist aliases and the per-kind time to live.
    generated_at
        Written into the pack; pass a fixed time for reproducible output.
    lookback
        How far back the hunting queries search.

    Raises
    ------
    ValueError
        When no indicator belongs to ``family``; the message lists close names.
    """
    chosen = [i for i in indicators if family_matches(i, family)]
    if not chosen:
        raise _unknown_family(family, indicators)
    name = _printable_for(chosen[0], family)
    sections = [
        [
            f"# Hunt pack: {cell(name)}",
            "",
            f"Generated {_time(generated_at)} from abuse.ch ThreatFox indicators "
            "synced to Microsoft Sentinel.",
        ],
        _introduction(name, settings, lookback),
        _summary(name, chosen),
        _tactics(chosen),
        _indicator_table(chosen),
        _query_sets(name, chosen, settings, lookback),
        _tables(chosen),
        _lookalikes(chosen, settings, lookback),
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def _file_name(name: str, taken: set[str]) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "family"
    candidate, number = slug, 2
    while candidate in taken:
        candidate, number = f"{slug}-{number}", number + 1
    taken.add(candidate)
    return candidate + ".md"


def build_packs(
    indicators: list[Indicator],
    settings: Settings,
    *,
    malware: str | None,
    all_families: bool,
    generated_at: datetime,
) -> dict[str, str]:
    """Return ``{file name: Markdown}``: one family (``malware``) or every family.

    File names are the printable name in lower case with runs of other
    characters turned into ``-`` (``quasar-rat.md``), numbered on a clash.
    Raises ``ValueError`` when neither or both of ``malware`` and
    ``all_families`` are given, or when ``malware`` matches nothing.
    """
    if all_families == (malware is not None):
        raise ValueError("give either a malware family or all families, not both")
    names = families(indicators) if all_families else [malware or ""]
    taken: set[str] = set()
    packs = {}
    for name in names:
        chosen = [i for i in indicators if family_matches(i, name)]
        printable = _printable_for(chosen[0], name) if chosen else name
        pack = build_pack(name, indicators, settings, generated_at=generated_at)
        packs[_file_name(printable, taken)] = pack
    return packs
