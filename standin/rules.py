"""Validation of Scheduled analytics rules, after the service's documented limits.

Table check heuristic: a name counts as a table the query reads when it is a *known*
table name (a fixed list of common Log Analytics tables, plus the workspace's
existing tables, plus names tests register) appearing in the query as a whole word,
case-sensitively. A known table the workspace lacks fails the rule the way the
service does. With ``isfuzzy=true`` in the query, missing tables are tolerated as long
as one referenced table exists or the query has a ``datatable`` operand.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from standin.workspace import WorkspaceError

__all__ = ["COMMON_TABLES", "parse_duration", "validate_scheduled_rule"]

COMMON_TABLES = frozenset(
    {
        "ASimDnsActivityLogs",
        "ASimNetworkSessionLogs",
        "ASimWebSessionLogs",
        "AzureActivity",
        "AzureDiagnostics",
        "CommonSecurityLog",
        "DeviceEvents",
        "DeviceFileEvents",
        "DeviceNetworkEvents",
        "DeviceProcessEvents",
        "DnsEvents",
        "EmailUrlInfo",
        "OfficeActivity",
        "SecurityEvent",
        "SigninLogs",
        "Syslog",
        "ThreatIntelIndicators",
        "ThreatIntelligenceIndicator",
        "UrlClickEvents",
        "VMConnection",
        "W3CIISLog",
        "Watchlist",
    }
)
SEVERITIES = ("High", "Medium", "Low", "Informational")
OPERATORS = ("GreaterThan", "LessThan", "Equal", "NotEqual")
MAX_QUERY_CHARS = 10_000
MIN_WINDOW = timedelta(minutes=5)
MAX_WINDOW = timedelta(days=14)
MAX_SUPPRESSION = timedelta(hours=24)
MAX_ENTITY_MAPPINGS = 10
MAX_FIELD_MAPPINGS = 3
MAX_CUSTOM_DETAILS = 20
CUSTOM_DETAIL_KEY = re.compile(r"^[a-zA-Z]+\w*$")
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
WILDCARD_SCAN = re.compile(r"\b(search|union)\s+\*")
FUZZY = re.compile(r"isfuzzy\s*=\s*true", re.IGNORECASE)
DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def _fail(message: str) -> WorkspaceError:
    return WorkspaceError(message, status=400, code="BadRequest")


def parse_duration(value: Any, name: str) -> timedelta:
    """An ISO 8601 duration such as PT5M, PT1H, P1DT12H or P14D."""
    match = DURATION.match(value) if isinstance(value, str) else None
    if match is None or value in ("P", "PT") or value.endswith("T"):
        raise _fail(
            f"The '{name}' property must be an ISO 8601 duration, got {value!r}."
        )
    parts = {unit: float(amount or 0) for unit, amount in match.groupdict().items()}
    return timedelta(**parts)


def _mentions(query: str, name: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", query) is not None


def _check_basics(properties: dict[str, Any]) -> None:
    for name in ("displayName", "query"):
        if not isinstance(properties.get(name), str) or not properties[name]:
            raise _fail(f"The '{name}' property is required.")
    for name in ("enabled", "suppressionEnabled"):
        if not isinstance(properties.get(name), bool):
            raise _fail(f"The '{name}' property is required and must be a boolean.")
    if properties.get("severity") not in SEVERITIES:
        raise _fail(f"The 'severity' property must be one of {list(SEVERITIES)}.")
    if properties.get("triggerOperator") not in OPERATORS:
        raise _fail(f"The 'triggerOperator' property must be one of {list(OPERATORS)}.")
    threshold = properties.get("triggerThreshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise _fail(
            "The 'triggerThreshold' property is required and must be an integer."
        )
    if not 0 <= threshold <= 10_000:
        raise _fail("The 'triggerThreshold' property must be between 0 and 10000.")


def _check_query_text(query: str) -> None:
    if len(query) > MAX_QUERY_CHARS:
        raise _fail(
            f"The query is {len(query)} characters; the limit is {MAX_QUERY_CHARS}."
        )
    if WILDCARD_SCAN.search(query):
        raise _fail("The query may not use 'search *' or 'union *'.")


def _check_windows(properties: dict[str, Any]) -> None:
    frequency = parse_duration(properties.get("queryFrequency"), "queryFrequency")
    period = parse_duration(properties.get("queryPeriod"), "queryPeriod")
    for name, value in (("queryFrequency", frequency), ("queryPeriod", period)):
        if not MIN_WINDOW <= value <= MAX_WINDOW:
            raise _fail(f"The '{name}' must be between 5 minutes and 14 days.")
    if frequency > period:
        raise _fail("The queryFrequency must be less than or equal to the queryPeriod.")
    if period >= timedelta(days=2) and frequency < timedelta(hours=1):
        raise _fail(
            "When the queryPeriod is 2 days or longer the queryFrequency must be 1 hour "
            "or longer."
        )
    suppression = parse_duration(
        properties.get("suppressionDuration"), "suppressionDuration"
    )
    if suppression > MAX_SUPPRESSION:
        raise _fail("The 'suppressionDuration' must be at most 24 hours.")


def _check_entity_mappings(mappings: Any, query: str) -> None:
    if mappings is None:
        return
    if not isinstance(mappings, list) or len(mappings) > MAX_ENTITY_MAPPINGS:
        raise _fail(f"A rule may have at most {MAX_ENTITY_MAPPINGS} entity mappings.")
    for mapping in mappings:
        fields = mapping.get("fieldMappings") if isinstance(mapping, dict) else None
        if not isinstance(mapping, dict) or not mapping.get("entityType"):
            raise _fail("Each entity mapping needs an 'entityType'.")
        if not isinstance(fields, list) or not 1 <= len(fields) <= MAX_FIELD_MAPPINGS:
            raise _fail(
                f"Each entity mapping needs 1 to {MAX_FIELD_MAPPINGS} field mappings."
            )
        for field_mapping in fields:
            column = (
                field_mapping.get("columnName")
                if isinstance(field_mapping, dict)
                else None
            )
            if not isinstance(field_mapping, dict) or not field_mapping.get(
                "identifier"
            ):
                raise _fail("Each field mapping needs an 'identifier'.")
            if not isinstance(column, str) or not _mentions(query, column):
                raise _fail(
                    f"The entity mapping column '{column}' is not in the query results."
                )


def _check_custom_details(details: Any, query: str) -> None:
    if details is None:
        return
    if not isinstance(details, dict) or len(details) > MAX_CUSTOM_DETAILS:
        raise _fail(f"A rule may have at most {MAX_CUSTOM_DETAILS} custom details.")
    for key, column in details.items():
        if len(key) > 20 or not CUSTOM_DETAIL_KEY.match(key):
            raise _fail(f"Invalid custom details key '{key}'.")
        if not isinstance(column, str) or not _mentions(query, column):
            raise _fail(
                f"The custom details column '{column}' is not in the query results."
            )


def _check_override(override: Any, query: str) -> None:
    if override is None:
        return
    if not isinstance(override, dict):
        raise _fail("alertDetailsOverride must be an object.")
    limits = {"alertDisplayNameFormat": 256, "alertDescriptionFormat": 5000}
    for name, limit in limits.items():
        text = override.get(name)
        if text is None:
            continue
        if not isinstance(text, str) or not 1 <= len(text) <= limit:
            raise _fail(f"'{name}' must be 1 to {limit} characters.")
        columns = PLACEHOLDER.findall(text)
        if len(columns) > 3:
            raise _fail(f"'{name}' may hold at most 3 {{{{Column}}}} placeholders.")
        for column in columns:
            if not _mentions(query, column):
                raise _fail(
                    f"The column '{column}' in '{name}' is not in the query results."
                )
    for name in ("alertTacticsColumnName", "alertSeverityColumnName"):
        column = override.get(name)
        if column is not None and not _mentions(query, str(column)):
            raise _fail(
                f"The column '{column}' in '{name}' is not in the query results."
            )


def _check_tables(query: str, existing: set[str], known: set[str]) -> None:
    referenced = {name for name in known | existing if _mentions(query, name)}
    missing = sorted(referenced - existing)
    if not missing:
        return
    if FUZZY.search(query) and (referenced & existing or "datatable" in query):
        return
    raise _fail(
        "Failed to run the analytics rule query. One of the tables does not exist. "
        f"Semantic error: 'SEM0100' Failed to resolve table or column expression "
        f"named '{missing[0]}'."
    )


def validate_scheduled_rule(
    body: dict[str, Any], existing_tables: set[str], known_tables: set[str]
) -> dict[str, Any]:
    """Return the rule's properties, or raise WorkspaceError(400) like the service."""
    if body.get("kind") != "Scheduled":
        raise _fail(
            f"The stand-in supports only kind 'Scheduled', got {body.get('kind')!r}."
        )
    properties = body.get("properties")
    if not isinstance(properties, dict):
        raise _fail("The 'properties' object is required.")

    _check_basics(properties)
    query = properties["query"]
    _check_query_text(query)
    _check_windows(properties)
    _check_entity_mappings(properties.get("entityMappings"), query)
    _check_custom_details(properties.get("customDetails"), query)
    _check_override(properties.get("alertDetailsOverride"), query)
    _check_tables(query, existing_tables, known_tables | set(COMMON_TABLES))
    return properties
