"""The hunt pack's KQL: one query per table, reading watchlists or inlined values.

Both sets share the matching text; only where the indicator rows come from
differs. ``watchlist`` rows are read with ``_GetWatchlist`` and filtered to the
family's printable name in the ``Malware`` column; ``inline`` rows are a
``datatable`` of the family's values. Every value from the data goes through
``shared.kql_literals``; aliases come from validated settings and go through it
too.

The matching is the analytics rules' (``shared/kql/*.kql``) without the
per-run ingestion filter and the alert shaping: both directions and the port in
CommonSecurityLog, the host of RequestURL and RemoteUrl, canonical URLs, DNS
answers in IPAddresses, domains exact or as a subdomain on a dot boundary,
private addresses never matching, and no match after the row's ValidUntil.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from shared.indicators import Indicator
from shared.kql_literals import kql_datetime_literal, kql_string_literal
from shared.settings import Settings

__all__ = ["TABLES", "TableInfo", "hunting_queries", "kql_timespan"]


@dataclass(frozen=True)
class TableInfo:
    """A Sentinel table the pack hunts in, the connector that fills it, its kinds."""

    table: str
    connector: str
    kinds: tuple[str, ...]
    what: str


TABLES = (
    TableInfo(
        "CommonSecurityLog",
        "Common Event Format (CEF) via AMA",
        ("ip", "domain", "url"),
        "firewall and proxy logs: source or destination IP and port, host names, "
        "RequestURL",
    ),
    TableInfo(
        "DeviceNetworkEvents",
        "Microsoft Defender XDR",
        ("ip", "domain", "url"),
        "Defender for Endpoint connections: RemoteIP and RemotePort, RemoteUrl",
    ),
    TableInfo(
        "DnsEvents",
        "DNS (Windows Server DNS solution, agent-based; the AMA connector fills ASimDnsActivityLogs, not DnsEvents)",
        ("ip", "domain"),
        "DNS server queries: the queried Name, the answers in IPAddresses",
    ),
)

# Same ranges as the rules: a bad indicator must never flag internal traffic.
_NON_PUBLIC = (
    r"^(10|127|0)\.|^192\.168\.|^169\.254\.|^172\.(1[6-9]|2\d|3[01])\.|"
    r"^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.|^::1?$|^f[cd][0-9a-f]{2}:|"
    r"^fe[89ab][0-9a-f]:"
)
_META_COLUMNS = "Confidence:int, ThreatType:string, ThreatFoxId:string"
_ROW_COLUMNS = {
    "ip": f"Indicator:string, Port:int, ValidUntil:datetime, {_META_COLUMNS}",
    "domain": f"Indicator:string, ValidUntil:datetime, {_META_COLUMNS}",
    "url": f"Indicator:string, ValidUntil:datetime, {_META_COLUMNS}",
}
_ROW_NAMES = {"ip": "IpRows", "domain": "DomainRows", "url": "UrlRows"}
# What each kind's rows need after loading, whatever their source.
_ROW_TAILS = {
    "ip": "    | where not(Indicator matches regex non_public);",
    "domain": (
        "    // Join key: the last two labels, so a subdomain finds its indicator.\n"
        '    | extend Zone = extract(@"([^.]+\\.[^.]+)$", 1, Indicator);'
    ),
    "url": (
        '    // "http://host" and "http://host/" are one URL: compare with the slash.\n'
        '    | extend UrlKey = iff(Indicator matches regex @"^[^:/?#]+://[^/?#]*$", '
        'strcat(Indicator, "/"), Indicator);'
    ),
}
_WATCHLIST_KEY = {
    "ip": "tolower(tostring(SearchKey))",
    "domain": 'trim_end(@"\\.", tolower(tostring(SearchKey)))',
    "url": "tostring(SearchKey)",
}
_HOST_OF = '@"^(?:[A-Za-z][A-Za-z0-9+.-]*://)?(?:[^@/?#]*@)?([^/?#:]+)"'


def kql_timespan(value: timedelta) -> str:
    """Write a whole number of days or hours as a KQL timespan (``30d``, ``6h``)."""
    hours = int(value.total_seconds()) // 3_600
    if hours <= 0 or hours * 3_600 != value.total_seconds():
        raise ValueError(f"a hunting window must be whole hours: {value}")
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


def _column(name: str, convert: str) -> str:
    return f'{name} = {convert}(tostring(column_ifexists("{name}", "")))'


def _watchlist_rows(kind: str, alias: str, families: Sequence[str]) -> str:
    names = ", ".join(kql_string_literal(name.lower()) for name in families)
    port = ["        " + _column("Port", "toint") + ","] if kind == "ip" else []
    lines = [
        f"let {_ROW_NAMES[kind]} = _GetWatchlist({kql_string_literal(alias)})",
        # Merged rows name several families, joined with " / ".
        '    | extend Families = split(tolower(tostring(column_ifexists("Malware", '
        '""))), " / ")',
        f"    | where array_length(set_intersect(Families, dynamic([{names}]))) > 0",
        f"    | project Indicator = {_WATCHLIST_KEY[kind]},",
        *port,
        "        " + _column("ValidUntil", "todatetime") + ",",
        "        " + _column("Confidence", "toint") + ",",
        '        ThreatType = tostring(column_ifexists("ThreatType", "")),',
        '        ThreatFoxId = tostring(column_ifexists("ThreatFoxId", ""))',
        "    | where isnotempty(Indicator) and ValidUntil > ago(lookback)",
    ]
    return "\n".join(lines)


def _inline_row(indicator: Indicator, valid_until: str) -> str:
    cells = [kql_string_literal(indicator.ioc)]
    if indicator.kind == "ip":
        cells.append(str(int(indicator.port)) if indicator.port else "int(null)")
    cells += [
        valid_until,
        str(int(indicator.confidence_level)),
        kql_string_literal(indicator.threat_type),
        kql_string_literal(indicator.threatfox_id),
    ]
    return "    " + ", ".join(cells) + ","


def _inline_rows(kind: str, indicators: Sequence[Indicator], settings: Settings) -> str:
    ttl = timedelta(days=settings.ttl_days[kind])
    rows = [
        _inline_row(i, kql_datetime_literal(i.first_seen + ttl))
        for i in indicators
        if i.kind == kind
    ]
    return "\n".join(
        [
            f"let {_ROW_NAMES[kind]} = datatable({_ROW_COLUMNS[kind]}) [",
            *rows,
            "    ]",
            "    | where ValidUntil > ago(lookback)",
        ]
    )


_CSL_EVENTS = """\
let Events = materialize(CommonSecurityLog
    | where TimeGenerated > ago(lookback)
    | project TimeGenerated, SourceIP, SourcePort, DestinationIP, DestinationPort,
        SourceHostName, DestinationHostName, RequestURL = trim(@'"', RequestURL));"""

_CSL_IP = """\
// IP indicators in both directions; the port on the indicator's side is
// compared with the listed port, the client is the other side.
let IpHits = union
    (Events | project TimeGenerated, EventIp = tolower(DestinationIP),
        EventPort = DestinationPort, MatchedColumn = "DestinationIP",
        ClientIP = SourceIP, ClientHost = SourceHostName),
    (Events | project TimeGenerated, EventIp = tolower(SourceIP),
        EventPort = SourcePort, MatchedColumn = "SourceIP",
        ClientIP = DestinationIP, ClientHost = DestinationHostName)
    | join kind=inner IpRows on $left.EventIp == $right.Indicator
    | where TimeGenerated < ValidUntil
    // One row per event: the listed port if it matches, else the most confident.
    | extend Score = iff(isnull(Port) or Port == EventPort, 1000, 0)
        + coalesce(Confidence, 0)
    | summarize arg_max(Score, Indicator, Port, Confidence, ThreatType, ThreatFoxId)
        by TimeGenerated, MatchedColumn, EventIp, EventPort, ClientIP, ClientHost
    | extend MatchKind = iff(Score >= 1000, "ip_port", "ip_only_port_mismatch"),
        MatchedValue = strcat(EventIp, ":", tostring(EventPort)), RemoteIP = EventIp;"""

_CSL_DOMAIN = """\
// Domain indicators against DestinationHostName and the host of RequestURL:
// exact, or a subdomain on a dot boundary.
let DomainHits = union
    (Events | project TimeGenerated, MatchedValue = DestinationHostName,
        MatchedColumn = "DestinationHostName", ClientIP = SourceIP,
        ClientHost = SourceHostName, RemoteIP = DestinationIP, Url = RequestURL),
    (Events | project TimeGenerated, MatchedValue = extract(host_of, 1, RequestURL),
        MatchedColumn = "RequestURL", ClientIP = SourceIP, ClientHost = SourceHostName,
        RemoteIP = DestinationIP, Url = RequestURL, Other = DestinationHostName)
    | extend DomainName = trim_end(@"\\.", tolower(MatchedValue))
    // The same host in both columns of one event counts once.
    | where isempty(Other) or DomainName != trim_end(@"\\.", tolower(Other))
    | extend Zone = extract(@"([^.]+\\.[^.]+)$", 1, DomainName)
    | join kind=inner DomainRows on Zone
    | where DomainName == Indicator or DomainName endswith strcat(".", Indicator)
    | where TimeGenerated < ValidUntil
    | extend MatchKind = iff(DomainName == Indicator, "domain", "subdomain");"""

_URL_KEY = """\
    | extend Scheme = tolower(extract(@"^([^:/?#]+)://", 1, Raw)),
        Authority = tolower(extract(@"^[^:/?#]+://([^/?#]*)", 1, Raw)),
        Rest = extract(@"^[^:/?#]+://[^/?#]*([^#]*)", 1, Raw)
    | extend Authority = iff((Scheme == "http" and Authority endswith ":80")
        or (Scheme == "https" and Authority endswith ":443"),
        replace_regex(Authority, @":\\d+$", ""), Authority)
    | extend UrlKey = strcat(Scheme, "://", Authority,
        iff(Rest startswith "/", "", "/"), Rest)
    | join kind=inner UrlRows on UrlKey
    | where TimeGenerated < ValidUntil"""

_CSL_URL = f"""\
// URL indicators against the canonical RequestURL (scheme and host lower case,
// default port and fragment dropped); a RequestURL without a scheme is http.
let UrlHits = Events
    | where isnotempty(RequestURL)
    | extend Raw = iff(RequestURL contains "://", RequestURL,
        strcat("http://", RequestURL))
{_URL_KEY}
    | project TimeGenerated, MatchedColumn = "RequestURL", MatchedValue = RequestURL,
        ClientIP = SourceIP, ClientHost = SourceHostName, RemoteIP = DestinationIP,
        Url = RequestURL, Indicator, Confidence, ThreatType, ThreatFoxId,
        MatchKind = "url";"""

_DNE_EVENTS = """\
let Events = materialize(DeviceNetworkEvents
    | where TimeGenerated > ago(lookback)
    | project TimeGenerated, RemoteIP, RemotePort, RemoteUrl, LocalIP, DeviceName);"""

_DNE_IP = """\
// IP indicators against RemoteIP, with RemotePort compared to the listed port.
let IpHits = Events
    | project TimeGenerated, EventIp = tolower(RemoteIP), EventPort = RemotePort,
        MatchedColumn = "RemoteIP", ClientIP = LocalIP, ClientHost = DeviceName
    | join kind=inner IpRows on $left.EventIp == $right.Indicator
    | where TimeGenerated < ValidUntil
    // One row per event: the listed port if it matches, else the most confident.
    | extend Score = iff(isnull(Port) or Port == EventPort, 1000, 0)
        + coalesce(Confidence, 0)
    | summarize arg_max(Score, Indicator, Port, Confidence, ThreatType, ThreatFoxId)
        by TimeGenerated, MatchedColumn, EventIp, EventPort, ClientIP, ClientHost
    | extend MatchKind = iff(Score >= 1000, "ip_port", "ip_only_port_mismatch"),
        MatchedValue = strcat(EventIp, ":", tostring(EventPort)), RemoteIP = EventIp;"""

_DNE_DOMAIN = """\
// Domain indicators against the host of RemoteUrl (often a bare name): exact,
// or a subdomain on a dot boundary.
let DomainHits = Events
    | where isnotempty(RemoteUrl)
    | project TimeGenerated, MatchedValue = RemoteUrl, MatchedColumn = "RemoteUrl",
        ClientIP = LocalIP, ClientHost = DeviceName, RemoteIP, Url = RemoteUrl,
        DomainName = trim_end(@"\\.", tolower(extract(host_of, 1, RemoteUrl)))
    | extend Zone = extract(@"([^.]+\\.[^.]+)$", 1, DomainName)
    | join kind=inner DomainRows on Zone
    | where DomainName == Indicator or DomainName endswith strcat(".", Indicator)
    | where TimeGenerated < ValidUntil
    | extend MatchKind = iff(DomainName == Indicator, "domain", "subdomain");"""

_DNE_URL = f"""\
// URL indicators against RemoteUrl when it has a scheme, in canonical form.
let UrlHits = Events
    | where RemoteUrl matches regex @"^[A-Za-z][A-Za-z0-9+.-]*://"
    | extend Raw = RemoteUrl
{_URL_KEY}
    | project TimeGenerated, MatchedColumn = "RemoteUrl", MatchedValue = RemoteUrl,
        ClientIP = LocalIP, ClientHost = DeviceName, RemoteIP, Url = RemoteUrl,
        Indicator, Confidence, ThreatType, ThreatFoxId, MatchKind = "url";"""

_DNS_EVENTS = """\
let Events = materialize(DnsEvents
    | where TimeGenerated > ago(lookback)
    | where SubType == "LookupQuery"
    | project TimeGenerated, Name, IPAddresses, ClientIP, DnsServer = Computer);"""

_DNS_IP = """\
// IP indicators against the answers ("a, b, c" in IPAddresses). An answer has
// no port: one row per IP, the one valid longest.
let IpByAddress = IpRows
    | summarize arg_max(ValidUntil, Confidence, ThreatType, ThreatFoxId) by Indicator;
