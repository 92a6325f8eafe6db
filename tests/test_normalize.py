import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tldextract
from hypothesis import given
from hypothesis import strategies as st

from shared.indicators import Indicator
from shared.normalize import (
    CanonicalUrl,
    Rejection,
    ip_category,
    normalize_domain,
    normalize_hash,
    normalize_ip_port,
    normalize_record,
    normalize_url,
    refang,
)

CORPUS = json.loads(
    (Path(__file__).parent / "data" / "bad_records.json").read_text(encoding="utf-8")
)


def _record(case):
    if "record" in case:
        return case["record"]
    record = {**CORPUS["base"], **case.get("override", {})}
    for name in case.get("remove", ()):
        del record[name]
    return record


def _observed(indicator, name):
    value = getattr(indicator, name)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def test_corpus_is_large_and_names_are_unique():
    names = [case["name"] for case in CORPUS["cases"]]
    assert len(names) >= 60
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("case", CORPUS["cases"], ids=lambda case: case["name"])
def test_corpus_outcome(case):
    result = normalize_record(_record(case))
    expect = case["expect"]
    if "reason" in expect:
        assert isinstance(result, Rejection), result
        assert result.reason == expect["reason"]
        return
    assert isinstance(result, Indicator), result
    for name, value in expect.items():
        assert _observed(result, name) == value, name


def test_base_record_becomes_a_full_indicator():
    result = normalize_record(CORPUS["base"])

    assert result == Indicator(
        kind="domain",
        ioc="login-check.example.net",
        port=None,
        ioc_type="domain",
        threatfox_id="1700042",
        threat_type="botnet_cc",
        malware="win.cobalt_strike",
        malware_printable="Cobalt Strike",
        malware_alias=("Agentemis", "BEACON", "CobaltStrike"),
        confidence_level=75,
        first_seen=datetime(2026, 11, 30, 8, 15, 2, tzinfo=UTC),
        reference=None,
        tags=("CobaltStrike", "c2"),
        original="login-check.example.net",
        host=None,
    )


def test_rejection_carries_type_and_a_short_detail():
    record = {**CORPUS["base"], "ioc_type": "ip:port", "ioc": "143.404.146.87:80"}

    result = normalize_record(record)

    assert result == Rejection("invalid_ip", "ip:port", "'143.404.146.87:80'")


def test_rejection_detail_is_truncated():
    record = {**CORPUS["base"], "ioc": "x" * 5000}

    result = normalize_record(record)

    assert isinstance(result, Rejection)
    assert len(result.detail) == 120


def test_unsupported_type_keeps_the_type_for_the_report():
    record = {**CORPUS["base"], "ioc_type": " Envelope_From ", "ioc": "a@b.example"}

    assert normalize_record(record) == Rejection(
        "unsupported_type:envelope_from", "envelope_from", ""
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("45.9.148.108:443", ("45.9.148.108", 443)),
        ("2001:db8:5::9:4443", ("2001:db8:5::9", 4443)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("[::1]:80", ("::1", 80)),
        ("45.9.148[.]108:8080", ("45.9.148.108", 8080)),
    ],
)
def test_normalize_ip_port_table(value, expected):
    assert normalize_ip_port(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("143.404.146.87:80", "invalid_ip"),
        ("1.2.3:80", "invalid_ip"),
        ("45.9.148.108:0", "invalid_port"),
        ("45.9.148.108:65536", "invalid_port"),
        ("45.9.148.108:٤٤٣", "invalid_port"),
        ("[2001:db8::1:443", "invalid_ip"),
        ("2001:db8::1", "invalid_ip"),
    ],
)
def test_normalize_ip_port_rejects(value, reason):
    with pytest.raises(ValueError, match=f"^{reason}$"):
        normalize_ip_port(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Example.COM.", "example.com"),
        ("  evil.example.com\t", "evil.example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
        ("a-b.example.co.uk", "a-b.example.co.uk"),
    ],
)
def test_normalize_domain_table(value, expected):
    assert normalize_domain(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("co.uk", "public_suffix"),
        ("рф", "public_suffix"),
        ("city.kawasaki.jp", None),
        ("x.kawasaki.jp", "public_suffix"),
        ("1.2.3.4", "invalid_domain"),
        ("", "invalid_domain"),
        ("ex*ample.com", "invalid_domain"),
    ],
)
def test_normalize_domain_public_suffix_rules(value, reason):
    if reason is None:
        assert normalize_domain(value) == value
    else:
        with pytest.raises(ValueError, match=f"^{reason}$"):
            normalize_domain(value)


