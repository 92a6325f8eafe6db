"""Hunt packs: the bundled Quasar RAT pack, family matching, escaping, and KQL validity."""

import json
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.filters import Filters
from shared.huntpack import build_pack, build_packs, defang, families, family_matches
from shared.huntpack_queries import TABLES, hunting_queries
from shared.indicators import Indicator, merge_duplicates
from shared.kql_literals import kql_datetime_literal, kql_string_literal
from shared.normalize import normalize_record
from shared.rules import matching_blocks, rule_template
from shared.settings import Settings
from tests.kqlcheck import ROOT, check_kql

SAMPLE = ROOT / "samples" / "threatfox_get_iocs.json"
EXAMPLE = ROOT / "docs" / "huntpack-example.md"
GENERATED_AT = datetime(2026, 5, 22, 14, 0, tzinfo=UTC)
SETTINGS = Settings.from_mapping(
    {
        "THREATFOX_AUTH_KEY": "test-key",
        "SENTINEL_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "SENTINEL_RESOURCE_GROUP": "rg",
        "SENTINEL_WORKSPACE_NAME": "ws-sec",
    }
)
KQL_BLOCK = re.compile(r"^(`{3,})kql\n(.*?)\n\1$", re.MULTILINE | re.DOTALL)

# Parses each query with Kusto.Language and reports, per query, the syntax
# node kinds in order, the decoded value of every string literal, and the
# number of syntax diagnostics.
STRUCTURE_JS = r"""
const path = require("path");
const dir = path.join(process.argv[1], "node_modules", "@kusto", "language-service-next");
require(path.join(dir, "bridge.min.js"));
require(path.join(dir, "Kusto.Language.Bridge.min.js"));
const stringKind = Kusto.Language.Syntax.SyntaxKind.StringLiteralExpression;
function count(list) { return typeof list.Count === "number" ? list.Count : list.length; }
function walk(node, kinds, literals) {
  if (!node) return;
  kinds.push(node.Kind);
  if (node.Kind === stringKind) literals.push(node.LiteralValue);
  for (let i = 0; i < node.ChildCount; i += 1) walk(node.GetChild(i), kinds, literals);
}
const queries = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = {};
for (const [name, text] of Object.entries(queries)) {
  const code = Kusto.Language.KustoCode.Parse(text, Kusto.Language.GlobalState.Default);
  const kinds = [], literals = [];
  walk(code.Syntax, kinds, literals);
  out[name] = { kinds, literals, errors: count(code.GetSyntaxDiagnostics()) };
}
process.stdout.write(JSON.stringify(out));
"""

ATTACKS = [
    'quote"inside',
    "single'quote",
    "back\\slash\\",
    'trailing backslash escapes the quote?\\"',
    "new\nline",
    "carriage\rreturn\r\n",
    "tab\there",
    "nul\x00byte",
    "bell\x07 and del\x7f and esc\x1b[31m",
    "rtl \u202eevil\u202c override",
    "zero\u200bwidth and bom\ufeff",
    "emoji \U0001f600 non-BMP \U0010fffd",
    "unicode bücher-rechnung ✓",
    'x"; DnsEvents | take 1; let y="',
    "x'; drop table T; //",
    '") | union (DnsEvents) | where ("" == "',
    "@'verbatim' and @\"verbatim\"",
    "```kql\n| end of fence",
    "{{IP_WATCHLIST}} $left ${x}",
    "\\u0022 written out",
    "",
]


def pipeline():
    """The sync's pipeline over the bundled sample: normalize, filter, merge."""
    records = json.loads(SAMPLE.read_text(encoding="utf-8"))["data"]
    indicators = [
        indicator
        for indicator in map(normalize_record, records)
        if isinstance(indicator, Indicator)
    ]
    kept, _ = Filters.from_settings(SETTINGS).apply(indicators)
    merged, _ = merge_duplicates(kept)
    return merged


INDICATORS = pipeline()


def quasar_pack():
    return build_pack("Quasar RAT", INDICATORS, SETTINGS, generated_at=GENERATED_AT)


def kql_blocks(markdown):
    return [match.group(2) for match in KQL_BLOCK.finditer(markdown)]


def section(markdown, title):
    start = markdown.index(f"\n{title}\n")
    end = markdown.find("\n#### ", start + len(title) + 2)
    end2 = markdown.find("\n### ", start + len(title) + 2)
    ends = [e for e in (end, end2, markdown.find("\n## ", start + 2)) if e != -1]
    return markdown[start : min(ends) if ends else len(markdown)]