let IpHits = Events
    | where isnotempty(IPAddresses)
    | mv-expand Answer = split(IPAddresses, ",") to typeof(string)
    | extend Answer = tolower(trim(@"\\s+", Answer))
    | join kind=inner IpByAddress on $left.Answer == $right.Indicator
    | where TimeGenerated < ValidUntil
    | project TimeGenerated, MatchedColumn = "IPAddresses", MatchedValue = Name,
        ClientIP, ClientHost = DnsServer, RemoteIP = Answer,
        DomainName = trim_end(@"\\.", tolower(Name)), Indicator, Confidence,
        ThreatType, ThreatFoxId, MatchKind = "dns_answer_ip";"""

_DNS_DOMAIN = """\
// Domain indicators against the queried Name (case and a trailing dot
// ignored): exact, or a subdomain on a dot boundary.
let DomainHits = Events
    | project TimeGenerated, MatchedValue = Name, MatchedColumn = "Name", ClientIP,
        ClientHost = DnsServer, RemoteIP = "",
        DomainName = trim_end(@"\\.", tolower(Name))
    | extend Zone = extract(@"([^.]+\\.[^.]+)$", 1, DomainName)
    | join kind=inner DomainRows on Zone
    | where DomainName == Indicator or DomainName endswith strcat(".", Indicator)
    | where TimeGenerated < ValidUntil
    | extend MatchKind = iff(DomainName == Indicator, "domain", "subdomain");"""

_BODIES = {
    "CommonSecurityLog": (
        _CSL_EVENTS,
        {"ip": _CSL_IP, "domain": _CSL_DOMAIN, "url": _CSL_URL},
    ),
    "DeviceNetworkEvents": (
        _DNE_EVENTS,
        {"ip": _DNE_IP, "domain": _DNE_DOMAIN, "url": _DNE_URL},
    ),
    "DnsEvents": (_DNS_EVENTS, {"ip": _DNS_IP, "domain": _DNS_DOMAIN}),
}
_HIT_NAMES = {"ip": "IpHits", "domain": "DomainHits", "url": "UrlHits"}

_RESULT = """\
// One row per indicator and client, with first and last time and a count.
union {hits}
| summarize FirstSeen = min(TimeGenerated), LastSeen = max(TimeGenerated),
    EventCount = count(), arg_max(TimeGenerated, MatchKind, MatchedColumn, MatchedValue,
        RemoteIP, Confidence, ThreatType, ThreatFoxId)
    by Indicator, ClientIP, ClientHost
