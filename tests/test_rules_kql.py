"""Execute each rule's KQL with duckdb-kql over the log corpus in tests/data/logs.

The watchlist rows are the ones the sync wrote: the indicators below are served
as ThreatFox records by the stand-in, ``run_sync`` writes them into its Sentinel
workspace, and SentinelClient.list_items reads them back; _GetWatchlist is bound
to them. The sync runs "as of" 2025-01-02 so that the rows meant to be expired
at event time (one in 2025, one an hour before the events) are still written.

Two production constructs have no duckdb-kql mapping, and the test rewrites
them in the query text, one exact token each (the production KQL is unchanged
and passes Microsoft's parser in test_rules.py):
- ``ingestion_time()`` becomes the corpus column ``IngestionTime``, which holds
  each row's ingestion time, so the duplicate-suppression filter still runs
  for real (a late row is alerted once; a row a previous run saw is not).
- ``column_ifexists("X", "")`` becomes ``X``: the bound watchlist always has
  every column here. The missing-watchlist case is checked by the Kusto parser
  in test_rules.py (a _GetWatchlist without columns must still compile).
"""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb_kql
import pandas as pd
import pytest

from shared.huntpack_queries import hunting_queries
from shared.indicators import Indicator
from shared.rules import desired_rules
from shared.sentinel import SentinelClient
from shared.settings import Settings
from shared.sync import SyncOptions, run_sync
from shared.watchlists import watchlist_specs
from standin.server import StandIn

LOGS = Path(__file__).parent / "data" / "logs"
NOW = datetime(2026, 5, 22, 12, 0, tzinfo=UTC)
SEEN = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)
PORT_COLUMNS = {"SourcePort", "DestinationPort", "RemotePort"}


def ip(value, port, tf_id, confidence, malware="AsyncRAT", first_seen=SEEN):
    return Indicator(
        kind="ip",
        ioc=value,
        port=port,
        ioc_type="ip:port",
        threatfox_id=tf_id,
        threat_type="botnet_cc",
        malware="win.asyncrat",
        malware_printable=malware,
        malware_alias=(),
        confidence_level=confidence,
        first_seen=first_seen,
        reference=None,
        tags=("c2",),
        original=f"{value}:{port}",
    )


def domain(value, tf_id, confidence, first_seen=SEEN):
    return Indicator(
        kind="domain",
        ioc=value,
        port=None,
        ioc_type="domain",
        threatfox_id=tf_id,
        threat_type="botnet_cc",
        malware="win.remcos",
        malware_printable="Remcos",
        malware_alias=(),
        confidence_level=confidence,
        first_seen=first_seen,
        reference=None,
        tags=(),
        original=value,
    )


def url(value, host, port, tf_id, confidence):
    return Indicator(
        kind="url",
        ioc=value,
        port=port,
        ioc_type="url",
        threatfox_id=tf_id,
        threat_type="payload_delivery",
        malware="win.lumma",
        malware_printable="Lumma Stealer",
        malware_alias=(),
        confidence_level=confidence,
        first_seen=SEEN,
        reference=None,
        tags=(),
        original=value,
        host=host,
    )


# ValidUntil = first seen + TTL (30 days for IPs, defaults), so these two
# expire at 11:30 and 11:00 today, inside the 2-hour window.
EXPIRING_IP = datetime(2026, 4, 22, 11, 30, tzinfo=UTC)

INDICATORS = [
    ip("45.9.148.1", 443, "1001", 95),
    ip("45.9.148.1", 8443, "1002", 60, malware="Cobalt Strike"),
    ip("10.1.2.3", 443, "1003", 100),
    ip("185.100.1.1", 80, "1004", 80, first_seen=EXPIRING_IP),
    ip("2a01:4f8::1234", 443, "1005", 80),
    ip("91.92.93.94", 4444, "1006", 92),
    domain("qinerdime.ydns.eu", "2001", 90),
    domain("iotonton.io", "2002", 80),
    domain(
        "old-c2.duckdns.org", "2003", 100, first_seen=datetime(2025, 1, 1, tzinfo=UTC)
    ),
    url("http://evil.example.com/gate.php", "evil.example.com", 80, "3001", 100),
    url("https://cdn.bad.net/p/a.exe", "cdn.bad.net", 443, "3002", 75),
]


