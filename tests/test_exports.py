import io
import logging
import zipfile
from pathlib import Path

import httpx
import pytest

from shared.errors import (
    ThreatFoxAuthError,
    ThreatFoxError,
    ThreatFoxRequestError,
    ThreatFoxUnavailableError,
)
from shared.exports import ExportResult, fetch_export, parse_export, redact_export_url

DATA = Path(__file__).parent / "data" / "exports"
EXPORT_KEY = "EXPORT-k3y-5ecret-99"
EXPORT_URL = f"https://threatfox.test/v2/files/exports/{EXPORT_KEY}/full.csv.zip"
HTML_PAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
HEADER_15 = (
    '# "first_seen_utc","ioc_id","ioc_value","ioc_type","threat_type","fk_malware",'
    '"malware_alias","malware_printable","last_seen_utc","confidence_level",'
    '"is_compromised","reference","tags","anonymous","reporter"'
)
ROW_15 = (
    '"2026-11-30 08:15:02", "1700042", "login-check.example.net", "domain", '
    '"botnet_cc", "win.examplerat", "ExRAT,Example Loader", "ExampleRAT", "", "75", '
    '"False", "None", "ExampleRAT,c2", "0", "example_reporter"'
)
FIRST_15 = {
    "id": "1700042",
    "ioc": "login-check.example.net",
    "ioc_type": "domain",
    "threat_type": "botnet_cc",
    "malware": "win.examplerat",
    "malware_printable": "ExampleRAT",
    "malware_alias": "ExRAT,Example Loader",
    "first_seen": "2026-11-30 08:15:02 UTC",
    "last_seen": None,
    "confidence_level": 75,
    "reference": None,
    "tags": ["ExampleRAT", "c2"],
    "reporter": "example_reporter",
    "is_compromised": False,
}


def fixture(name):
    return (DATA / name).read_bytes()


def csv_export(*lines):
    return ("\n".join(lines) + "\n").encode()


