import logging
import re
import uuid
from datetime import timedelta

import pytest

from shared.errors import SentinelError
from shared.rules import (
    MAX_QUERY_CHARS,
    arm_template,
    desired_rules,
    iso_duration,
    render_query,
    sync_rules,
)
from shared.sentinel import SentinelClient
from shared.settings import Settings
from standin.server import StandIn
from tests.kqlcheck import check_kql, watchlist_function

BASE = {
    "THREATFOX_AUTH_KEY": "test-auth-key",
    "SENTINEL_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
    "SENTINEL_RESOURCE_GROUP": "rg-sec",
    "SENTINEL_WORKSPACE_NAME": "ws-sec",
}
TABLES = ["CommonSecurityLog", "DeviceNetworkEvents", "DnsEvents"]
CUSTOM_DETAIL_KEY = re.compile(r"^[a-zA-Z]+\w*$")
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def make_settings(**overrides: str) -> Settings:
    return Settings.from_mapping({**BASE, **overrides})


def output_columns(query: str) -> set[str]:
    # The query ends with one `| project` listing the alert row's columns.
    final = query.rsplit("\n| project ", 1)[1]
    return set(re.findall(r"\w+", final))


@pytest.fixture(scope="module")
def standin():
    with StandIn() as server:
        yield server


@pytest.fixture
def client(standin):
    standin.reset()
    settings = standin_settings(standin)
    with SentinelClient(settings, settings.workspaces[0]) as sentinel:
        yield sentinel


def standin_settings(standin, **overrides: str) -> Settings:
    return make_settings(
        AZURE_ARM_ENDPOINT=standin.arm_endpoint,
        SENTINEL_STATIC_TOKEN="local-token",
        **overrides,
    )


# desired_rules: content and limits


def test_one_rule_per_table_with_deterministic_ids():
    first = desired_rules(make_settings())
    again = desired_rules(make_settings())
    other = desired_rules(make_settings(WATCHLIST_PREFIX="Feed2"))

    assert [rule.table for rule in first] == TABLES
    assert [rule.rule_id for rule in first] == [rule.rule_id for rule in again]
    assert {r.rule_id for r in first}.isdisjoint({r.rule_id for r in other})
    assert all(uuid.UUID(rule.rule_id).version == 5 for rule in first)
    assert [rule.display_name for rule in first] == [
        "ThreatFox - indicator seen in CommonSecurityLog",
        "ThreatFox - indicator seen in DeviceNetworkEvents",
        "ThreatFox - indicator seen in DnsEvents",
    ]


def test_connectors_named_for_each_table():
    connectors = {rule.table: rule.connector for rule in desired_rules(make_settings())}

    assert connectors == {
        "CommonSecurityLog": "Common Event Format (CEF) via AMA",
        "DeviceNetworkEvents": "Microsoft Defender XDR",
        "DnsEvents": "DNS (Windows Server DNS solution, agent-based; the AMA connector fills ASimDnsActivityLogs, not DnsEvents)",
    }


@pytest.mark.parametrize("rule", desired_rules(make_settings()), ids=TABLES)
def test_rule_within_service_limits(rule):
    properties = rule.body["properties"]
    query = properties["query"]
    columns = output_columns(query)

    assert rule.body["kind"] == "Scheduled"
    assert len(query) < MAX_QUERY_CHARS
    assert "{{" not in query
    assert len(properties["entityMappings"]) <= 5
    for mapping in properties["entityMappings"]:
        assert len(mapping["fieldMappings"]) <= 3
        assert {f["columnName"] for f in mapping["fieldMappings"]} <= columns
    details = properties["customDetails"]
    assert len(details) <= 20
    assert all(CUSTOM_DETAIL_KEY.match(key) and len(key) <= 20 for key in details)
    assert set(details.values()) <= columns
    override = properties["alertDetailsOverride"]
    for name in ("alertDisplayNameFormat", "alertDescriptionFormat"):
        placeholders = PLACEHOLDER.findall(override[name])
        assert 1 <= len(placeholders) <= 3
        assert set(placeholders) <= columns
    assert len(override["alertDisplayNameFormat"]) <= 256
    assert override["alertSeverityColumnName"] == "AlertSeverity"
    assert "AlertSeverity" in columns


