"""Check KQL with Microsoft's Kusto parser (tools/kqlcheck.js under Node).

Reusable by any test that writes KQL (analytics rules, hunt packs):

    problems = check_kql({"rule": text})
    assert problems == {"rule": []}

The default schema declares CommonSecurityLog, DeviceNetworkEvents and DnsEvents
(the columns our queries may read, types as in Microsoft's schemas) and
``_GetWatchlist(alias)`` returning every column of every product watchlist plus
``SearchKey``, ``_DTItemId`` and ``LastUpdatedTimeUTC``. All queries go to one
Node process: loading the parser costs seconds, each query a few milliseconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shared.watchlists import ALL_COLUMNS

__all__ = [
    "TABLES",
    "WATCHLIST_BASE_COLUMNS",
    "check_kql",
    "diagnose_kql",
    "watchlist_function",
]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "kqlcheck.js"

TABLES: dict[str, str] = {
    "CommonSecurityLog": (
        "(TimeGenerated:datetime, DeviceVendor:string, DeviceProduct:string,"
        " DeviceVersion:string, DeviceEventClassID:string, Activity:string,"
        " LogSeverity:string, DeviceAction:string, SimplifiedDeviceAction:string,"
        " SourceIP:string, DestinationIP:string, RemoteIP:string, SourcePort:int,"
        " DestinationPort:int, RemotePort:string, SourceHostName:string,"
        " DestinationHostName:string, DestinationDnsDomain:string, RequestURL:string,"
        " RequestMethod:string, RequestClientApplication:string,"
        " ApplicationProtocol:string, Protocol:string, Message:string,"
        " AdditionalExtensions:string, DeviceName:string, Computer:string,"
        " FileHash:string, FileName:string, SentBytes:long, ReceivedBytes:long,"
        " MaliciousIP:string, IndicatorThreatType:string, ThreatConfidence:string,"
        " ThreatSeverity:int, SourceUserName:string, Type:string)"
    ),
    "DeviceNetworkEvents": (
        "(TimeGenerated:datetime, Timestamp:datetime, DeviceId:string,"
        " DeviceName:string, ActionType:string, RemoteIP:string, RemoteIPType:string,"
        " RemotePort:int, RemoteUrl:string, LocalIP:string, LocalIPType:string,"
        " LocalPort:int, Protocol:string, InitiatingProcessFileName:string,"
        " InitiatingProcessCommandLine:string, InitiatingProcessSHA256:string,"
        " InitiatingProcessAccountUpn:string, InitiatingProcessAccountName:string,"
        " AdditionalFields:dynamic, ReportId:long, Type:string)"
    ),
    "DnsEvents": (
        "(TimeGenerated:datetime, Computer:string, ClientIP:string, Name:string,"
        " IPAddresses:string, QueryType:string, SubType:string, EventId:int,"
        " ResultCode:int, Severity:int, Result:string, Message:string,"
        " Description:string, MaliciousIP:string, IndicatorThreatType:string,"
        " Confidence:string, Type:string)"
    ),
}

# Columns _GetWatchlist adds to every watchlist's own CSV columns.
WATCHLIST_BASE_COLUMNS = ("SearchKey:string", "_DTItemId:string")
_WATCHLIST_TIME_COLUMN = "LastUpdatedTimeUTC:datetime"
# The union of the product watchlists' columns, from shared/watchlists.py.
_WATCHLIST_COLUMNS = ALL_COLUMNS


def watchlist_function(columns: Sequence[str] = _WATCHLIST_COLUMNS) -> dict[str, str]:
    """Declare ``_GetWatchlist(alias)`` returning ``columns`` (strings) plus the base.

    Pass ``columns=()`` to model a watchlist that does not exist: the service
    then returns only the base columns, and a query must still compile.
    """
    declared = [*WATCHLIST_BASE_COLUMNS, *(f"{name}:string" for name in columns)]
    declared.append(_WATCHLIST_TIME_COLUMN)
    return {
        "name": "_GetWatchlist",
        "parameters": "(alias:string)",
        "body": "{ datatable(" + ", ".join(declared) + ")[] }",
    }


def _schema(
    tables: Mapping[str, str] | None, functions: Sequence[Mapping[str, str]] | None
) -> dict[str, Any]:
    return {
        "tables": dict(TABLES if tables is None else tables),
        "functions": list([watchlist_function()] if functions is None else functions),
    }


def diagnose_kql(
    queries: Mapping[str, str],
    *,
    tables: Mapping[str, str] | None = None,
    functions: Sequence[Mapping[str, str]] | None = None,
    functions_for: Mapping[str, Sequence[Mapping[str, str]]] | None = None,
    lint: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """Return every diagnostic (all severities) per query name, as dicts.

    ``functions_for`` gives some queries their own function declarations (for
    example ``[watchlist_function(())]``), still in the same Node process.
    """
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is required to run the Kusto parser")
    own = functions_for or {}
    request = {
        "queries": [
            {"name": name, "text": text}
            | ({"schema": _schema(tables, own[name])} if name in own else {})
            for name, text in queries.items()
        ],
        "schema": _schema(tables, functions),
        "lint": lint,
    }
    completed = subprocess.run(
        [node, str(SCRIPT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"kqlcheck.js failed: {completed.stderr[-2000:]}")
    results: dict[str, list[dict[str, Any]]] = json.loads(completed.stdout)["results"]
    return results


def check_kql(
    queries: Mapping[str, str],
    *,
    tables: Mapping[str, str] | None = None,
    functions: Sequence[Mapping[str, str]] | None = None,
    functions_for: Mapping[str, Sequence[Mapping[str, str]]] | None = None,
) -> dict[str, list[str]]:
    """Return the errors (syntax and semantic) per query name; [] means clean.

    Each error reads ``"KS142 <message> near '<excerpt>'"`` so a failing
    assertion shows where the problem is.
    """
    results = diagnose_kql(
        queries, tables=tables, functions=functions, functions_for=functions_for
    )
    return {
        name: [
            f"{d['code']} {d['message']} near {d['excerpt']!r}"
            for d in diagnostics
            if d["severity"] == "Error"
        ]
        for name, diagnostics in results.items()
    }
