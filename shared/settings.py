"""The product's settings: one frozen object built from app settings.

Every setting the product reads is named here, with its default, and nowhere
else. ``Settings.from_mapping(os.environ)`` is called by the Function app and the
CLI; tests pass a plain dict. A missing or invalid setting raises ``ConfigError``
naming it, before anything talks to ThreatFox or Sentinel.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar
from urllib.parse import urlsplit

from shared.errors import ConfigError

__all__ = [
    "KINDS",
    "offline_settings",
    "SETTINGS",
    "Setting",
    "Settings",
    "WorkspaceRef",
]

KINDS = ("ip", "domain", "url", "hash")
THREAT_TYPES = ("botnet_cc", "payload_delivery", "payload", "cc_skimming")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

_T = TypeVar("_T")
_ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9 _-]{1,62})[A-Za-z0-9]$")
_DURATION_PATTERN = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$")
_GUID_PATTERN = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_RESOURCE_GROUP_PATTERN = re.compile(r"^[-\w.()]{1,90}$")
_WORKSPACE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{2,61}[A-Za-z0-9]$")
_WORKSPACE_ID_PATTERN = re.compile(
    r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)"
    r"/providers/Microsoft\.OperationalInsights/workspaces/([^/]+)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Setting:
    """One app setting: its name, default (None when required) and meaning."""

    name: str
    default: str | None
    description: str
    secret: bool = False


# The one list of settings. The README's settings table and
# local.settings.sample.json are checked against it by the tests.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "THREATFOX_AUTH_KEY",
        None,
        "ThreatFox Auth-Key (a Key Vault reference in Azure).",
        secret=True,
    ),
    Setting(
        "THREATFOX_API_URL",
        "https://threatfox-api.abuse.ch/api/v1/",
        "ThreatFox API endpoint.",
    ),
    Setting(
        "THREATFOX_DAYS",
        "1",
        "Days of IOCs to pull each run (1-7); widened automatically after an outage.",
    ),
    Setting(
        "THREATFOX_TIMEOUT_SECONDS",
        "60",
        "HTTP timeout for one ThreatFox call, in seconds.",
    ),
    Setting(
        "THREATFOX_EXPORT_URL",
        "https://threatfox-api.abuse.ch/v2/files/exports/{auth_key}/full.csv.zip",
        "Keyed export used for reconciliation; {auth_key} is filled in at run time and never logged.",
    ),
    Setting(
        "THREATFOX_SYNC_SCHEDULE",
        "0 0 * * * *",
        "NCRONTAB schedule of the timer trigger (default hourly).",
    ),
    Setting("SENTINEL_SUBSCRIPTION_ID", "", "Subscription of the Sentinel workspace."),
    Setting("SENTINEL_RESOURCE_GROUP", "", "Resource group of the Sentinel workspace."),
    Setting(
        "SENTINEL_WORKSPACE_NAME",
        "",
        "Log Analytics workspace name with Sentinel enabled.",
    ),
    Setting(
        "SENTINEL_WORKSPACES",
        "",
        "Several workspaces (MSSP): comma-separated workspace resource ids; replaces the three settings above.",
    ),
    Setting(
        "AZURE_ARM_ENDPOINT",
        "https://management.azure.com",
        "Azure Resource Manager endpoint (sovereign clouds differ).",
    ),
    Setting(
        "AZURE_AUTHORITY_HOST",
        "https://login.microsoftonline.com",
        "Entra ID authority host (sovereign clouds differ).",
    ),
    Setting(
        "SENTINEL_STATIC_TOKEN",
        "",
        "Local stand-in only: a fixed bearer token; refused unless the ARM endpoint is loopback.",
        secret=True,
    ),
    Setting(
        "WATCHLIST_PREFIX",
        "ThreatFox",
        "Prefix of the watchlist aliases, e.g. ThreatFox-IP.",
    ),
    Setting(
        "INDICATOR_KINDS",
        "ip,domain,url",
        "Indicator kinds to sync: ip, domain, url, hash.",
    ),
    Setting("MIN_CONFIDENCE", "50", "Lowest ThreatFox confidence_level kept (0-100)."),
    Setting(
        "THREAT_TYPES",
        "",
        "Threat types kept (empty: all): botnet_cc, payload_delivery, payload, cc_skimming.",
    ),
    Setting(
        "MALWARE_INCLUDE",
        "",
        "Only these malware families (Malpedia id or printable name; empty: all).",
    ),
    Setting("MALWARE_EXCLUDE", "", "Malware families never synced."),
    Setting(
        "TAGS_EXCLUDE",
        "",
        "IOCs carrying any of these tags are dropped (case-insensitive).",
    ),
    Setting(
        "DROP_NON_PUBLIC_IPS",
        "true",
        "Drop private, loopback, link-local, multicast and reserved addresses.",
    ),
    Setting(
        "ALLOWLIST",
        "",
        "Never-synced domains (with subdomains), IPs and CIDR ranges, comma-separated.",
    ),
    Setting(
        "USE_DEFAULT_ALLOWLIST",
        "true",
        "Also apply the bundled allowlist of shared infrastructure.",
    ),
    Setting(
        "ALLOWLIST_WATCHLIST",
        "",
        "Alias of an analyst-kept allowlist watchlist read each run (empty: none).",
    ),
    Setting(
        "TTL_IP_DAYS", "30", "Days an ip:port indicator stays listed after first seen."
    ),
    Setting(
        "TTL_DOMAIN_DAYS",
        "90",
        "Days a domain indicator stays listed after first seen.",
    ),
    Setting(
        "TTL_URL_DAYS", "90", "Days a URL indicator stays listed after first seen."
    ),
    Setting(
        "TTL_HASH_DAYS", "180", "Days a hash indicator stays listed after first seen."
    ),
    Setting(
        "MONTHLY_CHANGE_BUDGET",
        "50000",
        "Watchlist item changes the sync may spend per calendar month (workspace limit 100,000).",
    ),
    Setting(
        "RECONCILE_INTERVAL_HOURS",
        "24",
        "Hours between reconciliations against the keyed export (0: never).",
    ),
    Setting(
        "RULES_ENABLED",
        "true",
        "Manage the analytics rules (false: leave rules alone).",
    ),
    Setting(
        "RULE_QUERY_FREQUENCY", "PT1H", "How often each analytics rule runs (ISO 8601)."
    ),
    Setting(
        "RULE_QUERY_PERIOD",
        "PT2H",
        "How far back each run looks; wider than the frequency to absorb ingestion delay.",
    ),
    Setting(
        "STATE_CONTAINER",
        "threatfox-sync",
        "Blob container of the state document and the lock.",
    ),
    Setting(
        "AzureWebJobsStorage",
        "",
        "Function storage: a connection string (local: UseDevelopmentStorage=true or Azurite's).",
    ),
    Setting(
        "AzureWebJobsStorage__blobServiceUri",
        "",
        "Function storage by identity (Azure): the blob endpoint.",
    ),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class WorkspaceRef:
    """One Sentinel workspace, addressed like ARM does."""

    subscription_id: str
    resource_group: str
    workspace_name: str

    @property
    def label(self) -> str:
        """Short name used in reports and logs."""
        return f"{self.resource_group}/{self.workspace_name}"


def _raw(mapping: Mapping[str, str], name: str) -> str:
    value = mapping.get(name)
    if value is None or value.strip() == "":
        default = _BY_NAME[name].default
        if default is None:
            message = f"Setting {name} is required but missing or empty."
            raise ConfigError(message, setting=name)
        return default
    return value.strip()


def _parse(mapping: Mapping[str, str], name: str, parse: Callable[[str], _T]) -> _T:
    raw = _raw(mapping, name)
    try:
        return parse(raw)
    except (ValueError, TypeError) as exc:
        shown = "<secret>" if _BY_NAME[name].secret else repr(raw)
        message = f"Setting {name} is invalid ({shown}): {exc}"
        raise ConfigError(message, setting=name) from None


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return parse


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError("must be true or false")


def _items(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _choices(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(raw: str) -> tuple[str, ...]:
        values = tuple(item.lower() for item in _items(raw))
        unknown = [value for value in values if value not in allowed]
        if unknown:
            raise ValueError(
                f"unknown {', '.join(unknown)}; allowed: {', '.join(allowed)}"
            )
        return values

    return parse


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL")
    return raw


def _alias_prefix(raw: str) -> str:
    # The longest suffix is "-FileHash"; the alias must stay within 64 characters.
    if not _ALIAS_PATTERN.match(raw + "-FileHash") or len(raw) > 55:
        raise ValueError(
            "letters, digits, '-', '_' only, starting alphanumeric, at most 55"
        )
    return raw


def _optional_alias(raw: str) -> str:
    if raw and not _ALIAS_PATTERN.match(raw):
        raise ValueError("not a valid watchlist alias (3-64 characters)")
    return raw


def _allowlist(raw: str) -> tuple[str, ...]:
    entries = tuple(item.lower().rstrip(".") for item in _items(raw))
    for entry in entries:
        if not _is_network(entry) and not re.fullmatch(
            r"[a-z0-9_.-]+\.[a-z0-9-]+", entry
        ):
            raise ValueError(f"{entry!r} is neither a domain, an IP nor a CIDR range")
    return entries


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


def _duration(raw: str) -> timedelta:
    match = _DURATION_PATTERN.match(raw)
    if not match or raw in ("P", "PT"):
        raise ValueError("must be an ISO 8601 duration such as PT1H or P1D")
    days, hours, minutes = (int(group or 0) for group in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def _workspace_ids(raw: str) -> tuple[WorkspaceRef, ...]:
    refs = []
    for item in _items(raw):
        match = _WORKSPACE_ID_PATTERN.match(item)
        if not match:
            raise ValueError(f"{item!r} is not a workspace resource id")
        subscription, group, name = match.groups()
        checked = (
            _subscription_id(subscription),
            _resource_group(group),
            _workspace_name(name),
        )
        refs.append(WorkspaceRef(*checked))
    return tuple(refs)


@dataclass(frozen=True)
class Settings:
    """Everything the sync needs, validated."""

    auth_key: str = field(repr=False)
    api_url: str
    days: int
    timeout_seconds: int
    export_url_template: str = field(repr=False)
    workspaces: tuple[WorkspaceRef, ...]
    arm_endpoint: str
    authority_host: str
    static_token: str = field(repr=False)
    watchlist_prefix: str
    kinds: tuple[str, ...]
    min_confidence: int
    threat_types: tuple[str, ...]
    malware_include: tuple[str, ...]
    malware_exclude: tuple[str, ...]
    tags_exclude: tuple[str, ...]
    drop_non_public_ips: bool
    allowlist: tuple[str, ...]
    use_default_allowlist: bool
    allowlist_watchlist: str
    ttl_days: Mapping[str, int]
    monthly_change_budget: int
    reconcile_interval_hours: int
    rules_enabled: bool
    rule_query_frequency: timedelta
    rule_query_period: timedelta
    state_container: str
    storage_connection_string: str = field(repr=False)
    storage_blob_uri: str

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str]) -> Settings:
        """Build and validate settings; raise ``ConfigError`` naming the bad one."""
        arm_endpoint = _parse(mapping, "AZURE_ARM_ENDPOINT", _http_url).rstrip("/")
        static_token = _raw(mapping, "SENTINEL_STATIC_TOKEN")
        _refuse_static_token_off_loopback(static_token, arm_endpoint)
        settings = cls(
            auth_key=_raw(mapping, "THREATFOX_AUTH_KEY"),
            api_url=_parse(mapping, "THREATFOX_API_URL", _http_url),
            days=_parse(mapping, "THREATFOX_DAYS", _int_in(1, 7)),
            timeout_seconds=_parse(
                mapping, "THREATFOX_TIMEOUT_SECONDS", _int_in(1, 600)
            ),
            export_url_template=_raw(mapping, "THREATFOX_EXPORT_URL"),
            workspaces=_workspaces(mapping),
            arm_endpoint=arm_endpoint,
            authority_host=_parse(mapping, "AZURE_AUTHORITY_HOST", _http_url),
            static_token=static_token,
            watchlist_prefix=_parse(mapping, "WATCHLIST_PREFIX", _alias_prefix),
            kinds=_parse(mapping, "INDICATOR_KINDS", _choices(KINDS)),
            min_confidence=_parse(mapping, "MIN_CONFIDENCE", _int_in(0, 100)),
            threat_types=_parse(mapping, "THREAT_TYPES", _choices(THREAT_TYPES)),
            malware_include=tuple(
                m.lower() for m in _items(_raw(mapping, "MALWARE_INCLUDE"))
            ),
            malware_exclude=tuple(
                m.lower() for m in _items(_raw(mapping, "MALWARE_EXCLUDE"))
            ),
            tags_exclude=tuple(
                t.lower() for t in _items(_raw(mapping, "TAGS_EXCLUDE"))
            ),
            drop_non_public_ips=_parse(mapping, "DROP_NON_PUBLIC_IPS", _boolean),
            allowlist=_parse(mapping, "ALLOWLIST", _allowlist),
            use_default_allowlist=_parse(mapping, "USE_DEFAULT_ALLOWLIST", _boolean),
            allowlist_watchlist=_parse(mapping, "ALLOWLIST_WATCHLIST", _optional_alias),
            ttl_days={
                "ip": _parse(mapping, "TTL_IP_DAYS", _int_in(1, 3650)),
                "domain": _parse(mapping, "TTL_DOMAIN_DAYS", _int_in(1, 3650)),
                "url": _parse(mapping, "TTL_URL_DAYS", _int_in(1, 3650)),
                "hash": _parse(mapping, "TTL_HASH_DAYS", _int_in(1, 3650)),
            },
            monthly_change_budget=_parse(
                mapping, "MONTHLY_CHANGE_BUDGET", _int_in(0, 100_000)
            ),
            reconcile_interval_hours=_parse(
                mapping, "RECONCILE_INTERVAL_HOURS", _int_in(0, 24 * 90)
            ),
            rules_enabled=_parse(mapping, "RULES_ENABLED", _boolean),
            rule_query_frequency=_parse(mapping, "RULE_QUERY_FREQUENCY", _duration),
            rule_query_period=_parse(mapping, "RULE_QUERY_PERIOD", _duration),
            state_container=_raw(mapping, "STATE_CONTAINER"),
            storage_connection_string=_raw(mapping, "AzureWebJobsStorage"),
            storage_blob_uri=_raw(mapping, "AzureWebJobsStorage__blobServiceUri"),
        )
        _check_rule_schedule(settings)
        return settings

    def watchlist_alias(self, kind: str) -> str:
        """Alias of the watchlist holding one indicator kind."""
        suffix = {"ip": "IP", "domain": "Domain", "url": "URL", "hash": "FileHash"}[
            kind
        ]
        return f"{self.watchlist_prefix}-{suffix}"

    def export_url(self) -> str:
        """Return the keyed export URL. Secret: never log it or put it in an error."""
        return self.export_url_template.replace("{auth_key}", self.auth_key)

    def redact(self, text: str) -> str:
        """Remove every secret this object holds from ``text``."""
        for secret in (
            self.auth_key,
            self.static_token,
            self.storage_connection_string,
        ):
            if secret:
                text = text.replace(secret, "<redacted>")
        return text


def _subscription_id(raw: str) -> str:
    if not _GUID_PATTERN.match(raw):
        raise ValueError("not a subscription GUID")
    return raw


def _resource_group(raw: str) -> str:
    if not _RESOURCE_GROUP_PATTERN.match(raw) or raw.endswith("."):
        raise ValueError("not a resource group name")
    return raw


def _workspace_name(raw: str) -> str:
    if not _WORKSPACE_NAME_PATTERN.match(raw):
        raise ValueError("not a workspace name (4-63 letters, digits and '-')")
    return raw


# Checked at start-up so a placeholder such as "<subscription id>" fails here,
# naming the setting, rather than as an ARM error in the middle of a run.
_WORKSPACE_PARTS = (
    ("SENTINEL_SUBSCRIPTION_ID", _subscription_id),
    ("SENTINEL_RESOURCE_GROUP", _resource_group),
    ("SENTINEL_WORKSPACE_NAME", _workspace_name),
)


def _workspaces(mapping: Mapping[str, str]) -> tuple[WorkspaceRef, ...]:
    listed = _parse(mapping, "SENTINEL_WORKSPACES", _workspace_ids)
    if listed:
        return listed
    values = []
    for name, check in _WORKSPACE_PARTS:
        if not _raw(mapping, name):
            message = f"Setting {name} is required (or list workspaces in SENTINEL_WORKSPACES)."
            raise ConfigError(message, setting=name)
        values.append(_parse(mapping, name, check))
    return (WorkspaceRef(*values),)


def _refuse_static_token_off_loopback(token: str, arm_endpoint: str) -> None:
    if token and urlsplit(arm_endpoint).hostname not in LOOPBACK_HOSTS:
        message = (
            "Setting SENTINEL_STATIC_TOKEN is for the local stand-in only; "
            "it is refused when AZURE_ARM_ENDPOINT is not a loopback address."
        )
        raise ConfigError(message, setting="SENTINEL_STATIC_TOKEN")


def _check_rule_schedule(settings: Settings) -> None:
    frequency, period = settings.rule_query_frequency, settings.rule_query_period
    five_minutes, fourteen_days = timedelta(minutes=5), timedelta(days=14)
    if not five_minutes <= frequency <= fourteen_days:
        raise ConfigError(
            "Setting RULE_QUERY_FREQUENCY must be 5 minutes to 14 days.",
            setting="RULE_QUERY_FREQUENCY",
        )
    if not frequency <= period <= fourteen_days:
        raise ConfigError(
            "Setting RULE_QUERY_PERIOD must be at least RULE_QUERY_FREQUENCY and at most 14 days.",
            setting="RULE_QUERY_PERIOD",
        )
    if period >= timedelta(days=2) and frequency < timedelta(hours=1):
        raise ConfigError(
            "Setting RULE_QUERY_FREQUENCY must be at least PT1H when RULE_QUERY_PERIOD is 2 days or more.",
            setting="RULE_QUERY_FREQUENCY",
        )


# Placeholders for commands that never call ThreatFox or Sentinel (export, hunt
# packs from a file): those must work without a key or a workspace.
_OFFLINE_PLACEHOLDERS = {
    "THREATFOX_AUTH_KEY": "offline-no-key-needed",
    "SENTINEL_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "SENTINEL_RESOURCE_GROUP": "offline",
    "SENTINEL_WORKSPACE_NAME": "offline",
}


def offline_settings(mapping: Mapping[str, str]) -> Settings:
    """Build settings for offline commands: key and workspace may be absent."""
    filled = dict(mapping)
    for name, placeholder in _OFFLINE_PLACEHOLDERS.items():
        if not filled.get(name, "").strip():
            filled[name] = placeholder
    return Settings.from_mapping(filled)