def threatfox_record(indicator):
    """The get_iocs record ThreatFox would send for an indicator."""
    value = (
        indicator.original
        if indicator.kind != "ip"
        else f"{indicator.ioc}:{indicator.port}"
    )
    return {
        "id": indicator.threatfox_id,
        "ioc": value,
        "threat_type": indicator.threat_type,
        "ioc_type": indicator.ioc_type,
        "malware": indicator.malware,
        "malware_printable": indicator.malware_printable,
        "malware_alias": None,
        "confidence_level": indicator.confidence_level,
        "first_seen": indicator.first_seen.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "last_seen": None,
        "reference": indicator.reference,
        "tags": list(indicator.tags) or None,
    }


@pytest.fixture(scope="module")
def watchlist_rows():
    """Rows as the stand-in holds them after a sync, keyed by alias."""
    with StandIn(auth_key="test-auth-key") as standin:
        standin.threatfox.set_records([threatfox_record(i) for i in INDICATORS])
        settings = Settings.from_mapping(
            {
                "THREATFOX_AUTH_KEY": "test-auth-key",
                "THREATFOX_API_URL": standin.threatfox_url,
                "SENTINEL_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
                "SENTINEL_RESOURCE_GROUP": "rg-sec",
                "SENTINEL_WORKSPACE_NAME": "ws-sec",
                "AZURE_ARM_ENDPOINT": standin.arm_endpoint,
                "SENTINEL_STATIC_TOKEN": "local-token",
                # Written on purpose: the rules must ignore private addresses too.
                "DROP_NON_PUBLIC_IPS": "false",
                "RECONCILE_INTERVAL_HOURS": "0",
                "RULES_ENABLED": "false",
            }
        )
        options = SyncOptions(now=datetime(2025, 1, 2, tzinfo=UTC), days=7)
        report = run_sync(settings, options)
        assert report.status == "ok", report.error
        assert report.totals()["added"] == len(INDICATORS)

        rows = {}
        with SentinelClient(settings, settings.workspaces[0]) as client:
            for spec in watchlist_specs(settings).values():
                rows[spec.alias] = (spec.search_key, client.list_items(spec.alias))
        return settings, rows


def watchlist_frame(rows):
    # _GetWatchlist's shape: the CSV columns plus SearchKey, _DTItemId and
    # LastUpdatedTimeUTC. One table for every alias, so every column exists.
    records = [
        {
            **item.values,
            "SearchKey": item.values[search_key],
            "_DTItemId": item.item_id,
            "LastUpdatedTimeUTC": NOW - timedelta(days=1),
            "WatchlistAlias": alias,
        }
        for alias, (search_key, items) in rows.items()
        for item in items
    ]
    return pd.DataFrame(records).fillna("")


