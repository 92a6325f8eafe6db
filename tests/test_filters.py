from dataclasses import replace
from datetime import UTC, datetime

import pytest

from shared.filters import (
    DEFAULT_ALLOWLIST_PATH,
    Allowlist,
    Filters,
    read_allowlist_file,
)
from shared.indicators import Indicator
from shared.settings import Settings

REQUIRED = {
    "THREATFOX_AUTH_KEY": "test-key",
    "SENTINEL_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "SENTINEL_RESOURCE_GROUP": "rg",
    "SENTINEL_WORKSPACE_NAME": "ws-sec",
}


def _settings(**overrides):
    return Settings.from_mapping({**REQUIRED, **overrides})


def _indicator(kind="domain", ioc="evil.example.com", **changes):
    base = Indicator(
        kind=kind,
        ioc=ioc,
        port=None,
        ioc_type={"ip": "ip:port", "url": "url", "hash": "md5_hash"}.get(kind, kind),
        threatfox_id="1700042",
        threat_type="botnet_cc",
        malware="win.cobalt_strike",
        malware_printable="Cobalt Strike",
        malware_alias=("BEACON", "Agentemis"),
        confidence_level=75,
        first_seen=datetime(2026, 11, 30, 8, 15, 2, tzinfo=UTC),
        reference=None,
        tags=("c2",),
        original=ioc,
    )
    return replace(base, **changes)


def _ip(address, port=443):
    return _indicator("ip", address, port=port)


def _url(url, host, port=80):
    return _indicator("url", url, host=host, port=port)


@pytest.mark.parametrize(
    ("overrides", "indicator", "reason"),
    [
        ({}, _indicator(), None),
        ({}, _indicator("hash", "a" * 32), "filtered:kind"),
        ({"INDICATOR_KINDS": "ip,domain,url,hash"}, _indicator("hash", "a" * 32), None),
        ({}, _indicator(confidence_level=49), "filtered:min_confidence"),
        ({}, _indicator(confidence_level=50), None),
        (
            {"MIN_CONFIDENCE": "90"},
            _indicator(confidence_level=80),
            "filtered:min_confidence",
        ),
        ({"THREAT_TYPES": "payload_delivery"}, _indicator(), "filtered:threat_type"),
        ({"THREAT_TYPES": "botnet_cc"}, _indicator(), None),
        (
            {"MALWARE_INCLUDE": "win.quasar_rat"},
            _indicator(),
            "filtered:malware_include",
        ),
        ({"MALWARE_INCLUDE": "COBALT STRIKE"}, _indicator(), None),
        ({"MALWARE_INCLUDE": "beacon"}, _indicator(), None),
        ({"MALWARE_INCLUDE": "win.cobalt_strike"}, _indicator(), None),
        (
            {"MALWARE_EXCLUDE": "Cobalt Strike"},
            _indicator(),
            "filtered:malware_exclude",
        ),
        ({"MALWARE_EXCLUDE": "agentemis"}, _indicator(), "filtered:malware_exclude"),
        ({"MALWARE_EXCLUDE": "win.remcos"}, _indicator(), None),
        (
            {"MALWARE_EXCLUDE": "remcos"},
            _indicator(
                malware="win.cobalt_strike,win.remcos",
                malware_printable="Cobalt Strike / Remcos",
            ),
            "filtered:malware_exclude",
        ),
        ({"TAGS_EXCLUDE": "C2"}, _indicator(), "filtered:tags_exclude"),
        ({"TAGS_EXCLUDE": "sinkhole"}, _indicator(), None),
        ({}, _ip("10.0.0.5"), "non_public_ip:private"),
        ({}, _ip("127.0.0.1"), "non_public_ip:loopback"),
        ({}, _ip("fe80::1"), "non_public_ip:link-local"),
        ({}, _ip("224.0.0.1"), "non_public_ip:multicast"),
        ({}, _ip("45.9.148.108"), None),
        ({"DROP_NON_PUBLIC_IPS": "false"}, _ip("10.0.0.5"), None),
        ({}, _url("http://192.168.1.1/x", "192.168.1.1"), "non_public_ip:private"),
        ({}, _url("http://45.9.148.108/x", "45.9.148.108"), None),
        ({}, _ip("8.8.8.8", 53), "allowlisted"),
        ({}, _ip("2001:4860:4860::8888", 53), "allowlisted"),
        ({"USE_DEFAULT_ALLOWLIST": "false"}, _ip("8.8.8.8", 53), None),
        ({}, _url("http://8.8.8.8/x", "8.8.8.8"), "allowlisted"),
        ({}, _indicator(ioc="microsoft.com"), "allowlisted"),
        ({}, _indicator(ioc="update.microsoft.com"), "allowlisted"),
        ({}, _indicator(ioc="notmicrosoft.com"), None),
        ({}, _indicator(ioc="raw.githubusercontent.com"), "allowlisted"),
        # Default domains never hide URL payloads: a path is precise evidence.
        (
            {},
            _url(
                "https://raw.githubusercontent.com/x/y/main/a.ps1",
                "raw.githubusercontent.com",
                443,
            ),
            None,
        ),
        ({"ALLOWLIST": "example.com"}, _indicator(), "allowlisted"),
        (
            {"ALLOWLIST": "example.com"},
            _url("http://a.example.com/x", "a.example.com"),
            "allowlisted",
        ),
        ({"ALLOWLIST": "other.example.com"}, _indicator(), None),
        ({"ALLOWLIST": "45.9.148.0/24"}, _ip("45.9.148.108"), "allowlisted"),
        (
            {"ALLOWLIST": "45.9.148.0/24"},
            _url("http://45.9.148.7/x", "45.9.148.7"),
            "allowlisted",
        ),
        ({"ALLOWLIST": "45.9.149.0/24"}, _ip("45.9.148.108"), None),
        ({"ALLOWLIST": "2a01:4f8::/32"}, _ip("2a01:4f8::1"), "allowlisted"),
        ({"ALLOWLIST": "45.9.148.108"}, _ip("45.9.148.108"), "allowlisted"),
    ],
)
def test_drop_reason_table(overrides, indicator, reason):
    filters = Filters.from_settings(_settings(**overrides))

    assert filters.drop_reason(indicator) == reason


