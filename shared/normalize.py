"""Raw ThreatFox records to ``Indicator`` objects, or a ``Rejection`` saying why not.

One pure function per kind does the value work; ``normalize_record`` adds the
metadata and never raises, whatever it is given. A normalizer raises
``ValueError(reason)`` where ``reason`` is a short snake_case report key.

Canonical forms (the watchlists and the KQL rules compare these, so they must
stay this simple):

- ip: the address alone, IPv4 dotted quad or IPv6 compressed lower case, no
  brackets; an IPv4-mapped IPv6 address becomes its IPv4 form. Port 1-65535.
- domain: lower-case ASCII (IDN labels as punycode, UTS 46 non-transitional),
  one trailing dot removed. Labels are letters, digits and hyphens, no leading
  or trailing hyphen, 1-63 characters; underscores are allowed in labels other
  than the top-level one, because DNS serves such names and malware uses them
  (rejecting them would lose real IOCs). At most 253 characters, at least two
  labels, and never a bare public suffix (ICANN section of tldextract's bundled
  list) nor an IP address.
- url: ``scheme://[userinfo@]host[:port]path?query`` with scheme and host lower
  case, the host as for a domain or an IP (IPv6 in brackets), the port dropped
  when it is the scheme's default (80 for http, 443 for https), the fragment
  dropped, and path and query kept exactly as given except that an empty path
  becomes ``/``. Only http and https are accepted. The host column holds the
  host without brackets and the port column the effective port.
- hash: lower-case hex of the exact length for its type.

Defanged values (``hxxp``, ``[.]``, ``(.)``, ``[dot]``, ``[:]``, ``[://]``) are
refanged before validation.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import NamedTuple

import idna
import tldextract

from shared.indicators import Indicator

__all__ = [
    "CanonicalUrl",
    "Rejection",
    "ip_category",
    "normalize_domain",
    "normalize_hash",
    "normalize_ip",
    "normalize_ip_port",
    "normalize_record",
    "normalize_url",
    "refang",
]

logger = logging.getLogger(__name__)

KIND_BY_IOC_TYPE = {
    "ip:port": "ip",
    "domain": "domain",
    "url": "url",
    "md5_hash": "hash",
    "sha1_hash": "hash",
    "sha256_hash": "hash",
    "sha3_384_hash": "hash",
}
HASH_LENGTHS = {"md5_hash": 32, "sha1_hash": 40, "sha256_hash": 64, "sha3_384_hash": 96}
DEFAULT_PORTS = {"http": 80, "https": 443}
THREAT_TYPES = frozenset({"botnet_cc", "payload_delivery", "payload", "cc_skimming"})
MAX_VALUE_CHARS = 2_000
# Sentinel refuses watchlist rows over 10 KB; leave room for the fixed columns.
MAX_ROW_CHARS = 9_000
DETAIL_CHARS = 120

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_TOP_LABEL = r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)+{_TOP_LABEL}")
_HEX = re.compile(r"[0-9a-f]+")
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^#]*)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DEFANGS = (
    ("[.]", "."),
    ("(.)", "."),
    ("[dot]", "."),
    ("(dot)", "."),
    ("[://]", "://"),
    ("[:]", ":"),
)
_MISSING = (None, "", "None")
# Every capitalisation of "hxxp", so that the common case costs one set lookup.
_HXXP = frozenset(
    "".join(letters) for letters in itertools.product("hH", "xX", "xX", "pP")
)
_S_SCHEME_END = frozenset({"s://", "S://"})


class Rejection(NamedTuple):
    """A record that did not become an indicator, and why.

    ``reason`` is a stable report key such as ``invalid_ip`` or
    ``unsupported_type:envelope_from``; ``detail`` is a short, truncated excerpt
    of the offending value for the log.
    """

    reason: str
    ioc_type: str
    detail: str


class CanonicalUrl(NamedTuple):
    """A URL in canonical form, with its host and effective port."""

    url: str
    host: str
    port: int
    original: str


_Suffixes = tuple[frozenset[str], frozenset[str], frozenset[str]]


def _load_public_suffixes(private: bool) -> _Suffixes:
    # The bundled snapshot only: no cache directory, no download, ever.
    extractor = tldextract.TLDExtract(
        cache_dir=None, suffix_list_urls=(), include_psl_private_domains=private
    )
    exact: set[str] = set()
    wildcard: set[str] = set()
    exceptions: set[str] = set()
    for rule in extractor.tlds:
        target = exact
        if rule.startswith("*."):
            target, rule = wildcard, rule[2:]
        elif rule.startswith("!"):
            target, rule = exceptions, rule[1:]
        try:
            target.add(idna.encode(rule, uts46=True).decode("ascii"))
        except idna.IDNAError:
            # A handful of rules are not valid IDNA 2008; they cannot match a
            # domain that passed our own IDNA check anyway.
            continue
    return frozenset(exact), frozenset(wildcard), frozenset(exceptions)


# ICANN suffixes (co.uk), and those plus the list's private section: platforms
# such as duckdns.org or blogspot.com, shared by thousands of customers. A bare
# platform is never one C2, and a domain indicator matches its subdomains in the
# rules, so indicators reject both; allowlist entries may name a platform.
_ICANN_SUFFIXES = _load_public_suffixes(private=False)
_ALL_SUFFIXES = _load_public_suffixes(private=True)


def _is_public_suffix(domain: str, suffixes: _Suffixes = _ALL_SUFFIXES) -> bool:
    # The public suffix list algorithm for a whole name: an exact rule, or one
    # label under a wildcard rule, unless an exception rule names it.
    exact, wildcard_parents, exceptions = suffixes
    if domain in exact:
        return True
    parent = domain.partition(".")[2]
    return parent in wildcard_parents and domain not in exceptions


def refang(value: str) -> str:
    """Undo common defanging: ``hxxp(s)``, ``[.]``, ``(.)``, ``[dot]``, ``[:]``, ``[://]``."""
    if "[" in value or "(" in value:
        # Repeat until stable so that refanging a refanged value changes nothing.
        previous = None
        while previous != value:
            previous = value
            for defanged, plain in _DEFANGS:
                value = value.replace(defanged, plain)
    if value[:4] in _HXXP:
        rest = value[4:]
        if rest[:3] == "://":
            value = "http" + rest
        elif rest[:4] in _S_SCHEME_END:
            value = "https" + rest[1:]
    return value


def _check_str(value: object, reason: str) -> str:
    if not isinstance(value, str):
        raise ValueError(reason)
    return value


def normalize_ip(value: str) -> str:
    """Canonical form of an IP address (no port); raise ``ValueError('invalid_ip')``."""
    if _IPV4.fullmatch(value):
        return value
    if ":" not in value or "%" in value:
        # Zone ids (fe80::1%eth0) name an interface on one machine, not a host.
        raise ValueError("invalid_ip")
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        raise ValueError("invalid_ip") from None
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else address.compressed


def _port(text: str, reason: str) -> int:
    if not (text.isdigit() and text.isascii() and len(text) <= 5):
        raise ValueError(reason)
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(reason)
    return port


def normalize_ip_port(value: object) -> tuple[str, int]:
    """Split an ``ip:port`` value at its last colon; return (address, port).

    Accepts IPv4, unbracketed IPv6 as ThreatFox writes it
    (``2001:db8:5::9:4443``) and bracketed IPv6 (``[2001:db8::1]:443``).
    Raises ``ValueError`` with reason ``invalid_ip`` or ``invalid_port``.
    """
    text = refang(_check_str(value, "invalid_ip").strip())
    host, colon, port_text = text.rpartition(":")
    if not colon:
        raise ValueError("invalid_port")
    port = _port(port_text, "invalid_port")
    if host[:1] == "[":
        if host[-1:] != "]" or ":" not in host:
            raise ValueError("invalid_ip")
        host = host[1:-1]
    return normalize_ip(host), port


def _ascii_domain(text: str) -> str:
    if text.isascii():
        text = text.lower()
        if "xn--" not in text:
            return text
    try:
        return idna.encode(text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise ValueError("invalid_domain") from None


def normalize_domain(value: object, *, platforms_allowed: bool = False) -> str:
    """Canonical form of a domain; raise ``ValueError`` (invalid_domain, public_suffix).

    A bare public suffix is rejected; so is a bare shared platform (the public
    suffix list's private section, e.g. duckdns.org) unless ``platforms_allowed``,
    which allowlist entries use.
    """
    suffixes = _ICANN_SUFFIXES if platforms_allowed else _ALL_SUFFIXES
    text = refang(_check_str(value, "invalid_domain").strip())
    if text[-1:] == ".":
        text = text[:-1]
    if len(text) > 253:
        raise ValueError("invalid_domain")
    domain = _ascii_domain(text)
    if len(domain) > 253 or not _DOMAIN.fullmatch(domain):
        if domain in suffixes[0]:
            raise ValueError("public_suffix")
        raise ValueError("invalid_domain")
    if _is_public_suffix(domain, suffixes):
        raise ValueError("public_suffix")
    return domain


def _split_authority(authority: str) -> tuple[str, str, str]:
    # Returns (userinfo with its "@", host, port text).
    userinfo, at, hostport = authority.rpartition("@")
    if hostport[:1] == "[":
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket or (rest and rest[0] != ":"):
            raise ValueError("invalid_url")
        return userinfo + at, "[" + host + "]", rest[1:]
    host, _, port_text = hostport.partition(":")
    return userinfo + at, host, port_text


def _url_host(host: str) -> tuple[str, str]:
    # Returns (host as written in the URL, host for the host column).
    if host[:1] == "[":
        address = normalize_ip(host[1:-1])
        if ":" not in address:
            return address, address
        return "[" + address + "]", address
    if _IPV4.fullmatch(host):
        return host, host
    try:
        domain = normalize_domain(host)
    except ValueError:
        raise ValueError("invalid_url") from None
    return domain, domain


def normalize_url(value: object) -> CanonicalUrl:
    """Canonical form of an http(s) URL, its host and its effective port.

    Raises ``ValueError`` with reason ``invalid_url``, ``unsupported_scheme`` or
    ``row_too_long``.
    """
    original = _check_str(value, "invalid_url")
    if len(original) > MAX_VALUE_CHARS:
        raise ValueError("row_too_long")
    text = refang(original.strip())
    match = _URL.match(text)
    if match is None or _CONTROL.search(text):
        raise ValueError("invalid_url")
    scheme = match[1].lower()
    default_port = DEFAULT_PORTS.get(scheme)
    if default_port is None:
        raise ValueError("unsupported_scheme")
    userinfo, raw_host, port_text = _split_authority(match[2])
    try:
        url_host, host = _url_host(raw_host)
    except ValueError:
        raise ValueError("invalid_url") from None
    port = _port(port_text, "invalid_port") if port_text else default_port
    netloc = url_host if port == default_port else f"{url_host}:{port}"
    path = match[3]
    if path[:1] != "/":
        path = "/" + path
    canonical = f"{scheme}://{userinfo}{netloc}{path}"
    return CanonicalUrl(canonical, host, port, original)


def normalize_hash(value: object, ioc_type: str) -> str:
    """Lower-case hex of the exact length for ``ioc_type``; raise ``ValueError('invalid_hash')``."""
    text = _check_str(value, "invalid_hash").strip().lower()
    if len(text) != HASH_LENGTHS.get(ioc_type) or not _HEX.fullmatch(text):
        raise ValueError("invalid_hash")
    return text


@lru_cache(maxsize=65_536)
def _category(address: str) -> str | None:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        # RFC 1918, unique local, and the documentation and benchmarking blocks.
        return "private"
    if not ip.is_global:
        # Shared address space (100.64.0.0/10, carrier-grade NAT) and the like.
        return "shared"
    return None


# First octets holding a special-purpose IPv4 block; every other /8 is public.
_SPECIAL_FIRST_OCTETS = frozenset({0, 10, 100, 127, 169, 172, 192, 198, 203}) | set(
    range(224, 256)
)


def ip_category(address: str) -> str | None:
    """Why an address is not public (``private``, ``loopback``, ...), or None when it is.

    ``address`` must be canonical (see ``normalize_ip``).
    """
    first, dot, _ = address.partition(".")
    if dot and int(first) not in _SPECIAL_FIRST_OCTETS:
        return None
    return _category(address)


def _confidence(value: object) -> int:
    if type(value) is not int:
        if value is None:
            raise ValueError("missing_field:confidence_level")
        if isinstance(value, str) and value.strip().isdigit() and value.isascii():
            value = int(value.strip())
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError("bad_confidence")
    if not 0 <= value <= 100:
        raise ValueError("bad_confidence")
    return value


def _first_seen(value: object) -> datetime:
    if not isinstance(value, str):
        if value is None:
            raise ValueError("missing_field:first_seen")
        raise ValueError("bad_first_seen")
    try:
        if value[-4:] == " UTC":
            # The API's own format: one C call, no strptime.
            return datetime.fromisoformat(value[:-4] + "+00:00")
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("bad_first_seen") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _threatfox_id(value: object) -> str:
    if type(value) is str and value.isdigit() and value.isascii():
        return value
    if type(value) is int and value >= 0:
        return str(value)
    if value is None:
        raise ValueError("missing_field:id")
    raise ValueError("bad_id")


def _threat_type(value: object) -> str:
    if type(value) is str and value in THREAT_TYPES:
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError("missing_field:threat_type")
    return value.strip().lower()


@lru_cache(maxsize=16_384)
def _split_names(value: str | tuple[object, ...]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    names = [item.strip() for item in items if isinstance(item, str)]
    return tuple(dict.fromkeys(name for name in names if name and name != "None"))


def _names(value: object) -> tuple[str, ...]:
    # Tags and aliases: a list, or one comma-joined string; null, "" and "None"
    # mean none. Stripped, empty ones dropped, first occurrence kept. A feed
    # repeats the same few tag sets and aliases, so the results are cached.
    if value is None or value == "" or value == "None":
        return ()
    if isinstance(value, str):
        return _split_names(value)
    if isinstance(value, list | tuple):
        try:
            return _split_names(tuple(value))
        except TypeError:  # an unhashable item, such as a nested list
            return _split_names.__wrapped__(tuple(value))
    return ()


def _text(value: object, default: str) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return default


def _reference(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip() not in _MISSING:
        return value.strip()
    return None


def _value(kind: str, ioc_type: str, raw: object) -> tuple[str, int | None, str | None]:
    # Returns (ioc, port, host).
    if kind == "ip":
        address, port = normalize_ip_port(raw)
        return address, port, None
    if kind == "domain":
        return normalize_domain(raw), None, None
    if kind == "url":
        url = normalize_url(raw)
        return url.url, url.port, url.host
    return normalize_hash(raw, ioc_type), None, None


def _row_chars(
    original: str, reference: str | None, tags: tuple[str, ...], printable: str
) -> int:
    # Url and OriginalUrl both carry the value; a rough upper bound is enough
    # here, the watchlist module checks the exact row.
    return (
        2 * len(original) + len(reference or "") + sum(map(len, tags)) + len(printable)
    )


def _type_name(value: object) -> str:
    if type(value) is str and value in KIND_BY_IOC_TYPE:
        return value
    if isinstance(value, str):
        return value.strip().lower()[:40]
    return type(value).__name__


def _detail(value: object) -> str:
    return repr(value)[:DETAIL_CHARS]


def _build(record: Mapping[str, object], kind: str, ioc_type: str) -> Indicator:
    get = record.get
    raw = get("ioc")
    if raw is None:
        raise ValueError("missing_field:ioc")
    ioc, port, host = _value(kind, ioc_type, raw)
    threatfox_id = _threatfox_id(get("id"))
    confidence = _confidence(get("confidence_level"))
    first_seen = _first_seen(get("first_seen"))
    threat_type = _threat_type(get("threat_type"))
    reference = _reference(get("reference"))
    tags = _names(get("tags"))
    printable = _text(get("malware_printable"), "Unknown malware")
    original = str(raw)
    if _row_chars(original, reference, tags, printable) > MAX_ROW_CHARS:
        raise ValueError("row_too_long")
    # Positional arguments: this runs once per record and keywords cost more.
    return Indicator(
        kind,
        ioc,
        port,
        ioc_type,
        threatfox_id,
        threat_type,
        _text(get("malware"), "unknown"),
        printable,
        _names(get("malware_alias")),
        confidence,
        first_seen,
        reference,
        tags,
        original,
        host,
    )


def normalize_record(record: object) -> Indicator | Rejection:
    """Turn one raw ThreatFox record into an ``Indicator``, or say why not.

    Accepts a ``get_iocs`` record, or an export record already mapped to the
    same field names. Never raises: anything unexpected becomes a
    ``Rejection``. Checks run in this order, and the first failure is the
    reason: record shape, ``ioc_type``, the value, then id, confidence, first
    seen, threat type, and the row size.
    """
    if type(record) is not dict and not isinstance(record, Mapping):
        return Rejection("not_an_object", "", _detail(record))
    raw_type = record.get("ioc_type")
    if raw_type is None:
        return Rejection("missing_field:ioc_type", "", _detail(record.get("ioc")))
    ioc_type = _type_name(raw_type)
    kind = KIND_BY_IOC_TYPE.get(ioc_type)
    if kind is None:
        return Rejection("unsupported_type:" + ioc_type, ioc_type, "")
    try:
        return _build(record, kind, ioc_type)
    except ValueError as exc:
        return Rejection(str(exc.args[0]), ioc_type, _detail(record.get("ioc")))
    except Exception:  # a bug, not bad data: keep the run going, but say so loudly
        logger.exception("Unexpected error normalizing a %s record", ioc_type)
        return Rejection("internal_error", ioc_type, _detail(record.get("ioc")))