def test_public_suffix_check_agrees_with_tldextract_snapshot():
    # Private-section platforms (blogspot.com, duckdns.org) count as suffixes too.
    extract = tldextract.TLDExtract(
        cache_dir=None, suffix_list_urls=(), include_psl_private_domains=True
    )
    names = [
        "co.uk",
        "example.co.uk",
        "com",
        "blogspot.com",
        "foo.ck",
        "www.ck",
        "city.kawasaki.jp",
        "x.kawasaki.jp",
        "kawasaki.jp",
        "gov.br",
        "nom.br",
        "a.nom.br",
        "duckdns.org",
        "xn--p1ai",
    ]
    for name in names:
        bare_suffix = extract(name).domain == ""
        try:
            normalize_domain(name)
            ours = False
        except ValueError as exc:
            ours = str(exc) == "public_suffix"
        assert ours == bare_suffix, name


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "HTTPS://Evil.Example.COM:443/Path/A.PHP?Q=1#x",
            CanonicalUrl(
                "https://evil.example.com/Path/A.PHP?Q=1",
                "evil.example.com",
                443,
                "HTTPS://Evil.Example.COM:443/Path/A.PHP?Q=1#x",
            ),
        ),
        (
            "http://45.9.148.108:8080",
            CanonicalUrl(
                "http://45.9.148.108:8080/",
                "45.9.148.108",
                8080,
                "http://45.9.148.108:8080",
            ),
        ),
        (
            "http://[::ffff:45.9.148.108]/a",
            CanonicalUrl(
                "http://45.9.148.108/a",
                "45.9.148.108",
                80,
                "http://[::ffff:45.9.148.108]/a",
            ),
        ),
        (
            "http://evil.example.com:/a",
            CanonicalUrl(
                "http://evil.example.com/a",
                "evil.example.com",
                80,
                "http://evil.example.com:/a",
            ),
        ),
    ],
)
def test_normalize_url_table(value, expected):
    assert normalize_url(value) == expected


@pytest.mark.parametrize(
    ("value", "ioc_type", "expected"),
    [
        ("A" * 32, "md5_hash", "a" * 32),
        ("b" * 40, "sha1_hash", "b" * 40),
        ("C" * 64, "sha256_hash", "c" * 64),
        ("d" * 96, "sha3_384_hash", "d" * 96),
    ],
)
def test_normalize_hash_table(value, ioc_type, expected):
    assert normalize_hash(value, ioc_type) == expected


@pytest.mark.parametrize(
    ("value", "ioc_type"),
    [
        ("a" * 33, "md5_hash"),
        ("a" * 64, "sha1_hash"),
        ("z" * 32, "md5_hash"),
        ("a" * 32, "crc32"),
    ],
)
def test_normalize_hash_rejects(value, ioc_type):
    with pytest.raises(ValueError, match="^invalid_hash$"):
        normalize_hash(value, ioc_type)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hxxp://evil[.]com/a", "http://evil.com/a"),
        ("HXXPS[://]evil(.)com", "https://evil.com"),
        ("evil[dot]com", "evil.com"),
        ("1.2.3.4[:]80", "1.2.3.4:80"),
        ("hxxpfoo.example.com", "hxxpfoo.example.com"),
        ("[2001:db8::1]:443", "[2001:db8::1]:443"),
    ],
)
def test_refang_table(value, expected):
    assert refang(value) == expected


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("45.9.148.108", None),
        ("8.8.8.8", None),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("192.0.2.10", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.10.10", "link-local"),
        ("224.0.0.251", "multicast"),
        ("240.1.2.3", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("100.64.1.1", "shared"),
        ("192.88.99.1", None),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
        ("2a01:4f8::1", None),
    ],
)
def test_ip_category_table(address, category):
    assert ip_category(address) == category


