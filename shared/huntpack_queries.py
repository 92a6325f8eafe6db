"""The hunt pack's KQL: one query per table, reading watchlists or inlined values.

The matching is the analytics rule's own text: the blocks that
``shared/kql/<table>.kql`` delimits with ``//@ begin NAME`` / ``//@ end NAME``
(read by ``shared.rules.matching_blocks``) go into the query verbatim, without
the lines marked rule-only (the per-run ingestion filter, the on/off flags).
So a fix to a rule's matching reaches the hunt packs with nothing to copy.

Two things differ from the rule. The source of the watchlist rows: ``watchlist``
reads ``_GetWatchlist`` filtered to the family's printable names in the
``Malware`` column, ``inline`` a ``datatable`` with the watchlist's columns,
which the rule's row block then reads as it reads a watchlist. And the result:
one row per indicator and client over the hunt's lookback, not the alert
shaping. Every value from the data goes through ``shared.kql_literals``;
aliases come from validated settings and go through it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from shared.indicators import Indicator
from shared.kql_literals import kql_datetime_literal, kql_string_literal
from shared.rules import matching_blocks, rule_tables
from shared.settings import Settings

__all__ = ["TABLES", "TableInfo", "hunting_queries", "kql_timespan"]


@dataclass(frozen=True)
class TableInfo:
    """A Sentinel table the pack hunts in, the connector that fills it, its kinds."""

    table: str
    connector: str
    kinds: tuple[str, ...]
    what: str


# What each table shows an analyst; tables, connectors and kinds come from the rules.
_WHAT = {
    "CommonSecurityLog": "firewall and proxy logs: source or destination IP and port, "
    "host names, RequestURL",
    "DeviceNetworkEvents": "Defender for Endpoint connections: RemoteIP and RemotePort, "
    "RemoteUrl",
    "DnsEvents": "DNS server queries: the queried Name, the answers in IPAddresses",
}
TABLES = tuple(
    TableInfo(table, connector, kinds, _WHAT[table])
    for table, connector, kinds in rule_tables()
)

# The inline rows carry the watchlists' column names, so the rule's own row
# block (its projection and checks) reads them exactly as it reads a watchlist.
_META_COLUMNS = "Confidence:int, Malware:string, ThreatType:string, ThreatFoxId:string"
_ROW_COLUMNS = {
    "ip": f"SearchKey:string, Port:int, ValidUntil:datetime, {_META_COLUMNS}",
    "domain": f"SearchKey:string, ValidUntil:datetime, {_META_COLUMNS}",
    "url": f"SearchKey:string, ValidUntil:datetime, {_META_COLUMNS}",
}
# The DNS rule names the machine DnsServer; the pack's result calls it ClientHost.
_CLIENT_HOST = {"DnsEvents": "DnsServer"}


def kql_timespan(value: timedelta) -> str:
    """Write a whole number of days or hours as a KQL timespan (``30d``, ``6h``)."""
    hours = int(value.total_seconds()) // 3_600
    if hours <= 0 or hours * 3_600 != value.total_seconds():
        raise ValueError(f"a hunting window must be whole hours: {value}")
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


def _watchlist_source(alias: str, families: Sequence[str]) -> str:
    names = ", ".join(kql_string_literal(name.lower()) for name in families)
    return "\n".join(
        [
            f"_GetWatchlist({kql_string_literal(alias)})",
            # Merged rows name several families, joined with " / ".
            '    | extend Families = split(tolower(tostring(column_ifexists("Malware", '
            '""))), " / ")',
            f"    | where array_length(set_intersect(Families, dynamic([{names}]))) > 0",
        ]
    )


def _inline_row(indicator: Indicator, valid_until: str) -> str:
    cells = [kql_string_literal(indicator.ioc)]
    if indicator.kind == "ip":
        cells.append(str(int(indicator.port)) if indicator.port else "int(null)")
    cells += [
        valid_until,
        str(int(indicator.confidence_level)),
        kql_string_literal(indicator.malware_printable),
        kql_string_literal(indicator.threat_type),
        kql_string_literal(indicator.threatfox_id),
    ]
    return "    " + ", ".join(cells) + ","


def _inline_source(
    kind: str, indicators: Sequence[Indicator], settings: Settings
) -> str:
    ttl = timedelta(days=settings.ttl_days[kind])
    rows = [
        _inline_row(i, kql_datetime_literal(i.first_seen + ttl))
        for i in indicators
        if i.kind == kind
    ]
    return "\n".join([f"datatable({_ROW_COLUMNS[kind]}) [", *rows, "    ]"])


_HIT_NAMES = {"ip": "IpHits", "domain": "DomainHits", "url": "UrlHits"}

_RESULT = """\
// One row per indicator and client, with first and last time and a count.
union {hits}{client_host}
| summarize FirstSeen = min(TimeGenerated), LastSeen = max(TimeGenerated),
    EventCount = count(), arg_max(TimeGenerated, MatchKind, MatchedColumn, MatchedValue,
        RemoteIP, Confidence, ThreatType, ThreatFoxId)
    by Indicator, ClientIP, ClientHost
