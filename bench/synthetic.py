"""A synthetic ThreatFox ``get_iocs`` feed in the real record format.

``synthetic_records`` returns records shaped exactly like the ``data`` list of a
``get_iocs`` answer: string ids, ``YYYY-MM-DD HH:MM:SS UTC`` timestamps, null
``malware_alias``/``reference``/``tags`` where ThreatFox leaves them null, and a
realistic mix of kinds (about 45% ip:port with some IPv6, 35% domain, 15% url,
5% hashes). A few percent of records repeat an earlier IOC under a new id, as
ThreatFox does when several reporters submit the same C2. Every address is
public and every value valid, so the benchmarks measure the common path; the
bad-input corpus lives in ``tests/data/bad_records.json``.

The output depends only on the arguments: the same seed gives the same feed.
"""

from __future__ import annotations

import io
import random
import zipfile
from datetime import datetime, timedelta
from typing import Any

__all__ = ["synthetic_records", "get_iocs_body"]

_FAMILIES: tuple[tuple[str, str, str | None, str], ...] = (
    # (malware, malware_printable, malware_alias, usual threat_type)
    (
        "win.cobalt_strike",
        "Cobalt Strike",
        "Agentemis,BEACON,CobaltStrike,cobeacon",
        "botnet_cc",
    ),
    ("win.quasar_rat", "Quasar RAT", "CinaRAT,QuasarRAT,Yggdrasil", "botnet_cc"),
    ("win.asyncrat", "AsyncRAT", None, "botnet_cc"),
    ("win.remcos", "Remcos", "RemcosRAT,Remvio,Socmer", "botnet_cc"),
    ("win.agent_tesla", "Agent Tesla", "AgenTesla,AgentTesla,Negasteal", "botnet_cc"),
    ("win.sliver", "Sliver", None, "botnet_cc"),
    ("win.dcrat", "DCRat", "DarkCrystal RAT", "botnet_cc"),
    ("win.lumma", "Lumma Stealer", "LummaC2 Stealer", "botnet_cc"),
    ("win.redline_stealer", "RedLine Stealer", None, "botnet_cc"),
    ("elf.mirai", "Mirai", "Katana", "botnet_cc"),
    ("win.havoc", "Havoc", None, "botnet_cc"),
    ("js.clearfake", "ClearFake", None, "payload_delivery"),
    (
        "win.smokeloader",
        "SmokeLoader",
        "Dofoil,Sharik,Smoke Loader",
        "payload_delivery",
    ),
    ("js.magecart", "magecart", None, "cc_skimming"),
    ("unknown", "Unknown malware", None, "payload_delivery"),
)
_TAG_POOL = (
    "c2",
    "CobaltStrike",
    "Cobalt Strike",
    "RAT",
    "stealer",
    "censys",
    "AS-CHOOPA",
    "DigitalOcean",
    "ASN14061",
    "botnet",
    "exe",
    "elf",
    "mirai",
    "payload",
    "opendir",
    "phishing-kit",
    "Lumma",
    "AsyncRAT",
    "Remcos",
    "Quasar",
)
_TLDS = (
    "com",
    "net",
    "org",
    "xyz",
    "top",
    "ru",
    "info",
    "online",
    "site",
    "shop",
    "cn",
)
_DYNAMIC_DNS = ("duckdns.org", "ddns.net", "no-ip.biz", "hopto.org", "kozow.com")
_WORDS = (
    "update",
    "secure",
    "login",
    "cdn",
    "api",
    "mail",
    "check",
    "account",
    "cloud",
    "verify",
    "static",
    "portal",
    "service",
    "sync",
    "data",
    "web",
    "host",
    "node",
    "panel",
    "gate",
    "files",
    "drive",
    "office",
    "support",
    "micro",
    "soft",
    "net",
)
_PATHS = (
    "/gate.php",
    "/panel/admin.php",
    "/bins/x86",
    "/download/setup.exe",
    "/submit.php",
    "/jquery-3.3.1.min.js",
    "/api/v2/check",
    "/wp-content/uploads/inv.zip",
    "/",
    "/index.php?id=",
    "/b.sh",
    "/pixel.gif",
)
# First octets of IPv4 space that is entirely public (no special-purpose blocks),
# weighted towards ranges where hosting providers live.
_PUBLIC_FIRST_OCTETS = (
    5,
    23,
    31,
    37,
    38,
    45,
    46,
    62,
    64,
    66,
    77,
    78,
    79,
    80,
    82,
    85,
    87,
    89,
    91,
    93,
    94,
    95,
    103,
    104,
    107,
    109,
    116,
    121,
    138,
    139,
    141,
    146,
    147,
    149,
    152,
    154,
    156,
    157,
    159,
    162,
    164,
    165,
    167,
    170,
    176,
    178,
    179,
    185,
    188,
    193,
    194,
    195,
    206,
    207,
    209,
    212,
    213,
    217,
)
_IPV6_PREFIXES = ("2a01:4f8", "2a03:b0c0", "2604:a880", "2001:41d0", "2a02:4780")
_PORTS = (443, 80, 8080, 4444, 7443, 2222, 8443, 1337, 50050, 6606, 7707, 4782, 8000)
_CONFIDENCES = (50, 75, 80, 90, 100)
_CONFIDENCE_WEIGHTS = (15, 35, 10, 10, 30)
_HASH_TYPES = (("md5_hash", 32), ("sha1_hash", 40), ("sha256_hash", 64))
_REFERENCES = (
    "https://bazaar.abuse.ch/sample/{hex}/",
    "https://tria.ge/{hex8}/behavioral1",
    "https://x.com/example_reporter/status/{digits}",
)
_DUPLICATE_SHARE = 0.03