def structure(queries):
    node = shutil.which("node")
    assert node is not None, "node is required for the Kusto parser"
    completed = subprocess.run(
        [node, "-e", STRUCTURE_JS, str(ROOT)],
        input=json.dumps(queries),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(completed.stdout)


def test_the_sample_has_four_quasar_iocs_in_five_rows():
    quasar = [i for i in INDICATORS if family_matches(i, "Quasar RAT")]
    assert sorted((i.ioc, i.port) for i in quasar) == [
        ("47.239.50.7", 443),
        ("47.239.50.7", 4782),
        ("iotonton.io", None),
        ("qinerdime.servehalflife.com", None),
        ("qinerdime.ydns.eu", None),
    ]
    merged = next(i for i in quasar if i.port == 443)
    # Records 1591188 and 1591240 merged: oldest id, highest confidence, all tags.
    assert merged.threatfox_id == "1591188"
    assert merged.confidence_level == 100
    assert set(merged.tags) == {"censys", "QuasarRAT", "Alibaba"}


def test_quasar_summary():
    pack = quasar_pack()
    assert pack.startswith(
        "# Hunt pack: Quasar RAT\n\nGenerated 2026-05-22 14:00:00 UTC"
    )
    assert (
        "| Family | Quasar RAT (Malpedia `win.quasar_rat`; aliases CinaRAT, Yggdrasil) |"
        in pack
    )
    assert "| Total | 4 IOCs (5 indicator rows: one IP on two ports) |" in pack
    assert "| Kinds | 1 IP address (2 ip:port rows), 3 domains |" in pack
    assert (
        "| First seen | earliest 2026-05-22 07:02:44 UTC, "
        "latest 2026-05-22 13:20:05 UTC |" in pack
    )
    assert "| Threat types | botnet_cc (5) |" in pack
    assert "| Confidence | 75 to 100 |" in pack
    assert (
        "| botnet_cc | Command and Control (TA0011) | "
        "the indicator is a server the implant talks to |" in pack
    )


def test_quasar_defanged_table_rows():
    table = section(quasar_pack(), "## Indicators")
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows == [
        "| Type | Value | Threat type | First seen | Confidence |",
        "| ip:port | `47[.]239[.]50[.]7:443` | botnet_cc | 2026-05-22 07:02:44 UTC | 100 |",
        "| domain | `qinerdime[.]servehalflife[.]com` | botnet_cc "
        "| 2026-05-22 09:41:17 UTC | 75 |",
        "| domain | `iotonton[.]io` | botnet_cc | 2026-05-22 09:41:18 UTC | 75 |",
        "| domain | `qinerdime[.]ydns[.]eu` | botnet_cc | 2026-05-22 09:41:18 UTC | 75 |",
        "| ip:port | `47[.]239[.]50[.]7:4782` | botnet_cc | 2026-05-22 13:20:05 UTC | 75 |",
    ]
    # No live value anywhere outside the KQL blocks.
    prose = KQL_BLOCK.sub("", quasar_pack())
    for live in (
        "47.239.50.7",
        "qinerdime.ydns.eu",
        "iotonton.io",
        "servehalflife.com",
    ):
        assert live not in prose


def test_quasar_has_six_queries_and_three_exclusions():
    pack = quasar_pack()
    headings = re.findall(r"^#### (\w+)$", pack, re.MULTILINE)
    assert headings == ["CommonSecurityLog", "DeviceNetworkEvents", "DnsEvents"] * 2
    assert len(kql_blocks(pack)) == 9


def test_watchlist_queries_read_the_family_from_the_watchlists():
    queries = hunting_queries(
        [i for i in INDICATORS if family_matches(i, "quasar rat")],
        SETTINGS,
        families=["Quasar RAT"],
        source="watchlist",
        lookback=timedelta(days=30),
    )
    assert list(queries) == ["CommonSecurityLog", "DeviceNetworkEvents", "DnsEvents"]
    family_filter = (
        '    | where array_length(set_intersect(Families, dynamic(["quasar rat"]))) > 0'
    )
    for query in queries.values():
        assert 'let IpRows = _GetWatchlist("ThreatFox-IP")' in query
        assert 'let DomainRows = _GetWatchlist("ThreatFox-Domain")' in query
        assert query.count(family_filter) == 2
        assert "ValidUntil > ago(lookback)" in query
        assert "| where TimeGenerated < ValidUntil" in query
        assert "| where not(Indicator matches regex non_public);" in query
        assert "let lookback = 30d;" in query
        # No URL indicator in this family: no URL watchlist read.
        assert "ThreatFox-URL" not in query


def test_inline_queries_hold_the_values_with_valid_until():
    queries = hunting_queries(
        [i for i in INDICATORS if family_matches(i, "quasar rat")],
        SETTINGS,
        families=["Quasar RAT"],
        source="inline",
        lookback=timedelta(days=30),
    )
    ip_rows = (
        "let IpRows = datatable(SearchKey:string, Port:int, ValidUntil:datetime, "
        "Confidence:int, Malware:string, ThreatType:string, ThreatFoxId:string) [\n"
        '    "47.239.50.7", 443, datetime(2026-06-21T07:02:44Z), 100, "Quasar RAT", '
        '"botnet_cc", "1591188",\n'
        '    "47.239.50.7", 4782, datetime(2026-06-21T13:20:05Z), 75, "Quasar RAT", '
        '"botnet_cc", "1591241",\n'
        "    ]\n"
        # The rule's own row block reads the inline rows as it reads a watchlist.
        "    | project Indicator = tolower(tostring(SearchKey)),\n"
    )
    domain_rows = (
        '    "qinerdime.servehalflife.com", datetime(2026-08-20T09:41:17Z), 75, '
        '"Quasar RAT", "botnet_cc", "1591203",\n'
        '    "iotonton.io", datetime(2026-08-20T09:41:18Z), 75, "Quasar RAT", '
        '"botnet_cc", "1591205",\n'
        '    "qinerdime.ydns.eu", datetime(2026-08-20T09:41:18Z), 75, "Quasar RAT", '
        '"botnet_cc", "1591204",\n'
    )
    for query in queries.values():
        assert ip_rows in query
        assert domain_rows in query
        assert "_GetWatchlist" not in query


def test_common_security_log_query_pins_the_rule_matching():
    query = hunting_queries(
        [i for i in INDICATORS if family_matches(i, "quasar rat")],
        SETTINGS,
        families=["Quasar RAT"],
        source="inline",
        lookback=timedelta(days=30),
    )["CommonSecurityLog"]
    # Both directions, each with the port on the indicator's side.
    assert (
        "(Events | project TimeGenerated, EventIp = tolower(DestinationIP), "
        "EventPort = DestinationPort,\n"
        '        MatchedColumn = "DestinationIP", ClientIP = SourceIP,' in query
    )
    assert (
        "(Events | project TimeGenerated, EventIp = tolower(SourceIP), "
        "EventPort = SourcePort,\n"
        '        MatchedColumn = "SourceIP", ClientIP = DestinationIP,' in query
    )
    assert "iff(isnull(Port) or Port == EventPort, 1000, 0)" in query
    assert '"ip_port", "ip_only_port_mismatch"' in query
    # Host names and the host of RequestURL, exact or subdomain on a dot boundary.
    assert 'MatchedColumn = "DestinationHostName"' in query
    assert "MatchedValue = extract(host_of, 1, RequestURL)" in query
    assert (
        'where DomainName == Indicator or DomainName endswith strcat(".", Indicator)'
        in query
    )


def test_device_network_events_and_dns_queries_pin_the_rule_matching():
    queries = hunting_queries(
        [i for i in INDICATORS if family_matches(i, "quasar rat")],
        SETTINGS,
        families=["Quasar RAT"],
        source="inline",
        lookback=timedelta(days=30),
    )
    device = queries["DeviceNetworkEvents"]
    assert "| extend EventIp = tolower(RemoteIP)\n" in device
    # Dual-stack sockets: an IPv4-mapped peer is compared in its IPv4 form.
    assert (
        '| extend EventIp = iff(EventIp startswith "::ffff:" and EventIp contains ".", '
        "substring(EventIp, 7), EventIp)\n" in device
    )
    assert "| project TimeGenerated, EventIp, EventPort = RemotePort," in device
    assert "extract(host_of, 1, RemoteUrl)" in device
    dns = queries["DnsEvents"]
    assert '| extend Answer = split(IPAddresses, ",")\n' in dns
    assert "| mv-expand Answer to typeof(string)\n" in dns
    assert 'MatchKind = "dns_answer_ip"' in dns
    assert 'where SubType == "LookupQuery"' in dns
    assert 'DomainName = trim_end(@"\\.", tolower(Name))' in dns
    assert 'endswith strcat(".", Indicator)' in dns


@pytest.mark.parametrize("source", ["watchlist", "inline"])
def test_queries_hold_the_rules_matching_text_verbatim(source):
    queries = hunting_queries(
        INDICATORS, SETTINGS, families=["Mirai"], source=source, lookback=timedelta(1)
    )
    for info in TABLES:
        query, rule = queries[info.table], rule_template(info.table)
        # The rule without its per-run lines: the ingestion filter, the flags.
        per_run = (
            r"\n    \| where (ingestion_time\(\) > ago\(frequency\)|\w+_enabled)\n"
        )
        rule = re.sub(per_run, "\n", rule)
        blocks = matching_blocks(info.table)
        names = ["non_public", "events"] + [f"{kind}_hits" for kind in info.kinds]
        assert set(blocks) == set(names) | {f"{kind}_rows" for kind in info.kinds}
        for name in names:
            # The same text as the rule's.
            assert blocks[name] in query, (info.table, name)
            assert blocks[name] in rule, (info.table, name)
        for kind in info.kinds:
            assert blocks[f"{kind}_rows"] in rule, (info.table, kind)
            # Only the rows' source differs from the rule.
            head, tail = blocks[f"{kind}_rows"].split("')\n", 1)
            assert head.endswith(f"_GetWatchlist('{{{{{kind.upper()}_WATCHLIST}}}}")
            assert f"\n{tail}" in query, (info.table, kind)
        # The per-run filters are the rule's alone.
        assert "ingestion_time()" not in query
        assert "frequency" not in query
        assert "_enabled" not in query
        assert "//@" not in query and "//@" not in rule
        assert "{{" not in query


def test_url_queries_compare_canonical_urls():
    mirai = [i for i in INDICATORS if family_matches(i, "mirai")]
    queries = hunting_queries(
        mirai, SETTINGS, families=["Mirai"], source="inline", lookback=timedelta(days=7)
    )
    # A URL indicator is not matched in DNS logs, as in the rules.
    assert list(queries) == ["CommonSecurityLog", "DeviceNetworkEvents", "DnsEvents"]
    assert "UrlRows" not in queries["DnsEvents"]
    csl = queries["CommonSecurityLog"]
    assert (
        '    "http://185.244.25.17:8080/bins/x86", datetime(2026-08-19T23:05:31Z), 100, '
        '"Mirai", "payload_delivery", "1591131",' in csl
    )
    assert (
        '| extend UrlKey = strcat(Scheme, "://", Authority, '
        'iff(Rest startswith "/", "", "/"), Rest)' in csl
    )
    assert "| join kind=inner UrlRows on UrlKey" in csl
    assert "let lookback = 7d;" in csl


def test_lookalikes_for_dynamic_dns_and_cloud_tag():
    pack = quasar_pack()
    assert "### `servehalflife[.]com` (No-IP)" in pack
    assert "### `ydns[.]eu` (YDNS)" in pack
    assert "### `47[.]239[.]50[.]7` (Alibaba Cloud)" in pack
    assert (
        "`qinerdime[.]ydns[.]eu` is under `ydns[.]eu`, a dynamic-DNS provider (YDNS)."
        in pack
    )
    assert (
        "`47[.]239[.]50[.]7` is tagged `Alibaba`: Alibaba Cloud address space." in pack
    )
    assert "listed on ports 443, 4782 from 2026-05-15" in pack
    blocks = kql_blocks(pack.partition("## Likely benign look-alikes")[2])
    assert len(blocks) == 3
    assert (
        '| where Host == "qinerdime.ydns.eu" or Host endswith ".qinerdime.ydns.eu"'
        in blocks[1]
    )
    assert (
        '| where Host == "servehalflife.com" or Host endswith ".servehalflife.com"'
        in blocks[0]
    )
    assert (
        "| where not(TimeGenerated < datetime(2026-05-15T07:02:44Z) or TimeGenerated > "
        "datetime(2026-06-21T13:20:05Z) or IndicatorPort !in (443, 4782))" in blocks[2]
    )
    # iotonton.io is an ordinary domain: no entry.
    assert "### iotonton" not in pack


def test_lookalikes_none_found():
    pack = build_pack("AsyncRAT", INDICATORS, SETTINGS, generated_at=GENERATED_AT)
    assert pack.endswith(
        "## Likely benign look-alikes\n\nNone found: no indicator is under a "
        "dynamic-DNS, free-hosting or file-sharing provider, and no IP carries a "
        "cloud provider tag.\n"
    )


def test_lookalike_for_a_url_on_a_file_sharing_site():
    gootloader = next(i for i in INDICATORS if family_matches(i, "gootloader"))
    shared_file = replace(
        gootloader,
        ioc="https://cdn.discordapp.com/attachments/1/2/Invoice.js",
        host="cdn.discordapp.com",
    )
    pack = build_pack("GootLoader", [shared_file], SETTINGS, generated_at=GENERATED_AT)
    assert "### `cdn[.]discordapp[.]com` (Discord CDN, file sharing)" in pack
    assert '| where RequestURL contains_cs "/attachments/1/2/Invoice.js"' in pack
    assert "`hxxps://cdn[.]discordapp[.]com/attachments/1/2/Invoice.js`" in pack


@pytest.mark.parametrize(
    "name", ["Quasar RAT", "quasar rat", "cinarat", "YGGDRASIL", "win.quasar_rat"]
)
def test_family_names_and_aliases_give_the_same_pack(name):
    assert build_pack(name, INDICATORS, SETTINGS, generated_at=GENERATED_AT) == (
        quasar_pack()
    )


def test_family_matching_is_exact_not_substring():
    quasar = next(i for i in INDICATORS if i.ioc == "iotonton.io")
    assert family_matches(quasar, "  CinaRAT ")
    assert not family_matches(quasar, "quasar")
    assert not family_matches(quasar, "rat")


def test_all_families_give_one_pack_each():
    packs = build_packs(
        INDICATORS, SETTINGS, malware=None, all_families=True, generated_at=GENERATED_AT
    )
    assert families(INDICATORS) == [
        "AsyncRAT",
        "Cobalt Strike",
        "GootLoader",
        "Mirai",
        "Quasar RAT",
        "Remcos",
    ]
    assert sorted(packs) == [
        "asyncrat.md",
        "cobalt-strike.md",
        "gootloader.md",
        "mirai.md",
        "quasar-rat.md",
        "remcos.md",
    ]
    assert packs["quasar-rat.md"] == quasar_pack()
    assert (
        packs["cobalt-strike.md"].count("`[2a01[:]4f8[:]c17[:]e3b1[:][:]1]:8443`") == 1
    )


def test_one_family_by_alias_is_named_by_its_printable_name():
    packs = build_packs(
        INDICATORS,
        SETTINGS,
        malware="Katana",
        all_families=False,
        generated_at=GENERATED_AT,
    )
    assert list(packs) == ["mirai.md"]


def test_unknown_family_names_close_names():
    with pytest.raises(
        ValueError, match=r"'Quasar'; close names: Quasar RAT, win.quasar_rat$"
    ):
        build_pack("Quasar", INDICATORS, SETTINGS, generated_at=GENERATED_AT)
    with pytest.raises(ValueError, match=r"families in the feed: AsyncRAT, Cobalt"):
        build_pack("Emotet", INDICATORS, SETTINGS, generated_at=GENERATED_AT)


def test_build_packs_needs_exactly_one_choice():
    with pytest.raises(ValueError, match="either"):
        build_packs(
            INDICATORS,
            SETTINGS,
            malware="Mirai",
            all_families=True,
            generated_at=GENERATED_AT,
        )
    with pytest.raises(ValueError, match="either"):
        build_packs(
            INDICATORS,
            SETTINGS,
            malware=None,
            all_families=False,
            generated_at=GENERATED_AT,
        )


def test_defang():
    url = next(i for i in INDICATORS if i.kind == "url" and i.port == 8080)
    assert defang(url) == "hxxp://185[.]244[.]25[.]17[:]8080/bins/x86"
    https = next(i for i in INDICATORS if i.ioc.startswith("https://"))
    assert defang(https) == "hxxps://docs-secure-update[.]top/invoice/Q3.js"


def test_every_query_of_every_pack_passes_the_kusto_parser():
    packs = build_packs(
        INDICATORS, SETTINGS, malware=None, all_families=True, generated_at=GENERATED_AT
    )
    queries = {
        f"{name}#{number}": text
        for name, pack in packs.items()
        for number, text in enumerate(kql_blocks(pack))
    }
    assert len(queries) == 37
    assert check_kql(queries) == {name: [] for name in queries}


def test_string_literal_escaping_form():
    assert kql_string_literal('a"b\\c') == '"a\\"b\\\\c"'
    assert kql_string_literal("\n\r\t\x00") == '"\\n\\r\\t\\u0000"'
    assert kql_string_literal("\u202e\U0001f600") == '"\\u202e\\ud83d\\ude00"'
    for attack in ATTACKS:
        literal = kql_string_literal(attack)
        assert literal.isascii() and literal.isprintable()
    with pytest.raises(TypeError):
        kql_string_literal(5)  # type: ignore[arg-type]
    assert kql_datetime_literal(GENERATED_AT) == "datetime(2026-05-22T14:00:00Z)"


def test_each_literal_parses_back_to_its_value():
    queries = {
        str(n): f"print v = {kql_string_literal(attack)}"
        for n, attack in enumerate(ATTACKS)
    }
    parsed = structure(queries)
    for n, attack in enumerate(ATTACKS):
        assert parsed[str(n)]["errors"] == 0
        assert parsed[str(n)]["literals"] == [attack]


def hostile_pack(value):
    """A pack whose every data-derived string carries ``value``."""
    base = [i for i in INDICATORS if family_matches(i, "quasar rat")]
    family = f"Fam{value}Z"

    def taint(indicator):
        ioc = indicator.ioc
        if indicator.kind == "domain":
            ioc = f"{value}.{ioc}"
        return replace(
            indicator,
            ioc=ioc,
            threatfox_id=value,
            threat_type=f"t{value}",
            malware_printable=family,
            malware="win.fam",
            malware_alias=(),
        )

    url = replace(
        base[0],
        kind="url",
        ioc=f"https://cdn.discordapp.com/attachments/{value}",
        host="cdn.discordapp.com",
        port=443,
        ioc_type="url",
    )
    indicators = [taint(i) for i in base] + [taint(url)]
    return build_pack(family, indicators, SETTINGS, generated_at=GENERATED_AT)


def test_no_value_changes_a_query_s_meaning():
    harmless = "harmless"
    benign = kql_blocks(hostile_pack(harmless))
    hostile = {attack: kql_blocks(hostile_pack(attack)) for attack in ATTACKS}
    queries = {f"benign#{n}": text for n, text in enumerate(benign)}
    for a, attack in enumerate(ATTACKS):
        assert len(hostile[attack]) == len(benign), attack
        for n, text in enumerate(hostile[attack]):
            queries[f"{a}#{n}"] = text
    parsed = structure(queries)
    for a, attack in enumerate(ATTACKS):
        family = f"Fam{attack}Z".lower()
        for n in range(len(benign)):
            got, want = parsed[f"{a}#{n}"], parsed[f"benign#{n}"]
            assert got["errors"] == 0, (attack, n)
            # The same syntax tree, node for node ...
            assert got["kinds"] == want["kinds"], (attack, n)
            # ... and every literal decodes to the value that went in.
            expected = [
                v.replace("famharmlessz", family).replace(harmless, attack)
                for v in want["literals"]
            ]
            assert got["literals"] == expected, (attack, n)
    # Same tree as the benign pack, whose queries pass the full (semantic) check.
    benign_names = [f"benign#{n}" for n in range(len(benign))]
    errors = check_kql({name: queries[name] for name in benign_names})
    assert errors == {name: [] for name in benign_names}


def test_hostile_values_stay_inside_markdown_cells_and_fences():
    pack = hostile_pack("a|b`c\nd")
    table = section(pack, "## Indicators")
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 7
    assert all(row.count(" | ") == 4 for row in rows[1:])
    assert "``a[.]qinerdime[.]ydns[.]eu``" not in pack
    assert "``a\\|b`c\\u000ad[.]qinerdime[.]ydns[.]eu``" in pack


def test_example_document_is_up_to_date():
    # Regenerate with: python -m tests.test_huntpack
    assert EXAMPLE.read_text(encoding="utf-8") == quasar_pack()


if __name__ == "__main__":
    EXAMPLE.write_text(quasar_pack(), encoding="utf-8")