def test_rule_properties_from_default_settings():
    properties = desired_rules(make_settings())[0].body["properties"]

    assert properties["enabled"] is True
    assert properties["severity"] == "Medium"
    assert properties["queryFrequency"] == "PT1H"
    assert properties["queryPeriod"] == "PT2H"
    assert properties["triggerOperator"] == "GreaterThan"
    assert properties["triggerThreshold"] == 0
    assert properties["suppressionEnabled"] is False
    assert properties["tactics"] == ["CommandAndControl"]
    assert "techniques" not in properties
    assert properties["eventGroupingSettings"] == {"aggregationKind": "AlertPerResult"}
    assert set(properties["customDetails"]) == {
        "Malware",
        "ThreatFoxId",
        "Confidence",
        "ThreatType",
        "Indicator",
        "MatchedColumn",
        "MatchKind",
        "MatchedValue",
        "EventCount",
        "FirstSeen",
        "LastSeen",
    }
    grouping = properties["incidentConfiguration"]["groupingConfiguration"]
    assert properties["incidentConfiguration"]["createIncident"] is True
    assert grouping["enabled"] is True
    assert grouping["lookbackDuration"] == "P1D"
    assert grouping["matchingMethod"] == "Selected"
    assert grouping["groupByCustomDetails"] == ["Indicator"]


def test_schedule_and_aliases_come_from_settings():
    settings = make_settings(
        WATCHLIST_PREFIX="Feed2",
        RULE_QUERY_FREQUENCY="PT30M",
        RULE_QUERY_PERIOD="P1DT2H",
    )
    properties = desired_rules(settings)[0].body["properties"]
    query = properties["query"]

    assert properties["queryFrequency"] == "PT30M"
    assert properties["queryPeriod"] == "P1DT2H"
    assert "let lookback = 26h;" in query
    assert "let frequency = 30m;" in query
    assert "_GetWatchlist('Feed2-IP')" in query
    assert "_GetWatchlist('Feed2-Domain')" in query
    assert "_GetWatchlist('Feed2-URL')" in query
    assert "ThreatFox-" not in query


def test_disabled_kind_reads_no_watchlist_rows():
    rules = desired_rules(make_settings(INDICATOR_KINDS="ip,hash"))
    query = rules[0].body["properties"]["query"]

    assert "let ip_enabled = true;" in query
    assert "let domain_enabled = false;" in query
    assert "let url_enabled = false;" in query
    assert [rule.table for rule in rules] == TABLES


def test_ingestion_time_filter_and_lookback_in_every_rule():
    for rule in desired_rules(make_settings()):
        query = rule.body["properties"]["query"]
        assert query.count("| where ingestion_time() > ago(frequency)") == 1
        assert query.count("| where TimeGenerated > ago(lookback)") == 1


@pytest.mark.parametrize(
    "value",
    [
        "ThreatFox-IP') | union (SecurityEvent",
        "x",
        "a'b",
        "ThreatFox\nIP",
        42,
        3.5,
        None,
    ],
)
def test_render_query_refuses_anything_but_alias_flag_duration(value):
    with pytest.raises(ValueError, match="refusing"):
        render_query("_GetWatchlist('{{IP_WATCHLIST}}')", {"IP_WATCHLIST": value})


def test_render_query_fills_each_shape():
    text = render_query(
        "{{A}} {{B}} {{C}} {{D}} {{E}}",
        {
            "A": "ThreatFox-IP",
            "B": True,
            "C": timedelta(hours=2),
            "D": timedelta(minutes=90),
            "E": timedelta(days=1),
        },
    )

    assert text == "ThreatFox-IP true 2h 90m 1d"


