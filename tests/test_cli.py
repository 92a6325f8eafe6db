"""The command line: export, huntpack and sync as a user runs them."""

from __future__ import annotations

import csv
import json

import pytest

from shared.__main__ import main
from tests.conftest import SAMPLE_FEED, settings_mapping


def _read_csv(path):
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_export_writes_the_rows_the_sync_would_upload(tmp_path, capsys):
    code = main(
        [
            "export",
            "--feed",
            str(SAMPLE_FEED),
            "--out",
            str(tmp_path),
            "--as-of",
            "2026-05-23T00:00:00Z",
        ]
    )

    assert code == 0
    ips = _read_csv(tmp_path / "ThreatFox-IP.csv")
    assert [(row["IPAddress"], row["Port"], row["ThreatFoxId"]) for row in ips] == [
        ("2a01:4f8:c17:e3b1::1", "8443", "1591102"),
        ("185.244.25.17", "8080", "1591110"),
        ("47.239.50.7", "443", "1591188"),
        ("47.239.50.7", "4782", "1591241"),
    ]
    domains = [row["Domain"] for row in _read_csv(tmp_path / "ThreatFox-Domain.csv")]
    assert domains == [
        "mail.tripfan-ads.com",
        "xn--bcher-rechnung-gsb.de",
        "qinerdime.servehalflife.com",
        "iotonton.io",
        "qinerdime.ydns.eu",
    ]
    assert len(_read_csv(tmp_path / "ThreatFox-URL.csv")) == 2
    assert not (tmp_path / "ThreatFox-FileHash.csv").exists()
    template = json.loads((tmp_path / "analytics-rules.json").read_text())
    assert template["$schema"].endswith("deploymentTemplate.json#")
    assert len(template["resources"]) == 3
    assert "ThreatFox-IP.csv: 4 rows" in capsys.readouterr().out


def test_export_leaves_out_rows_expired_by_now(tmp_path):
    code = main(
        [
            "export",
            "--feed",
            str(SAMPLE_FEED),
            "--out",
            str(tmp_path),
            "--as-of",
            "2026-07-01T00:00:00Z",
        ]
    )

    assert code == 0
    assert _read_csv(tmp_path / "ThreatFox-IP.csv") == []
    assert len(_read_csv(tmp_path / "ThreatFox-Domain.csv")) == 5


def test_export_with_hashes_and_a_prefix(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(
        json.dumps({"Values": {"INDICATOR_KINDS": "hash", "WATCHLIST_PREFIX": "TFX"}})
    )

    code = main(
        [
            "--settings",
            str(settings),
            "export",
            "--feed",
            str(SAMPLE_FEED),
            "--out",
            str(tmp_path),
            "--as-of",
            "2026-05-23T00:00:00Z",
        ]
    )

    assert code == 0
    hashes = _read_csv(tmp_path / "TFX-FileHash.csv")
    assert sorted((row["HashAlgorithm"], len(row["FileHash"])) for row in hashes) == [
        ("MD5", 32),
        ("SHA1", 40),
        ("SHA256", 64),
        ("SHA3-384", 96),
    ]
    sha1 = next(row for row in hashes if row["HashAlgorithm"] == "SHA1")
    assert sha1["FileHash"] == "c2d9b6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f"


@pytest.mark.parametrize(
    "content",
    [
        "<html>502 Bad Gateway</html>",
        '{"query_status": "ok", "data": "oops"}',
        '{"query_status": "illegal_days"}',
        '{"query_status": "ok", "data": [{"id": ',
    ],
)
def test_export_refuses_a_broken_feed_file(tmp_path, content, caplog):
    feed = tmp_path / "feed.json"
    feed.write_text(content)

    code = main(["export", "--feed", str(feed), "--out", str(tmp_path / "out")])

    assert code == 2
    assert not (tmp_path / "out").exists()
    assert caplog.records[-1].levelname == "ERROR"


def test_huntpack_from_a_feed_file_by_alias(tmp_path):
    code = main(
        [
            "huntpack",
            "--malware",
            "CinaRAT",
            "--feed",
            str(SAMPLE_FEED),
            "--out",
            str(tmp_path),
        ]
    )

    assert code == 0
    pack = (tmp_path / "quasar-rat.md").read_text(encoding="utf-8")
    assert "| Total | 4 IOCs (5 indicator rows: one IP on two ports) |" in pack
    assert "`qinerdime[.]ydns[.]eu`" in pack


def test_huntpack_for_an_unknown_family_names_the_known_ones(tmp_path, caplog):
    code = main(
        [
            "huntpack",
            "--malware",
            "NoSuchRat",
            "--feed",
            str(SAMPLE_FEED),
            "--out",
            str(tmp_path),
        ]
    )

    assert code == 2
    assert "Quasar RAT" in caplog.records[-1].getMessage()


def test_sync_without_a_key_names_the_setting(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("THREATFOX_AUTH_KEY", raising=False)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"Values": {"SENTINEL_WORKSPACE_NAME": "ws"}}))

    code = main(["--settings", str(settings), "sync"])

    assert code == 2
    assert "THREATFOX_AUTH_KEY" in caplog.records[-1].getMessage()


def test_sync_against_the_stand_in(standin, azurite, tmp_path, capsys):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"Values": settings_mapping(standin, azurite)}))

    code = main(
        [
            "--settings",
            str(settings),
            "sync",
            "--as-of",
            "2026-05-23T00:00:00Z",
            "--no-rules",
        ]
    )

    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "ok"
    assert report["workspaces"][0]["rules"] == {"managed": False}
    assert report["workspaces"][0]["watchlists"]["ThreatFox-Domain"]["added"] == 5