# Property tests: every normalizer is idempotent on its own output, and
# normalize_record never raises, whatever it is given.

_LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_DOMAINS = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(_LABEL, min_size=1, max_size=4),
    st.sampled_from(["com", "net", "org", "xn--p1ai", "top", "co.uk", "de"]),
)
_HOSTS = st.one_of(
    _DOMAINS,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
)
_URLS = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
    st.sampled_from(["http", "HTTPS", "hxxp", "https"]),
    _HOSTS,
    st.sampled_from(["", ":80", ":443", ":8080", ":1"]),
    st.text(alphabet="abcXYZ/?=&.%-_#", max_size=30),
)


@given(st.ip_addresses(), st.integers(1, 65535))
def test_ip_port_is_idempotent(address, port):
    once = normalize_ip_port(f"{address}:{port}")
    assert normalize_ip_port(f"{once[0]}:{once[1]}") == once


@given(st.one_of(_DOMAINS, st.text(max_size=40)))
def test_domain_is_idempotent_or_rejected(value):
    try:
        once = normalize_domain(value)
    except ValueError as exc:
        assert str(exc) in ("invalid_domain", "public_suffix")
        return
    assert normalize_domain(once) == once


@given(st.one_of(_URLS, st.text(max_size=60)))
def test_url_is_idempotent_or_rejected(value):
    try:
        once = normalize_url(value)
    except ValueError as exc:
        assert str(exc) in ("invalid_url", "invalid_port", "unsupported_scheme")
        return
    again = normalize_url(once.url)
    assert (again.url, again.host, again.port) == (once.url, once.host, once.port)


@given(
    st.sampled_from(["md5_hash", "sha1_hash", "sha256_hash", "sha3_384_hash"]),
    st.data(),
)
def test_hash_is_idempotent(ioc_type, data):
    length = {"md5_hash": 32, "sha1_hash": 40, "sha256_hash": 64, "sha3_384_hash": 96}
    value = data.draw(
        st.text(
            alphabet="0123456789abcdefABCDEF",
            min_size=length[ioc_type],
            max_size=length[ioc_type],
        )
    )
    once = normalize_hash(value, ioc_type)
    assert normalize_hash(once, ioc_type) == once


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
_FIELDS = st.sampled_from(
    [
        "id",
        "ioc",
        "ioc_type",
        "threat_type",
        "malware",
        "malware_printable",
        "malware_alias",
        "confidence_level",
        "first_seen",
        "reference",
        "tags",
    ]
)


@given(st.dictionaries(_FIELDS, _JSON_VALUES))
def test_normalize_record_never_raises_on_arbitrary_dicts(record):
    result = normalize_record(record)
    assert isinstance(result, Indicator | Rejection)
    if isinstance(result, Rejection):
        assert result.reason != "internal_error"


@given(
    st.sampled_from(["ip:port", "domain", "url", "md5_hash", "sha3_384_hash"]),
    st.text(max_size=80),
    _JSON_VALUES,
    _JSON_VALUES,
)
def test_normalize_record_never_raises_on_arbitrary_values(
    ioc_type, ioc, tags, confidence
):
    record = {
        **CORPUS["base"],
        "ioc_type": ioc_type,
        "ioc": ioc,
        "tags": tags,
        "confidence_level": confidence,
    }
    result = normalize_record(record)
    assert isinstance(result, Indicator | Rejection)
    if isinstance(result, Rejection):
        assert result.reason != "internal_error"


@given(_JSON_VALUES)
def test_normalize_record_never_raises_on_non_records(value):
    result = normalize_record(value)
    if not isinstance(value, dict):
        assert result.reason == "not_an_object"


@pytest.mark.parametrize(
    "platform", ["duckdns.org", "github.io", "blogspot.com", "DuckDNS.org."]
)
def test_bare_shared_platforms_are_not_indicators_but_may_be_allowlisted(platform):
    with pytest.raises(ValueError, match="public_suffix"):
        normalize_domain(platform)

    assert normalize_domain(
        platform, platforms_allowed=True
    ) == platform.lower().rstrip(".")
    assert normalize_domain("c2." + platform) == "c2." + platform.lower().rstrip(".")