def zipped(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_14_column_csv_maps_every_field_to_get_iocs_names():
    result = parse_export(fixture("full14.csv"))

    assert (result.format, result.declared_count, result.complete) == ("csv", 5, True)
    assert result.problems == ()
    assert [r["id"] for r in result.records] == [
        "1510001",
        "1510002",
        "1510003",
        "1510004",
        "1510005",
    ]
    assert result.records[0] == {
        "id": "1510001",
        "ioc": "198.51.100.20:443",
        "ioc_type": "ip:port",
        "threat_type": "botnet_cc",
        "malware": "win.cobalt_strike",
        "malware_printable": "Cobalt Strike",
        "malware_alias": "Agentemis,BEACON,CobaltStrike,cobeacon",
        "first_seen": "2025-06-01 22:10:41 UTC",
        "last_seen": None,
        "confidence_level": 100,
        "reference": None,
        "tags": ["c2", "CobaltStrike"],
        "reporter": "abuse_ch",
        "is_compromised": None,
    }
    assert result.records[1]["last_seen"] == "2025-06-02 01:00:00 UTC"
    assert result.records[1]["reference"] == "https://bazaar.abuse.ch/sample/0f1e2d3c/"
    assert result.records[1]["tags"] is None
    assert result.records[2]["tags"] is None
    assert result.records[4]["ioc"] == "2001:db8:5::9:4443"


def test_15_column_csv_reads_is_compromised_by_name():
    result = parse_export(fixture("full15.csv"))

    assert (result.declared_count, result.complete, len(result.records)) == (8, True, 8)
    assert result.records[0] == FIRST_15
    assert [r["is_compromised"] for r in result.records] == [
        False,
        False,
        True,
        False,
        False,
        False,
        False,
        True,
    ]
    assert result.records[1]["tags"] == ["Cobalt Strike", "CobaltStrike"]
    assert result.records[1]["reference"] == "https://tria.ge/261130-example"
    assert result.records[5]["ioc_type"] == "sha3_384_hash"
    assert result.records[7]["malware_alias"] == "LummaC2 Stealer,Lumma"


@pytest.mark.parametrize(
    ("zipped_name", "plain_name", "count"),
    [("full14.csv.zip", "full14.csv", 5), ("full15.csv.zip", "full15.csv", 8)],
)
def test_zip_is_detected_by_magic_bytes_and_reads_like_the_plain_file(
    zipped_name, plain_name, count
):
    content = fixture(zipped_name)
    assert content[:4] == b"PK\x03\x04"

    result = parse_export(content)

    assert result == parse_export(fixture(plain_name))
    assert (len(result.records), result.complete) == (count, True)


def test_recent_plain_csv_is_read_without_unzipping():
    result = parse_export(fixture("recent.csv"))

    assert (result.declared_count, result.complete) == (3, True)
    assert [
        (r["id"], r["ioc_type"], r["confidence_level"]) for r in result.records
    ] == [
        ("1700101", "ip:port", 100),
        ("1700100", "domain", 75),
        ("1700099", "sha1_hash", 50),
    ]
    assert result.records[1]["reference"] == "https://x.com/example/status/1"
    assert result.records[2]["tags"] is None


def test_json_export_is_keyed_by_id_and_mapped_to_get_iocs_names():
    result = parse_export(fixture("recent.json"))

    assert (result.format, result.declared_count, result.complete) == (
        "json",
        None,
        True,
    )
    assert result.records[0] == {
        "id": "1700101",
        "ioc": "192.0.2.77:8443",
        "ioc_type": "ip:port",
        "threat_type": "botnet_cc",
        "malware": "win.remcos",
        "malware_printable": "Remcos",
        "malware_alias": "RemcosRAT,Socmer",
        "first_seen": "2026-12-01 08:59:59 UTC",
        "last_seen": None,
        "confidence_level": 100,
        "reference": None,
        "tags": ["RAT", "Remcos"],
        "reporter": "abuse_ch",
        "is_compromised": False,
    }
    second, third, fourth = result.records[1:]
    assert (second["malware_alias"], second["tags"]) == (None, None)
    assert second["reference"] == "https://x.com/example/status/1"
    assert second["last_seen"] == "2026-12-01 09:00:00 UTC"
    assert (third["last_seen"], third["reference"], third["tags"]) == (None, None, None)
    assert (fourth["ioc"], fourth["tags"]) == ("http://[2001:db8::7]:8080/panel/", None)


def test_zipped_json_export_reads_like_the_plain_one():
    assert parse_export(fixture("full.json.zip")) == parse_export(
        fixture("recent.json")
    )


def test_truncated_zip_keeps_the_whole_rows_before_the_cut_and_is_incomplete():
    result = parse_export(fixture("truncated.csv.zip"))
    whole = parse_export(fixture("full15.csv")).records

    assert result.complete is False
    assert result.declared_count is None
    assert 0 < len(result.records) < len(whole)
    assert result.records == whole[: len(result.records)]
    assert "zip archive is cut off" in result.problems[0]


def test_csv_without_trailer_is_incomplete():
    result = parse_export(fixture("no_trailer.csv"))

    assert (len(result.records), result.declared_count, result.complete) == (
        3,
        None,
        False,
    )
    assert result.problems == ("no '# Number of entries' trailer",)


def test_csv_whose_trailer_disagrees_is_incomplete():
    result = parse_export(fixture("wrong_count.csv"))

    assert (len(result.records), result.declared_count, result.complete) == (
        3,
        5,
        False,
    )
    assert result.problems == ("trailer declares 5 entries but 3 were read",)


def test_columns_are_found_by_name_in_any_order_and_unknown_ones_ignored():
    content = csv_export(
        '# "reporter","ioc_value","new_column","ioc_id","first_seen_utc","ioc_type"',
        '"abuse_ch", "bad.example.org", "whatever", "42", "2026-01-09 10:00:00", "domain"',
        "# Number of entries: 1",
    )

    (record,) = parse_export(content).records

    assert record["id"] == "42"
    assert record["ioc"] == "bad.example.org"
    assert record["reporter"] == "abuse_ch"
    assert record["first_seen"] == "2026-01-09 10:00:00 UTC"
    assert "new_column" not in record
    assert record["threat_type"] is None


@pytest.mark.parametrize("separator", [",", ", ", ",   "])
def test_separators_with_and_without_spaces_read_the_same(separator):
    row = separator.join(field.strip() for field in ROW_15.split(", "))
    content = csv_export(HEADER_15, row, "# Number of entries: 1")

    assert parse_export(content).records == [FIRST_15]


def test_crlf_line_endings_and_a_bom_are_accepted():
    content = "\ufeff" + "\r\n".join([HEADER_15, ROW_15, "# Number of entries: 1"])

    assert parse_export(content.encode()).records == [FIRST_15]


def test_the_header_is_the_last_quoted_comment_before_the_data():
    content = csv_export(
        '# "not","the","header"',
        "# a comment",
        HEADER_15,
        ROW_15,
        '# "after","the","data"',
        "# Number of entries: 1",
    )

    assert parse_export(content).records == [FIRST_15]


def test_rows_with_the_wrong_field_count_are_passed_on_raw_and_flag_the_file():
    short = '"2026-11-30 08:15:02", "1700050", "x.example.net"'
    content = csv_export(HEADER_15, ROW_15, short, "# Number of entries: 2")

    result = parse_export(content)

    assert result.records == [
        FIRST_15,
        ["2026-11-30 08:15:02", "1700050", "x.example.net"],
    ]
    assert result.complete is False
    assert result.problems == ("1 row(s) do not have the header's 15 fields",)


def test_values_that_cannot_be_converted_are_passed_on_for_normalize_to_reject():
    row = ROW_15.replace('"75"', '"high"').replace(
        '"2026-11-30 08:15:02"', '"30/11/2026"'
    )
    content = csv_export(HEADER_15, row, "# Number of entries: 1")

    (record,) = parse_export(content).records

    assert record["confidence_level"] == "high"
    assert record["first_seen"] == "30/11/2026"


def test_an_empty_export_with_a_zero_trailer_is_complete():
    result = parse_export(csv_export("# banner", HEADER_15, "# Number of entries: 0"))

    assert result == ExportResult([], 0, True, "csv", ())


def test_thousands_separators_in_the_trailer_are_read():
    content = csv_export(HEADER_15, ROW_15, "# Number of entries: 1,000")

    assert parse_export(content).declared_count == 1000


def test_truncated_json_keeps_the_entries_before_the_cut():
    content = fixture("recent.json")
    cut = content[: content.index(b'"1700099"') + 40]

    result = parse_export(cut)

    assert [r["id"] for r in result.records] == ["1700101", "1700100"]
    assert result.complete is False
    assert result.problems == (
        "JSON body is cut off or malformed; 2 entries read before it",
    )


def test_json_elements_that_are_not_objects_are_passed_on_and_bare_objects_read():
    content = b'{"1": ["oops", {"ioc_value": "a.example"}], "2": {"ioc_value": "b.example"}, "3": 7}'

    result = parse_export(content)

    assert result.records[0] == "oops"
    assert (result.records[1]["id"], result.records[1]["ioc"]) == ("1", "a.example")
    assert (result.records[2]["id"], result.records[2]["ioc"]) == ("2", "b.example")
    assert result.records[3] == 7
    assert result.complete is False
    assert result.problems == ("2 JSON entries are not objects",)


def test_json_tags_as_a_list_and_string_numbers_are_accepted():
    content = b'{"9": [{"ioc_value": "c.example", "tags": ["x", " y ", "None", ""], "confidence_level": "80", "is_compromised": "True"}]}'

    (record,) = parse_export(content).records

    assert record["tags"] == ["x", "y"]
    assert record["confidence_level"] == 80
    assert record["is_compromised"] is True


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "export is empty"),
        (b"  \n ", "export is empty"),
        (b'[{"ioc_value": "a"}]', "a list, not an object keyed by id"),
        (csv_export(ROW_15), "no header line"),
        (csv_export("# banner", ROW_15), "no header line"),
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (zipped({"a.csv": "x", "b.csv": "y"}), "must hold one .csv or .json file"),
        (zipped({"readme.txt": "x"}), "must hold one .csv or .json file"),
        (b"PK\x03\x04\x14\x00", "cut off inside its first header"),
    ],
)
def test_unreadable_exports_raise_a_clear_error(content, message):
    with pytest.raises(ThreatFoxError, match=message):
        parse_export(content)