| project FirstSeen, LastSeen, EventCount, Indicator, MatchKind, MatchedColumn,
    MatchedValue, ClientIP, ClientHost, RemoteIP, Confidence, ThreatType, ThreatFoxId
| order by LastSeen desc"""


def _rows(block: str, kind: str, source: str) -> str:
    # Only the row source changes: the rule reads the watchlist named by a
    # placeholder, the pack a family-filtered watchlist or a datatable.
    placeholder = f"_GetWatchlist('{{{{{kind.upper()}_WATCHLIST}}}}')"
    if block.count(placeholder) != 1:
        raise ValueError(f"the {kind} rows block does not read {placeholder} once")
    return block.replace(placeholder, source)


def _query(
    info: TableInfo,
    kinds: Sequence[str],
    source: str,
    indicators: Sequence[Indicator],
    settings: Settings,
    families: Sequence[str],
    lookback: timedelta,
) -> str:
    blocks = matching_blocks(info.table)
    # Data never enters a comment raw: a newline would end the comment.
    title = ", ".join(kql_string_literal(name) for name in families)
    origin = (
        "the product's watchlists"
        if source == "watchlist"
        else "the values inlined below"
    )
    parts = [
        f"// ThreatFox indicators of {title} in {info.table}, from {origin}.",
        f"// The matching is the analytics rule's own (shared/kql/{info.table}.kql).",
        f"let lookback = {kql_timespan(lookback)};",
    ]
    if "ip" in kinds:
        parts.append(blocks["non_public"])
    for kind in kinds:
        if source == "watchlist":
            rows = _watchlist_source(settings.watchlist_alias(kind), families)
        else:
            rows = _inline_source(kind, indicators, settings)
        parts.append(_rows(blocks[f"{kind}_rows"], kind, rows))
    parts.append(blocks["events"])
    parts += [blocks[f"{kind}_hits"] for kind in kinds]
    host = _CLIENT_HOST.get(info.table)
    parts.append(
        _RESULT.format(
            hits=", ".join(_HIT_NAMES[kind] for kind in kinds),
            client_host=f"\n| extend ClientHost = {host}" if host else "",
        )
    )
    return "\n".join(parts)


def hunting_queries(
    indicators: Sequence[Indicator],
    settings: Settings,
    *,
    families: Sequence[str],
    source: str,
    lookback: timedelta,
) -> dict[str, str]:
    """Return one hunting query per table that can match the indicators' kinds.

    Parameters
    ----------
    indicators
        The family's indicators (only their kinds matter for ``watchlist``).
    settings
        For the watchlist aliases and the per-kind time to live (ValidUntil).
    families
        The family's printable names, as the watchlists' ``Malware`` column
        writes them.
    source
        ``watchlist`` or ``inline``.
    lookback
        How far back the queries search.
    """
    if source not in ("watchlist", "inline"):
        raise ValueError(f"unknown query source: {source!r}")
    present = _kinds(indicators)
    queries = {}
    for info in TABLES:
        kinds = [kind for kind in info.kinds if kind in present]
        if kinds:
            queries[info.table] = _query(
                info, kinds, source, indicators, settings, families, lookback
            )
    return queries


def _kinds(indicators: Iterable[Indicator]) -> set[str]:
    return {indicator.kind for indicator in indicators}