def load_log(name):
    frame = pd.read_csv(LOGS / f"{name}.csv", dtype=str, keep_default_na=False)
    for column in ("TimeGenerated", "IngestionTime"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in PORT_COLUMNS & set(frame.columns):
        frame[column] = pd.to_numeric(frame[column]).astype("Int32")
    return frame


def bind_columns(query):
    """Rewrite column_ifexists, which duckdb-kql lacks (see the module docstring)."""
    rewritten, count = re.subn(r'column_ifexists\("(\w+)", ""\)', r"\1", query)
    assert count >= 6
    assert "column_ifexists(" not in rewritten
    return rewritten


def for_duckdb(query):
    """Rewrite the two constructs duckdb-kql lacks (see the module docstring)."""
    assert query.count("ingestion_time()") == 1
    return bind_columns(query.replace("ingestion_time()", "IngestionTime"))


@pytest.fixture
def run_rule(watchlist_rows):
    settings, rows = watchlist_rows
    rules = {rule.table: rule for rule in desired_rules(settings)}
    connection = duckdb_kql.connect()
    connection.register("watchlist_frame", watchlist_frame(rows))
    connection.execute("CREATE TABLE WatchlistRows AS SELECT * FROM watchlist_frame")
    # set_functions is process-wide: set it for this test, clear it afterwards.
    duckdb_kql.set_functions(
        [
            "function _GetWatchlist(watchlist_alias:string) { WatchlistRows"
            " | where WatchlistAlias == watchlist_alias | project-away WatchlistAlias }"
        ]
    )

    def run(table, hunt_query=None):
        connection.register("log_frame", load_log(table))
        connection.execute(
            f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM log_frame"
        )
        if hunt_query is None:
            query = for_duckdb(rules[table].body["properties"]["query"])
        else:
            query = bind_columns(hunt_query)
        result = duckdb_kql.df(connection, query, query_now=NOW)
        return result

    yield run
    duckdb_kql.set_functions(None)
    connection.close()


def at(hour, minute):
    return f"2026-05-22T{hour:02d}:{minute:02d}:00Z"


def alerts(result, client_host_column):
    rows = []
    for record in result.to_dict("records"):
        rows.append(
            (
                record["Indicator"],
                record["ClientIP"],
                record[client_host_column],
                record["MatchKind"],
                record["MatchedColumn"],
                int(record["EventCount"]),
                record["FirstSeen"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                record["LastSeen"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                record["ThreatFoxId"],
                int(record["Confidence"]),
                record["AlertSeverity"],
            )
        )
    return sorted(rows)


def test_common_security_log_alerts(run_rule):
    result = run_rule("CommonSecurityLog")

    assert alerts(result, "ClientHost") == sorted(
        [
            # Outbound to the listed ip:port, twice: one row, count 2; the
            # IP's other listed port (8443) does not add a second row.
            ("45.9.148.1", "192.0.2.10", "pc-10", "ip_port", "DestinationIP", 2,
             at(11, 50), at(11, 55), "1001", 95, "High"),
            # Inbound from the indicator on an unlisted port: one notch lower.
            ("45.9.148.1", "192.0.2.11", "pc-11", "ip_only_port_mismatch", "SourceIP", 1,
             at(11, 40), at(11, 40), "1001", 95, "Medium"),
            # A late row (event 100 minutes ago, ingested this run) still alerts.
            ("45.9.148.1", "192.0.2.12", "pc-12", "ip_port", "DestinationIP", 1,
             at(10, 20), at(10, 20), "1001", 95, "High"),
            # Expiring at 11:30: the 11:00 event matches, the 11:45 one does not.
            ("185.100.1.1", "192.0.2.16", "pc-16", "ip_port", "DestinationIP", 1,
             at(11, 0), at(11, 0), "1004", 80, "Medium"),
            ("qinerdime.ydns.eu", "192.0.2.20", "pc-20", "domain", "DestinationHostName", 1,
             at(11, 30), at(11, 30), "2001", 90, "High"),
            ("iotonton.io", "192.0.2.21", "pc-21", "domain", "RequestURL", 1,
             at(11, 31), at(11, 31), "2002", 80, "Medium"),
            ("http://evil.example.com/gate.php", "192.0.2.25", "pc-25", "url", "RequestURL", 1,
             at(11, 35), at(11, 35), "3001", 100, "High"),
            ("https://cdn.bad.net/p/a.exe", "192.0.2.26", "pc-26", "url", "RequestURL", 1,
             at(11, 36), at(11, 36), "3002", 75, "Medium"),
        ]
    )  # fmt: skip


def test_common_security_log_match_details(run_rule):
    result = run_rule("CommonSecurityLog").set_index("ClientIP")

    assert result.loc["192.0.2.20", "MatchedValue"] == "Qinerdime.YDNS.eu."
    assert result.loc["192.0.2.20", "DomainName"] == "qinerdime.ydns.eu"
    assert result.loc["192.0.2.11", "MatchedValue"] == "45.9.148.1:9999"
    assert result.loc["192.0.2.25", "Url"] == "HTTP://Evil.Example.com:80/gate.php#top"
    assert result.loc["192.0.2.10", "Malware"] == "AsyncRAT"
    assert result.loc["192.0.2.10", "ThreatType"] == "botnet_cc"


def test_device_network_events_alerts(run_rule):
    result = run_rule("DeviceNetworkEvents")

    assert alerts(result, "ClientHost") == sorted(
        [
            # IPv6 written in upper case by the sensor.
            ("2a01:4f8::1234", "192.0.2.30", "ws-30.corp.example", "ip_port", "RemoteIP", 1,
             at(11, 20), at(11, 20), "1005", 80, "Medium"),
            ("2a01:4f8::1234", "192.0.2.31", "ws-31.corp.example", "ip_only_port_mismatch",
             "RemoteIP", 1, at(11, 21), at(11, 21), "1005", 80, "Low"),
            ("qinerdime.ydns.eu", "192.0.2.32", "ws-32.corp.example", "domain", "RemoteUrl", 1,
             at(11, 22), at(11, 22), "2001", 90, "High"),
            ("qinerdime.ydns.eu", "192.0.2.33", "ws-33.corp.example", "subdomain", "RemoteUrl",
             1, at(11, 23), at(11, 23), "2001", 90, "High"),
            ("http://evil.example.com/gate.php", "192.0.2.35", "ws-35.corp.example", "url",
             "RemoteUrl", 1, at(11, 25), at(11, 25), "3001", 100, "High"),
            # A dual-stack socket reports the IPv4 C2 as ::ffff:91.92.93.94.
            ("91.92.93.94", "192.0.2.37", "ws-37.corp.example", "ip_port", "RemoteIP", 1,
             at(11, 27), at(11, 27), "1006", 92, "High"),
        ]
    )  # fmt: skip


def test_device_network_events_hunt_matches_as_the_rule(run_rule, watchlist_rows):
    # The hunt pack's inline query reuses the rule's matching blocks: the same
    # IP matches, the dual-stack peer included, over the whole lookback (no
    # per-run ingestion filter, so the 09:00 row a previous run saw is found).
    settings, _ = watchlist_rows
    asyncrat = [i for i in INDICATORS if i.malware_printable == "AsyncRAT"]
    query = hunting_queries(
        asyncrat,
        settings,
        families=["AsyncRAT"],
        source="inline",
        lookback=timedelta(days=1),
    )["DeviceNetworkEvents"]
    result = run_rule("DeviceNetworkEvents", query)

    found = sorted(
        (row["Indicator"], row["ClientHost"], row["MatchKind"], row["MatchedValue"])
        for row in result.to_dict("records")
    )
    assert found == [
        ("2a01:4f8::1234", "ws-30.corp.example", "ip_port", "2a01:4f8::1234:443"),
        ("2a01:4f8::1234", "ws-31.corp.example", "ip_only_port_mismatch",
         "2a01:4f8::1234:8080"),
        ("2a01:4f8::1234", "ws-36.corp.example", "ip_port", "2a01:4f8::1234:443"),
        ("91.92.93.94", "ws-37.corp.example", "ip_port", "91.92.93.94:4444"),
    ]  # fmt: skip


def test_dns_events_alerts(run_rule):
    result = run_rule("DnsEvents")

    assert alerts(result, "DnsServer") == sorted(
        [
            ("qinerdime.ydns.eu", "192.0.2.40", "dns1.corp.example", "domain", "Name", 1,
             at(11, 10), at(11, 10), "2001", 90, "High"),
            ("qinerdime.ydns.eu", "192.0.2.41", "dns1.corp.example", "subdomain", "Name", 1,
             at(11, 11), at(11, 11), "2001", 90, "High"),
            # An answer IP has no port: one notch lower than its confidence says.
            ("91.92.93.94", "192.0.2.44", "dns2.corp.example", "dns_answer_ip", "IPAddresses",
             1, at(11, 14), at(11, 14), "1006", 92, "Medium"),
        ]
    )  # fmt: skip


def test_dns_answer_alert_names_the_query_and_the_ip(run_rule):
    result = run_rule("DnsEvents").set_index("ClientIP")

    assert result.loc["192.0.2.44", "RemoteIP"] == "91.92.93.94"
    assert result.loc["192.0.2.44", "DomainName"] == "cdn.example.net"
    assert result.loc["192.0.2.41", "DomainName"] == "a.b.qinerdime.ydns.eu"


def test_watchlist_rows_came_back_from_the_stand_in(watchlist_rows):
    _, rows = watchlist_rows

    search_key, items = rows["ThreatFox-IP"]
    assert search_key == "IPAddress"
    assert sorted((i.values["IPAddress"], i.values["Port"]) for i in items) == [
        ("10.1.2.3", "443"),
        ("185.100.1.1", "80"),
        ("2a01:4f8::1234", "443"),
        ("45.9.148.1", "443"),
        ("45.9.148.1", "8443"),
        ("91.92.93.94", "4444"),
    ]
    expiring = next(i for i in items if i.values["IPAddress"] == "185.100.1.1")
    assert expiring.values["ValidUntil"] == "2026-05-22T11:30:00Z"