| project FirstSeen, LastSeen, EventCount, Indicator, MatchKind, MatchedColumn,
    MatchedValue, ClientIP, ClientHost, RemoteIP, Confidence, ThreatType, ThreatFoxId
| order by LastSeen desc"""


def _rows(
    kind: str,
    source: str,
    indicators: Sequence[Indicator],
    settings: Settings,
    families: Sequence[str],
) -> str:
    if source == "watchlist":
        loaded = _watchlist_rows(kind, settings.watchlist_alias(kind), families)
    else:
        loaded = _inline_rows(kind, indicators, settings)
    return loaded + "\n" + _ROW_TAILS[kind]


def _query(
    info: TableInfo,
    kinds: Sequence[str],
    source: str,
    indicators: Sequence[Indicator],
    settings: Settings,
    families: Sequence[str],
    lookback: timedelta,
) -> str:
    events, hits = _BODIES[info.table]
    # Data never enters a comment raw: a newline would end the comment.
    title = ", ".join(kql_string_literal(name) for name in families)
    origin = (
        "the product's watchlists"
        if source == "watchlist"
        else "the values inlined below"
    )
    parts = [
        f"// ThreatFox indicators of {title} in {info.table}, from {origin}.",
        f"let lookback = {kql_timespan(lookback)};",
    ]
    if "ip" in kinds:
        parts.append(f'let non_public = @"{_NON_PUBLIC}";')
    if "domain" in kinds and info.table != "DnsEvents":
        parts.append(f"let host_of = {_HOST_OF};")
    parts += [_rows(k, source, indicators, settings, families) for k in kinds]
    parts.append(events)
    parts += [hits[k] for k in kinds]
    parts.append(_RESULT.format(hits=", ".join(_HIT_NAMES[k] for k in kinds)))
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