def test_first_rule_wins_and_apply_counts_once():
    filters = Filters.from_settings(_settings(TAGS_EXCLUDE="c2"))
    indicators = [
        _indicator(),
        _indicator(ioc="kept.example.net", tags=()),
        _indicator(confidence_level=10),
        _ip("10.0.0.5", port=80),
        _ip("8.8.8.8", port=53),
    ]

    kept, dropped = filters.apply(indicators)

    assert [i.ioc for i in kept] == ["kept.example.net"]
    assert dropped == {"filtered:tags_exclude": 3, "filtered:min_confidence": 1}


def test_extra_allowlist_entries_and_ignored_ones():
    filters = Filters.from_settings(
        _settings(),
        extra_allowlist=[
            "Partner.Example.ORG.",
            "203.0.113.0/24",
            "not a domain!",
            "com",
            "10.0.0.0/33",
        ],
    )

    assert (
        filters.is_allowed(_indicator(ioc="cdn.partner.example.org"))
        == "partner.example.org"
    )
    assert filters.is_allowed(_ip("203.0.113.9")) == "203.0.113.0/24"
    assert filters.is_allowed(_indicator()) is None
    assert filters.allowlist.ignored == ("not a domain!", "com", "10.0.0.0/33")


def test_is_allowed_names_the_entry_and_ignores_other_filters():
    filters = Filters.from_settings(_settings(MIN_CONFIDENCE="100"))

    assert filters.is_allowed(_ip("1.1.1.1", 443)) == "1.1.1.1"
    assert filters.is_allowed(_indicator(ioc="www.google.com")) == "google.com"
    assert filters.is_allowed(_indicator("hash", "a" * 32)) is None


def test_idn_allowlist_entry_matches_punycode_indicator():
    allowlist = Allowlist.from_entries(["bücher.de"])

    assert (
        allowlist.match(_indicator(ioc="shop.xn--bcher-kva.de")) == "xn--bcher-kva.de"
    )


def test_default_allowlist_file_parses_without_ignored_entries():
    entries = read_allowlist_file(DEFAULT_ALLOWLIST_PATH)
    allowlist = Allowlist.from_entries([], default_entries=entries)

    assert allowlist.ignored == ()
    assert {
        "8.8.8.8",
        "9.9.9.9",
        "208.67.222.222",
        "2620:fe::fe",
    } <= allowlist.addresses
    assert "microsoft.com" in allowlist.domain_only
    assert allowlist.host_domains == frozenset()