def _ipv4(rng: random.Random) -> str:
    first = rng.choice(_PUBLIC_FIRST_OCTETS)
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _ipv6(rng: random.Random) -> str:
    groups = ":".join(f"{rng.randrange(1, 0x10000):x}" for _ in range(3))
    return f"{rng.choice(_IPV6_PREFIXES)}:{groups}::{rng.randrange(1, 0x100):x}"


def _domain(rng: random.Random) -> str:
    words = rng.sample(_WORDS, 2)
    label = f"{words[0]}-{words[1]}{rng.randrange(1000)}"
    if rng.random() < 0.2:
        return f"{label}.{rng.choice(_DYNAMIC_DNS)}"
    return f"{label}.{rng.choice(_TLDS)}"


def _ip_port(rng: random.Random) -> str:
    # ThreatFox writes IPv6 ip:port values without brackets.
    host = _ipv6(rng) if rng.random() < 0.05 else _ipv4(rng)
    return f"{host}:{rng.choice(_PORTS)}"


def _url(rng: random.Random) -> str:
    scheme = "https" if rng.random() < 0.4 else "http"
    host = _ipv4(rng) if rng.random() < 0.35 else _domain(rng)
    port = f":{rng.choice(_PORTS)}" if rng.random() < 0.3 else ""
    path = rng.choice(_PATHS)
    if path.endswith("="):
        path += str(rng.randrange(10_000))
    return f"{scheme}://{host}{port}{path}"


