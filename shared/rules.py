"""Scheduled analytics rules that match the watchlists against network logs.

One rule per table (CommonSecurityLog, DeviceNetworkEvents, DnsEvents), its
KQL in ``shared/kql/<table>.kql``. Only watchlist aliases, on/off flags for the
indicator kinds and the schedule durations are substituted into the KQL, each
checked before it goes in; indicator values are read by the query at run time.

Every rule exists whatever kinds are enabled, so its id and name stay stable;
a disabled kind's watchlist is simply not read (its flag is ``false``).
Suppression stays off: each run reads only rows ingested since the previous
run (``ingestion_time() > ago(frequency)``), so a run never repeats an earlier
alert, while suppression would hide a second client reaching the same C2.

The KQL files also delimit their matching blocks for the hunt packs
(``matching_blocks``); ``rule_template`` strips those markers, so they never
reach a rule.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from shared.errors import SentinelError
from shared.settings import Settings

__all__ = [
    "MAX_QUERY_CHARS",
    "RULE_API_VERSION",
    "RULE_NAMESPACE",
    "RuleDefinition",
    "RuleClient",
    "arm_template",
    "desired_rules",
    "iso_duration",
    "matching_blocks",
    "render_query",
    "rule_template",
    "rule_id",
    "sync_rules",
]

logger = logging.getLogger(__name__)

RULE_API_VERSION = "2021-10-01"
# Fixed forever: rule ids are uuid5(RULE_NAMESPACE, "<prefix>-<table>").
RULE_NAMESPACE = uuid.UUID("6f4f5c1e-3b1a-5d0e-9a37-7c2f0b8e4d21")
MAX_QUERY_CHARS = 10_000
KQL_DIR = Path(__file__).resolve().parent / "kql"

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
# Markers in the KQL files (see their header): whole "//@" lines, and the
# "//@ rule-only" suffix on a line the hunt packs leave out.
_MARKER_LINE = re.compile(r"^//@.*\n", re.MULTILINE)
_RULE_ONLY = "  //@ rule-only"
_BLOCK = re.compile(r"^//@ begin (\w+)\n(.*?)^//@ end \1\n", re.MULTILINE | re.DOTALL)
_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{1,62}[A-Za-z0-9]$")
# A table missing from the workspace, as the service words it (see the reference).
_MISSING_TABLE = re.compile(
    r"tables? does not exist|failed to resolve table|SEM0100", re.IGNORECASE
)
# Keys the service adds or the analyst owns; never compared, never forced.
_NOT_MANAGED = frozenset({"enabled", "lastModifiedUtc"})


@dataclass(frozen=True)
class _TableRule:
    table: str
    title: str
    connector: str
    kinds: tuple[str, ...]
    client: str  # the column naming the affected machine in the description
    entities: tuple[tuple[str, str, str], ...]  # (entity type, identifier, column)


_TABLE_RULES = (
    _TableRule(
        table="CommonSecurityLog",
        title="firewall and proxy logs (CommonSecurityLog)",
        connector="Common Event Format (CEF) via AMA",
        kinds=("ip", "domain", "url"),
        client="ClientIP",
        entities=(
            ("IP", "Address", "ClientIP"),
            ("IP", "Address", "RemoteIP"),
            ("Host", "HostName", "ClientHost"),
            ("DNS", "DomainName", "DomainName"),
            ("URL", "Url", "Url"),
        ),
    ),
    _TableRule(
        table="DeviceNetworkEvents",
        title="Defender for Endpoint network events (DeviceNetworkEvents)",
        connector="Microsoft Defender XDR",
        kinds=("ip", "domain", "url"),
        client="ClientHost",
        entities=(
            ("IP", "Address", "ClientIP"),
            ("IP", "Address", "RemoteIP"),
            ("Host", "FullName", "ClientHost"),
            ("DNS", "DomainName", "DomainName"),
            ("URL", "Url", "Url"),
        ),
    ),
    _TableRule(
        table="DnsEvents",
        title="DNS server query logs (DnsEvents)",
        connector="DNS (Windows Server DNS solution, agent-based; the AMA connector fills ASimDnsActivityLogs, not DnsEvents)",
        kinds=("ip", "domain"),
        client="ClientIP",
        entities=(
            ("IP", "Address", "ClientIP"),
            ("IP", "Address", "RemoteIP"),
            ("Host", "FullName", "DnsServer"),
            ("DNS", "DomainName", "DomainName"),
        ),
    ),
)
_CUSTOM_DETAILS = (
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
)


class RuleClient(Protocol):
    """What the rule sync needs from ``shared.sentinel.SentinelClient``."""

    def get_alert_rule(self, rule_id: str) -> dict[str, Any] | None:
        """Return the rule as ARM JSON, or None when absent."""

    def put_alert_rule(self, rule_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create or replace the rule."""