def test_render_query_refuses_missing_and_unused_values():
    with pytest.raises(ValueError, match="without values"):
        render_query("{{A}} {{B}}", {"A": True})
    with pytest.raises(ValueError, match="unused"):
        render_query("{{A}}", {"A": True, "B": False})


def test_iso_duration_matches_sdk_format():
    assert iso_duration(timedelta(hours=1)) == "PT1H"
    assert iso_duration(timedelta(days=1)) == "P1D"
    assert iso_duration(timedelta(days=1, hours=2)) == "P1DT2H"
    assert iso_duration(timedelta(minutes=90)) == "PT1H30M"


# The Kusto parser: zero errors, syntax and semantic.


def test_every_rule_passes_the_kusto_parser():
    variants = {
        "default": make_settings(),
        "prefix": make_settings(WATCHLIST_PREFIX="Feed2", RULE_QUERY_FREQUENCY="PT15M"),
        "ip-only": make_settings(INDICATOR_KINDS="ip"),
    }
    queries = {
        f"{label}/{rule.table}": rule.body["properties"]["query"]
        for label, settings in variants.items()
        for rule in desired_rules(settings)
    }
    # A watchlist that does not exist yet has none of its CSV columns: the
    # queries must still compile (column_ifexists).
    absent = {
        f"absent/{name}": text for name, text in queries.items() if "default" in name
    }
    broken = {
        "broken": queries["default/DnsEvents"].replace("ClientIP,", "ClientIPX,", 1)
    }
    no_columns = [watchlist_function(())]

    problems = check_kql(
        queries | absent | broken,
        functions_for={name: no_columns for name in absent},
    )

    assert {name: errors for name, errors in problems.items() if name != "broken"} == {
        name: [] for name in queries | absent
    }
    # The checker does catch a wrong column, so the zero above means something.
    assert any("KS142" in error for error in problems["broken"])


# arm_template


def test_arm_template_deploys_the_three_rules():
    settings = make_settings()
    template = arm_template(settings)
    rules = desired_rules(settings)

    assert template["$schema"].endswith("/2019-04-01/deploymentTemplate.json#")
    assert template["parameters"]["workspace"]["type"] == "string"
    assert len(template["resources"]) == 3
    for resource, rule in zip(template["resources"], rules, strict=True):
        assert resource["type"] == (
            "Microsoft.OperationalInsights/workspaces/providers/alertRules"
        )
        assert resource["apiVersion"] == "2021-10-01"
        assert resource["kind"] == "Scheduled"
        assert resource["name"] == (
            "[concat(parameters('workspace'),"
            f"'/Microsoft.SecurityInsights/','{rule.rule_id}')]"
        )
        assert resource["properties"] == rule.body["properties"]


def test_arm_template_has_no_accidental_expressions():
    # ARM evaluates any string starting with "[" as an expression.
    def strings(value):
        if isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)
        elif isinstance(value, str):
            yield value

    for resource in arm_template(make_settings())["resources"]:
        assert not [s for s in strings(resource["properties"]) if s.startswith("[")]


# sync_rules against the stand-in


def test_sync_creates_then_leaves_rules_alone(standin, client):
    settings = standin_settings(standin)

    first = sync_rules(client, settings, dry_run=False)
    puts_after_first = standin.sentinel.calls["rule_put"]
    second = sync_rules(client, settings, dry_run=False)

    assert first["managed"] is True
    assert {name: entry["action"] for name, entry in first["rules"].items()} == {
        rule.display_name: "created" for rule in desired_rules(settings)
    }
    assert puts_after_first == 3
    assert [entry["action"] for entry in second["rules"].values()] == ["unchanged"] * 3
    assert standin.sentinel.calls["rule_put"] == 3
    stored = client.get_alert_rule(desired_rules(settings)[2].rule_id)
    assert stored is not None
    assert (
        stored["properties"]["displayName"] == "ThreatFox - indicator seen in DnsEvents"
    )
    assert stored["properties"]["enabled"] is True