def _hash(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.01:
        return "sha3_384_hash", f"{rng.getrandbits(384):096x}"
    ioc_type, length = rng.choice(_HASH_TYPES)
    return ioc_type, f"{rng.getrandbits(length * 4):0{length}x}"


def _value(rng: random.Random) -> tuple[str, str]:
    draw = rng.random()
    if draw < 0.45:
        return "ip:port", _ip_port(rng)
    if draw < 0.80:
        return "domain", _domain(rng)
    if draw < 0.95:
        return "url", _url(rng)
    return _hash(rng)


def _tags(rng: random.Random, printable: str) -> list[str] | None:
    if rng.random() < 0.25:
        return None
    tags = rng.sample(_TAG_POOL, rng.randrange(0, 4))
    if rng.random() < 0.5:
        tags.insert(0, printable)
    return tags


def _reference(rng: random.Random) -> str | None:
    if rng.random() < 0.6:
        return None
    template = rng.choice(_REFERENCES)
    return template.format(
        hex=f"{rng.getrandbits(256):064x}",
        hex8=f"{rng.getrandbits(24):06x}",
        digits=rng.randrange(10**18, 10**19),
    )


def _threat_type(ioc_type: str, usual: str) -> str:
    if ioc_type.endswith("_hash"):
        return "payload"
    if ioc_type == "url" and usual == "botnet_cc":
        return "payload_delivery"
    return usual


def _record(
    rng: random.Random, ioc_id: int, ioc_type: str, ioc: str, first_seen: datetime
) -> dict[str, object]:
    malware, printable, alias, usual = rng.choice(_FAMILIES)
    threat_type = _threat_type(ioc_type, usual)
    return {
        "id": str(ioc_id),
        "ioc": ioc,
        "threat_type": threat_type,
        "threat_type_desc": f"Indicator of type {threat_type}",
        "ioc_type": ioc_type,
        "ioc_type_desc": f"IOC of type {ioc_type}",
        "malware": malware,
        "malware_printable": printable,
        "malware_alias": alias,
        "malware_malpedia": f"https://malpedia.caad.fkie.fraunhofer.de/details/{malware}",
        "confidence_level": rng.choices(_CONFIDENCES, _CONFIDENCE_WEIGHTS)[0],
        "first_seen": first_seen.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "last_seen": None,
        "reporter": rng.choice(("abuse_ch", "example_reporter", "threatcat", "drb_ra")),
        "reference": _reference(rng),
        "tags": _tags(rng, printable),
    }


def synthetic_records(
    count: int, *, seed: int, start: datetime, days: float
) -> list[dict[str, object]]:
    """Build ``count`` get_iocs records first seen between ``start`` and ``start + days``.

    Records come newest first, as ThreatFox lists them; ids grow with first seen.
    About 3% of records repeat an earlier (ioc_type, ioc) under a new id.
    """
    rng = random.Random(seed)
    span_seconds = days * 86_400
    offsets = sorted(rng.random() * span_seconds for _ in range(count))
    base_id = 1_300_000 + rng.randrange(100_000)
    seen: list[tuple[str, str]] = []
    records = []
    for index, offset in enumerate(offsets):
        if seen and rng.random() < _DUPLICATE_SHARE:
            ioc_type, ioc = rng.choice(seen)
        else:
            ioc_type, ioc = _value(rng)
            if len(seen) < 10_000:
                seen.append((ioc_type, ioc))
        first_seen = start + timedelta(seconds=int(offset))
        records.append(_record(rng, base_id + index, ioc_type, ioc, first_seen))
    records.reverse()
    return records


def get_iocs_body(records: list[dict[str, object]]) -> dict[str, object]:
    """Wrap records in the ``get_iocs`` envelope ThreatFox answers with."""
    return {"query_status": "ok", "data": records}


# The 15-column layout of the keyed CSV export (since about 2026-01-08).
EXPORT_COLUMNS = (
    "first_seen_utc",
    "ioc_id",
    "ioc_value",
    "ioc_type",
    "threat_type",
    "fk_malware",
    "malware_alias",
    "malware_printable",
    "last_seen_utc",
    "confidence_level",
    "is_compromised",
    "reference",
    "tags",
    "anonymous",
    "reporter",
)


def _export_line(record: dict[str, Any]) -> str:
    fields = (
        str(record["first_seen"]).removesuffix(" UTC"),
        record["id"],
        record["ioc"],
        record["ioc_type"],
        record["threat_type"],
        record["malware"],
        record["malware_alias"] or "None",
        record["malware_printable"],
        "",
        str(record["confidence_level"]),
        "False",
        record["reference"] or "None",
        ",".join(record["tags"] or []) or "None",
        "0",
        record["reporter"],
    )
    return ", ".join(f'"{value}"' for value in fields)


def full_csv_export(records: list[dict[str, Any]], *, trailer: bool = True) -> bytes:
    """Zip get_iocs records as ThreatFox ships full.csv.zip: banner, header comment, trailer."""
    lines = [
        "#" * 64,
        "# ThreatFox IOCs: CSV export (full)",
        "#",
        "# " + ",".join(f'"{name}"' for name in EXPORT_COLUMNS),
        *(_export_line(record) for record in records),
    ]
    if trailer:
        lines.append(f"# Number of entries: {len(records)}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("full.csv", "\r\n".join(lines) + "\r\n")
    return buffer.getvalue()