def test_a_zip_whose_member_fails_its_checksum_is_unreadable():
    content = bytearray(fixture("full15.csv.zip"))
    # The member's data starts after the 30-byte header and the name "full.csv".
    content[30 + 8 + 100] ^= 0xFF

    with pytest.raises(ThreatFoxError, match="is corrupt"):
        parse_export(bytes(content))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (EXPORT_URL, "https://threatfox.test/v2/files/exports/<redacted>/full.csv.zip"),
        (
            "http://127.0.0.1:8080/v2/files/exports/abc/recent.json?x=1",
            "http://127.0.0.1:8080/v2/files/exports/<redacted>/recent.json?x=1",
        ),
        ("https://h/v2/files/exports/abc", "https://h/v2/files/exports/<redacted>"),
        (
            "https://threatfox.abuse.ch/export/csv/full/",
            "https://threatfox.abuse.ch/export/csv/full/",
        ),
        (
            f"failed: {EXPORT_URL} and again {EXPORT_URL}",
            "failed: https://threatfox.test/v2/files/exports/<redacted>/full.csv.zip"
            " and again https://threatfox.test/v2/files/exports/<redacted>/full.csv.zip",
        ),
    ],
)
def test_redact_export_url_hides_the_key_segment(url, expected):
    assert redact_export_url(url) == expected


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def fetch(*answers, clock=None, url=EXPORT_URL, **kwargs):
    requests = []
    queue = list(answers)

    def handler(request):
        requests.append(request)
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = clock or FakeClock()
    result = fetch_export(
        url,
        transport=httpx.MockTransport(handler),
        sleep=clock.sleep,
        clock=clock,
        **kwargs,
    )
    return result, requests


def zip_response():
    return httpx.Response(
        200,
        content=fixture("full15.csv.zip"),
        headers={"content-type": "application/zip"},
    )