def test_analyst_disabled_rule_stays_disabled_after_content_change(standin, client):
    settings = standin_settings(standin)
    sync_rules(client, settings, dry_run=False)
    rule = desired_rules(settings)[0]
    disabled = {
        **rule.body,
        "properties": {**rule.body["properties"], "enabled": False},
    }
    client.put_alert_rule(rule.rule_id, disabled)

    untouched = sync_rules(client, settings, dry_run=False)
    changed = standin_settings(standin, RULE_QUERY_PERIOD="PT3H")
    report = sync_rules(client, changed, dry_run=False)

    assert untouched["rules"][rule.display_name]["action"] == "unchanged"
    entry = report["rules"][rule.display_name]
    assert entry["action"] == "updated"
    assert entry["reason"] == "changed: query, queryPeriod"
    stored = client.get_alert_rule(rule.rule_id)
    assert stored["properties"]["enabled"] is False
    assert stored["properties"]["queryPeriod"] == "PT3H"


def test_missing_table_is_skipped_then_created_once_present(standin, client, caplog):
    settings = standin_settings(standin)
    standin.sentinel.register_table("DnsEvents", exists=False)

    with caplog.at_level(logging.WARNING, logger="shared.rules"):
        first = sync_rules(client, settings, dry_run=False)
    standin.sentinel.register_table("DnsEvents", exists=True)
    second = sync_rules(client, settings, dry_run=False)

    dns = "ThreatFox - indicator seen in DnsEvents"
    assert first["rules"][dns]["action"] == "skipped"
    assert (
        first["rules"][dns]["connector"]
        == "DNS (Windows Server DNS solution, agent-based; the AMA connector fills ASimDnsActivityLogs, not DnsEvents)"
    )
    assert "DnsEvents" in first["rules"][dns]["reason"]
    assert [e["action"] for n, e in first["rules"].items() if n != dns] == [
        "created"
    ] * 2
    assert (
        "DNS (Windows Server DNS solution, agent-based; the AMA connector fills ASimDnsActivityLogs, not DnsEvents)"
        in caplog.text
    )
    assert second["rules"][dns]["action"] == "created"
    assert [e["action"] for n, e in second["rules"].items() if n != dns] == [
        "unchanged"
    ] * 2


def test_other_errors_propagate(standin):
    class Refusing:
        def get_alert_rule(self, rule_id):
            return None

        def put_alert_rule(self, rule_id, body):
            raise SentinelError("quota", status_code=400, body="Too many rules")

    with pytest.raises(SentinelError, match="quota"):
        sync_rules(Refusing(), standin_settings(standin), dry_run=False)


def test_dry_run_writes_nothing(standin, client):
    settings = standin_settings(standin)

    before = sync_rules(client, settings, dry_run=True)
    sync_rules(client, settings, dry_run=False)
    changed = standin_settings(standin, RULE_QUERY_FREQUENCY="PT2H")
    after = sync_rules(client, changed, dry_run=True)

    assert [e["action"] for e in before["rules"].values()] == ["would_create"] * 3
    assert [e["action"] for e in after["rules"].values()] == ["would_update"] * 3
    assert standin.sentinel.calls["rule_put"] == 3
    stored = client.get_alert_rule(desired_rules(settings)[0].rule_id)
    assert stored["properties"]["queryFrequency"] == "PT1H"


def test_rules_disabled_touches_nothing(standin, client):
    settings = standin_settings(standin, RULES_ENABLED="false")

    report = sync_rules(client, settings, dry_run=False)

    assert report == {"managed": False}
    assert standin.sentinel.calls["rule_get"] == 0
    assert standin.sentinel.calls["rule_put"] == 0
