"""Settings: validation, and the README and sample file kept in step with the code."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from shared.errors import ConfigError
from shared.settings import SETTINGS, Settings, offline_settings
from tests.conftest import ROOT

MINIMAL = {
    "THREATFOX_AUTH_KEY": "k",
    "SENTINEL_SUBSCRIPTION_ID": "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d",
    "SENTINEL_RESOURCE_GROUP": "rg",
    "SENTINEL_WORKSPACE_NAME": "soc-ws",
}


def test_defaults_are_the_documented_ones():
    settings = Settings.from_mapping(MINIMAL)

    assert settings.days == 1
    assert settings.kinds == ("ip", "domain", "url")
    assert settings.min_confidence == 50
    assert settings.ttl_days == {"ip": 30, "domain": 90, "url": 90, "hash": 180}
    assert settings.monthly_change_budget == 50_000
    assert settings.rule_query_frequency == timedelta(hours=1)
    assert settings.rule_query_period == timedelta(hours=2)
    assert settings.watchlist_alias("hash") == "ThreatFox-FileHash"
    assert settings.workspaces[0].label == "rg/soc-ws"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("THREATFOX_DAYS", "0"),
        ("THREATFOX_DAYS", "8"),
        ("THREATFOX_DAYS", "one"),
        ("MIN_CONFIDENCE", "101"),
        ("INDICATOR_KINDS", "ip,email"),
        ("THREAT_TYPES", "phishing"),
        ("DROP_NON_PUBLIC_IPS", "maybe"),
        ("ALLOWLIST", "not a domain"),
        ("WATCHLIST_PREFIX", "-bad"),
        ("RULE_QUERY_FREQUENCY", "PT1M"),
        ("RULE_QUERY_PERIOD", "P15D"),
        ("RULE_QUERY_FREQUENCY", "hourly"),
        ("SENTINEL_WORKSPACES", "/subscriptions/x/resourceGroups/y"),
        ("MONTHLY_CHANGE_BUDGET", "100001"),
        ("THREATFOX_API_URL", "ftp://example.org"),
        ("SENTINEL_SUBSCRIPTION_ID", "<subscription id>"),
        ("SENTINEL_RESOURCE_GROUP", "<resource group of the workspace>"),
        ("SENTINEL_WORKSPACE_NAME", "ws 1/../x"),
        ("SENTINEL_WORKSPACE_NAME", "ws"),
    ],
)
def test_invalid_settings_are_named(name, value):
    with pytest.raises(ConfigError) as raised:
        Settings.from_mapping(MINIMAL | {name: value})

    assert raised.value.setting == name
    assert name in str(raised.value)


@pytest.mark.parametrize("missing", ["THREATFOX_AUTH_KEY", "SENTINEL_WORKSPACE_NAME"])
def test_missing_settings_are_named(missing):
    mapping = {name: value for name, value in MINIMAL.items() if name != missing}

    with pytest.raises(ConfigError, match=missing):
        Settings.from_mapping(mapping)


def test_long_lookback_needs_hourly_frequency():
    mapping = MINIMAL | {"RULE_QUERY_FREQUENCY": "PT30M", "RULE_QUERY_PERIOD": "P2D"}

    with pytest.raises(ConfigError) as raised:
        Settings.from_mapping(mapping)

    assert raised.value.setting == "RULE_QUERY_FREQUENCY"


def test_secret_values_never_appear_in_errors_or_repr():
    mapping = MINIMAL | {
        "THREATFOX_AUTH_KEY": "s3cret-key-value",
        "THREATFOX_DAYS": "9",
    }
    with pytest.raises(ConfigError) as raised:
        Settings.from_mapping(mapping)
    settings = Settings.from_mapping(
        MINIMAL | {"THREATFOX_AUTH_KEY": "s3cret-key-value"}
    )

    assert "s3cret-key-value" not in str(raised.value)
    assert "s3cret-key-value" not in repr(settings)
    assert settings.redact("x s3cret-key-value y") == "x <redacted> y"


def test_static_token_is_refused_off_loopback():
    with pytest.raises(ConfigError) as raised:
        Settings.from_mapping(MINIMAL | {"SENTINEL_STATIC_TOKEN": "t"})

    assert raised.value.setting == "SENTINEL_STATIC_TOKEN"
    local = MINIMAL | {
        "SENTINEL_STATIC_TOKEN": "t",
        "AZURE_ARM_ENDPOINT": "http://127.0.0.1:9",
    }
    assert Settings.from_mapping(local).static_token == "t"


def test_several_workspaces_replace_the_single_one():
    ids = (
        "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg1"
        "/providers/Microsoft.OperationalInsights/workspaces/soc-a,"
        "/subscriptions/66666666-7777-8888-9999-000000000000/resourceGroups/rg2"
        "/providers/Microsoft.OperationalInsights/workspaces/soc-b"
    )
    settings = Settings.from_mapping(
        {"THREATFOX_AUTH_KEY": "k", "SENTINEL_WORKSPACES": ids}
    )

    assert [w.label for w in settings.workspaces] == ["rg1/soc-a", "rg2/soc-b"]
    assert (
        settings.workspaces[1].subscription_id == "66666666-7777-8888-9999-000000000000"
    )


def test_offline_commands_need_no_key_or_workspace():
    settings = offline_settings({"WATCHLIST_PREFIX": "TF"})

    assert settings.watchlist_alias("ip") == "TF-IP"


def test_readme_settings_table_matches_the_code():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([A-Za-z_]+)` \| (.*?) \| (.*) \|$", readme, re.MULTILINE)
    documented = {name: default for name, default, _meaning in rows}

    assert list(documented) == [setting.name for setting in SETTINGS]
    for setting in SETTINGS:
        expected = f"`{setting.default}`" if setting.default else None
        if expected:
            assert documented[setting.name] == expected, setting.name


def test_sample_settings_file_lists_every_setting():
    sample = json.loads(
        (ROOT / "local.settings.sample.json").read_text(encoding="utf-8")
    )
    values = sample["Values"]

    assert {setting.name for setting in SETTINGS} <= set(values)
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["SENTINEL_STATIC_TOKEN"] == ""
    for setting in SETTINGS:
        if setting.default:
            assert values[setting.name] == setting.default, setting.name
