"""`make demo`: the main job on the bundled sample, against the local stand-in.

Starts Azurite and the stand-in, runs the sync twice through the CLI (the second
run, an hour later, must write nothing), prints what changed, a few watchlist
rows and the analytics rules, then stops everything. No Azure account and no
ThreatFox key are needed.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.__main__ import main as cli
from standin.azurite import Azurite
from standin.server import StandIn

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "threatfox_get_iocs.json"
OUT = ROOT / "out" / "demo"
# The sample's IOCs were first seen on 2026-05-21/22: replay it as of the next day.
AS_OF = datetime(2026, 5, 23, tzinfo=UTC)
DEMO_KEY = "demo-key-not-secret"
WORKSPACE = "demo-workspace"


def _settings_file(standin: StandIn, azurite: Azurite, folder: Path) -> Path:
    values = {
        "THREATFOX_AUTH_KEY": DEMO_KEY,
        "THREATFOX_API_URL": standin.threatfox_url,
        "THREATFOX_EXPORT_URL": standin.exports_url + "/{auth_key}/full.csv.zip",
        "RECONCILE_INTERVAL_HOURS": "0",
        "SENTINEL_SUBSCRIPTION_ID": "00000000-0000-0000-0000-00000000de30",
        "SENTINEL_RESOURCE_GROUP": "demo-rg",
        "SENTINEL_WORKSPACE_NAME": WORKSPACE,
        "AZURE_ARM_ENDPOINT": standin.arm_endpoint,
        "SENTINEL_STATIC_TOKEN": "demo-token",
        "AzureWebJobsStorage": azurite.connection_string,
    }
    path = folder / "demo.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}, indent=2))
    return path


def _run(settings: Path, as_of: datetime, number: int) -> dict[str, Any]:
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        code = cli(["--settings", str(settings), "sync", "--as-of", as_of.isoformat()])
    report: dict[str, Any] = json.loads(captured.getvalue())
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"report-{number}.json").write_text(json.dumps(report, indent=2) + "\n")
    if code != 0:
        raise SystemExit(f"sync {number} failed: {report.get('error')}")
    return report


def _describe(report: dict[str, Any], title: str) -> None:
    feed, indicators = report["feed"], report["indicators"]
    workspace = report["workspaces"][0]
    print(f"\n== {title}")
    print(
        f"feed: {feed['records']} records, days={feed['days']} "
        f"({feed['widened_reason'] or 'configured window'})"
    )
    print(
        f"indicators: kept {dict(indicators['kept'])}, invalid {dict(indicators['invalid'])}, "
        f"unsupported {dict(indicators['unsupported_types'])}, "
        f"filtered {dict(indicators['filtered'])}, allow-listed {indicators['allowlisted']}, "
        f"merged {indicators['duplicates_merged']}"
    )
    for alias, change in workspace["watchlists"].items():
        print(
            f"  {alias:<18} added {change['added']:>2}  already present "
            f"{change['already_present']:>2}  kept {change['kept_from_earlier']:>2}  "
            f"deleted {sum(change['deleted'].values()):>2}  write calls {change['write_calls']}"
        )
    for name, rule in workspace["rules"].get("rules", {}).items():
        print(f"  rule {name!r}: {rule['action']}")
    print(f"item changes this month: {workspace['changes_this_month']}")


def _show_rows(standin: StandIn) -> None:
    print("\n== A few watchlist rows, as Sentinel holds them")
    for alias in ("ThreatFox-IP", "ThreatFox-Domain", "ThreatFox-URL"):
        rows = standin.sentinel.items(WORKSPACE, alias)
        print(f"{alias} ({len(rows)} rows)")
        for row in rows[:3]:
            print("  " + json.dumps(row))


def _show_rules(standin: StandIn) -> None:
    rules = standin.sentinel.workspace(WORKSPACE).rules
    print(f"\n== Analytics rules in the stand-in ({len(rules)})")
    for rule_id, rule in sorted(rules.items()):
        properties = rule["properties"]
        print(
            f"  {rule_id}  {properties['displayName']}  enabled={properties['enabled']}"
        )


def main() -> int:
    """Run the demo; return the exit code."""
    with (
        Azurite() as azurite,
        StandIn(auth_key=DEMO_KEY) as standin,
        tempfile.TemporaryDirectory() as folder,
    ):
        standin.threatfox.load_feed(SAMPLE)
        standin.threatfox.now = AS_OF
        settings = _settings_file(standin, azurite, Path(folder))

        first = _run(settings, AS_OF, 1)
        _describe(first, "Run 1: first sync on an empty workspace")
        writes_before = standin.sentinel.write_calls

        standin.threatfox.now = AS_OF + timedelta(hours=1)
        second = _run(settings, AS_OF + timedelta(hours=1), 2)
        _describe(second, "Run 2: an hour later, same feed")
        new_writes = standin.sentinel.write_calls - writes_before
        print(
            f"write calls in run 2: {new_writes} (a run with nothing new writes nothing)"
        )

        print(
            "\n(already present: in this run's feed and already listed; kept: listed "
            "earlier, still valid, no longer in the feed window)"
        )
        _show_rows(standin)
        _show_rules(standin)
        print(f"\nFull reports: {OUT}/report-1.json, report-2.json")
        return 0 if new_writes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