def html(status, headers=None):
    return httpx.Response(
        status,
        content=HTML_PAGE,
        headers={"content-type": "text/html", **(headers or {})},
    )


def chained_texts(error):
    texts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        texts += [str(error), repr(error)]
        error = error.__cause__ or error.__context__
    return texts


def test_fetch_export_downloads_and_parses_a_zip():
    result, requests = fetch(zip_response())

    assert (len(result.records), result.complete) == (8, True)
    assert [r.method for r in requests] == ["GET"]
    assert str(requests[0].url) == EXPORT_URL


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_fetch_export_retries_html_server_errors(status):
    clock = FakeClock()

    result, requests = fetch(html(status), zip_response(), clock=clock)

    assert len(requests) == 2
    assert len(clock.sleeps) == 1
    assert len(result.records) == 8


def test_fetch_export_retries_a_200_html_page_and_an_empty_body():
    result, requests = fetch(
        html(200), httpx.Response(200, content=b""), zip_response()
    )

    assert len(requests) == 3
    assert result.complete is True


def test_fetch_export_honours_retry_after():
    clock = FakeClock()

    fetch(html(429, {"Retry-After": "12"}), zip_response(), clock=clock)

    assert clock.sleeps == [12.0]


@pytest.mark.parametrize("status", [401, 402, 403])
def test_fetch_export_auth_failures_name_the_setting(status):
    with pytest.raises(ThreatFoxAuthError, match="THREATFOX_AUTH_KEY") as caught:
        fetch(html(status))

    assert EXPORT_KEY not in str(caught.value)
    assert "/exports/<redacted>/" in str(caught.value)


def test_fetch_export_404_is_a_request_error_not_retried():
    with pytest.raises(ThreatFoxRequestError, match="HTTP 404"):
        fetch(html(404))


def test_fetch_export_gives_up_within_the_time_budget():
    clock = FakeClock()

    with pytest.raises(ThreatFoxUnavailableError, match="after 2 attempt"):
        fetch(
            html(503, {"Retry-After": "50"}),
            clock=clock,
            max_attempts=10,
            max_total_seconds=80,
        )

    assert clock.sleeps == [50.0]


@pytest.mark.parametrize(
    "answer",
    [
        httpx.ConnectError(f"cannot reach {EXPORT_URL}"),
        httpx.ReadTimeout(f"timed out reading {EXPORT_URL}"),
        html(502),
        html(403),
    ],
)
def test_the_export_key_never_leaks_into_logs_or_errors(answer, caplog):
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ThreatFoxError) as caught:
        fetch(answer, max_attempts=2)

    assert EXPORT_KEY not in caplog.text
    assert "/exports/<redacted>/" in caplog.text
    for text in chained_texts(caught.value):
        assert EXPORT_KEY not in text


def test_httpx_request_log_lines_are_redacted(caplog):
    caplog.set_level(logging.INFO, logger="httpx")

    fetch(zip_response())

    httpx_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert httpx_lines == [
        'HTTP Request: GET https://threatfox.test/v2/files/exports/<redacted>/full.csv.zip "HTTP/1.1 200 OK"'
    ]


def test_an_incomplete_export_is_returned_with_a_warning(caplog):
    caplog.set_level(logging.WARNING, logger="shared.exports")
    response = httpx.Response(200, content=fixture("wrong_count.csv"))

    result, _ = fetch(response)

    assert result.complete is False
    (warning,) = caplog.records
    assert warning.getMessage() == (
        "ThreatFox export https://threatfox.test/v2/files/exports/<redacted>/full.csv.zip"
        " is incomplete: trailer declares 5 entries but 3 were read"
    )


def test_an_unsupported_url_scheme_is_a_request_error_without_the_key():
    url = f"ftp://threatfox.test/v2/files/exports/{EXPORT_KEY}/full.csv.zip"

    # The real transport refuses the scheme before any connection is tried.
    with pytest.raises(ThreatFoxRequestError, match="UnsupportedProtocol") as caught:
        fetch_export(url)

    for text in chained_texts(caught.value):
        assert EXPORT_KEY not in text


def test_a_key_outside_the_exports_segment_is_redacted_everywhere(caplog):
    key = "mirror-key-5b8e1f"
    url = f"http://127.0.0.1:1/{key}/full.csv.zip"
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ThreatFoxError) as raised:
        fetch_export(
            url, secret=key, max_attempts=3, sleep=lambda _s: None, timeout_seconds=1
        )

    assert key not in str(raised.value)
    assert key not in caplog.text
    assert "attempt 1 of 3 failed" in caplog.text
    assert (
        redact_export_url(f"see {url}")
        == "see http://127.0.0.1:1/<redacted>/full.csv.zip"
    )