@dataclass(frozen=True)
class RuleDefinition:
    """One desired analytics rule: its id, table, connector and ARM body."""

    rule_id: str
    table: str
    connector: str
    body: dict[str, Any]

    @property
    def display_name(self) -> str:
        """The rule's name in the portal (and the key of its report entry)."""
        name: str = self.body["properties"]["displayName"]
        return name


def iso_duration(value: timedelta) -> str:
    """Write a duration as ISO 8601 the way the SDK does (PT2H, P1D, P1DT2H)."""
    seconds = int(value.total_seconds())
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    time = "".join(
        f"{amount}{unit}"
        for amount, unit in ((hours, "H"), (minutes, "M"), (seconds, "S"))
        if amount
    )
    text = "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")
    return text if text != "P" else "PT0S"


def _kql_timespan(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds <= 0 or seconds != value.total_seconds():
        raise ValueError(
            f"a rule window must be a positive whole number of seconds: {value}"
        )
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _literal(name: str, value: object) -> str:
    # Only three shapes may enter the KQL: an alias, a flag, a duration.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return _kql_timespan(value)
    if isinstance(value, str) and _ALIAS.match(value):
        return value
    raise ValueError(f"refusing to put {value!r} into the KQL as {name}")


def render_query(template: str, values: dict[str, object]) -> str:
    """Fill ``{{NAME}}`` placeholders with checked aliases, flags and durations.

    Raises ``ValueError`` for a value that is not a valid watchlist alias, a
    bool or a timedelta, for a placeholder without a value, and for a value
    without a placeholder (a typo would otherwise go unnoticed).
    """
    used = set(_PLACEHOLDER.findall(template))
    missing, unused = used - values.keys(), values.keys() - used
    if missing or unused:
        raise ValueError(
            f"placeholders without values: {sorted(missing)}; unused: {sorted(unused)}"
        )
    literals = {name: _literal(name, value) for name, value in values.items()}
    return _PLACEHOLDER.sub(lambda match: literals[match.group(1)], template)


def _kql_file(table: str) -> str:
    return (KQL_DIR / f"{table}.kql").read_text(encoding="utf-8")


def rule_template(table: str) -> str:
    """Return the table's rule KQL with its hunt-pack markers removed.

    Parameters
    ----------
    table
        The Sentinel table, the name of a file in ``shared/kql``.
    """
    text = _MARKER_LINE.sub("", _kql_file(table))
    return text.replace(_RULE_ONLY + "\n", "\n")


def matching_blocks(table: str) -> dict[str, str]:
    """Return the table's matching blocks, as the hunt packs reuse them.

    The blocks are the rule's own text between ``//@ begin NAME`` and
    ``//@ end NAME`` (watchlist rows, events, hits per kind), without the
    lines marked ``//@ rule-only`` (the per-run ingestion filter and the
    on/off flags). Placeholders such as ``{{IP_WATCHLIST}}`` are left in.

    Parameters
    ----------
    table
        The Sentinel table, the name of a file in ``shared/kql``.
    """
    blocks = {}
    for match in _BLOCK.finditer(_kql_file(table)):
        lines = match.group(2).splitlines()
        kept = [line for line in lines if not line.endswith(_RULE_ONLY)]
        blocks[match.group(1)] = "\n".join(kept)
    return blocks


def _query_values(spec: _TableRule, settings: Settings) -> dict[str, object]:
    values: dict[str, object] = {
        "LOOKBACK": settings.rule_query_period,
        "FREQUENCY": settings.rule_query_frequency,
    }
    for kind in spec.kinds:
        values[f"{kind.upper()}_WATCHLIST"] = settings.watchlist_alias(kind)
        values[f"{kind.upper()}_ENABLED"] = kind in settings.kinds
    return values


def rule_id(settings: Settings, table: str) -> str:
    """Return the rule's deterministic id: the same three rules on every sync."""
    return str(uuid.uuid5(RULE_NAMESPACE, f"{settings.watchlist_prefix}-{table}"))


def _properties(spec: _TableRule, settings: Settings, query: str) -> dict[str, Any]:
    prefix = settings.watchlist_prefix
    return {
        "displayName": f"{prefix} - indicator seen in {spec.table}",
        "description": (
            f"Matches the {prefix} watchlists (abuse.ch ThreatFox IPs with ports, "
            f"domains and URLs) against {spec.title}. One alert per indicator and "
            "client per run; severity follows ThreatFox confidence, one notch lower "
            "when only the IP matched. Managed by the ThreatFox sync: edits other "
            "than enabling or disabling are overwritten."
        ),
        "severity": "Medium",
        "enabled": True,
        "query": query,
        "queryFrequency": iso_duration(settings.rule_query_frequency),
        "queryPeriod": iso_duration(settings.rule_query_period),
        "triggerOperator": "GreaterThan",
        "triggerThreshold": 0,
        # Off on purpose: see the module docstring.
        "suppressionEnabled": False,
        "suppressionDuration": "PT1H",
        "tactics": ["CommandAndControl"],
        "eventGroupingSettings": {"aggregationKind": "AlertPerResult"},
        "entityMappings": [
            {
                "entityType": entity,
                "fieldMappings": [{"identifier": identifier, "columnName": column}],
            }
            for entity, identifier, column in spec.entities
        ],
        "customDetails": {name: name for name in _CUSTOM_DETAILS},
        "alertDetailsOverride": {
            "alertDisplayNameFormat": (
                f"ThreatFox {{{{Malware}}}} indicator {{{{Indicator}}}} in {spec.table}"
            ),
            "alertDescriptionFormat": (
                f"{{{{{spec.client}}}}} matched the ThreatFox indicator "
                f"{{{{Indicator}}}} ({{{{MatchKind}}}}) in {spec.table}. The "
                "malware, ThreatFox id, confidence, matched column and value, "
                "first and last time and event count are in the custom details."
            ),
            "alertSeverityColumnName": "AlertSeverity",
        },
        "incidentConfiguration": {
            "createIncident": True,
            "groupingConfiguration": {
                "enabled": True,
                "reopenClosedIncident": False,
                "lookbackDuration": "P1D",
                "matchingMethod": "Selected",
                "groupByEntities": [],
                "groupByAlertDetails": [],
                "groupByCustomDetails": ["Indicator"],
            },
        },
    }


def rule_tables() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """Return each rule's table, the connector that fills it, and the kinds it matches."""
    return tuple((spec.table, spec.connector, spec.kinds) for spec in _TABLE_RULES)


def desired_rules(settings: Settings) -> list[RuleDefinition]:
    """Return the three rules the settings call for, with their full ARM bodies."""
    rules = []
    for spec in _TABLE_RULES:
        template = rule_template(spec.table)
        query = render_query(template, _query_values(spec, settings))
        if len(query) > MAX_QUERY_CHARS:
            raise ValueError(f"the {spec.table} rule query is {len(query)} characters")
        body = {"kind": "Scheduled", "properties": _properties(spec, settings, query)}
        rules.append(
            RuleDefinition(
                rule_id(settings, spec.table), spec.table, spec.connector, body
            )
        )
    return rules


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


def _comparable(value: Any) -> Any:
    """Drop empty values, read durations and line endings alike on both sides."""
    if isinstance(value, dict):
        items = ((key, _comparable(item)) for key, item in value.items())
        return {key: item for key, item in items if item not in (None, [], {}, "")}
    if isinstance(value, list):
        return [_comparable(item) for item in value]
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match and value not in ("P", "PT"):
            days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        return value.replace("\r\n", "\n")
    return value


def _differs(current: dict[str, Any], desired: dict[str, Any]) -> list[str]:
    """Name the product-managed properties whose current value is not the desired one."""
    return [
        key
        for key, value in desired.items()
        if key not in _NOT_MANAGED
        and _comparable(current.get(key)) != _comparable(value)
    ]


def _is_missing_table(error: SentinelError) -> bool:
    return error.status_code == 400 and bool(
        _MISSING_TABLE.search(f"{error} {error.body}")
    )


def _sync_rule(
    client: RuleClient, rule: RuleDefinition, *, dry_run: bool
) -> dict[str, Any]:
    entry: dict[str, Any] = {"rule_id": rule.rule_id, "table": rule.table}
    current = client.get_alert_rule(rule.rule_id)
    body = rule.body
    if current is None:
        action = "create"
    else:
        current_properties = current.get("properties", {})
        changed = _differs(current_properties, body["properties"])
        if current.get("kind") == "Scheduled" and not changed:
            entry["action"] = "unchanged"
            return entry
        action = "update"
        entry["reason"] = "changed: " + ", ".join(changed or ["kind"])
        # The analyst's enabled/disabled choice survives a content update.
        kept = {"enabled": current_properties.get("enabled", True)}
        body = {**body, "properties": {**body["properties"], **kept}}
    if dry_run:
        entry["action"] = f"would_{action}"
        return entry
    try:
        client.put_alert_rule(rule.rule_id, body)
    except SentinelError as error:
        if not _is_missing_table(error):
            raise
        logger.warning(
            "Skipped analytics rule %s: table %s is missing; enable the %s connector",
            rule.display_name,
            rule.table,
            rule.connector,
        )
        return {
            **entry,
            "action": "skipped",
            "reason": f"table {rule.table} does not exist in the workspace",
            "connector": rule.connector,
        }
    entry["action"] = f"{action}d"
    return entry


def sync_rules(
    client: RuleClient, settings: Settings, *, dry_run: bool
) -> dict[str, Any]:
    """Bring the workspace's three rules to the desired content; return the report.

    ``client`` is a ``shared.sentinel.SentinelClient``. A rule is written only when absent
    or when its product-managed content differs; ``enabled`` stays as the
    analyst left it. A rule refused for a missing table is reported as skipped
    with the connector to enable, and tried again on the next run.
    """
    if not settings.rules_enabled:
        return {"managed": False}
    rules: dict[str, Any] = {}
    for rule in desired_rules(settings):
        rules[rule.display_name] = _sync_rule(client, rule, dry_run=dry_run)
    counts: dict[str, int] = {}
    for entry in rules.values():
        counts[entry["action"]] = counts.get(entry["action"], 0) + 1
    logger.info(
        "Analytics rules%s: %s",
        " (dry run)" if dry_run else "",
        ", ".join(f"{count} {action}" for action, count in sorted(counts.items())),
    )
    return {"managed": True, "rules": rules}


def arm_template(settings: Settings) -> dict[str, Any]:
    """Return an ARM deployment template of the three rules (``az deployment group create``)."""
    resources = [
        {
            "type": "Microsoft.OperationalInsights/workspaces/providers/alertRules",
            "apiVersion": RULE_API_VERSION,
            "name": (
                "[concat(parameters('workspace'),"
                f"'/Microsoft.SecurityInsights/','{rule.rule_id}')]"
            ),
            "kind": "Scheduled",
            "properties": rule.body["properties"],
        }
        for rule in desired_rules(settings)
    ]
    return {
        "$schema": (
            "https://schema.management.azure.com/schemas/2019-04-01/"
            "deploymentTemplate.json#"
        ),
        "contentVersion": "1.0.0.0",
        "parameters": {
            "workspace": {
                "type": "string",
                "metadata": {"description": "Name of the Sentinel workspace."},
            }
        },
        "resources": resources,
    }
