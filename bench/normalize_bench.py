"""Benchmark: decode and normalize a synthetic get_iocs feed; prints figures, not a test.

Run ``python -m bench.normalize_bench [--records N]`` (default 1,000,000).

The feed is built once and written to a temporary file as the exact bytes of a
``get_iocs`` answer. Each measurement then runs in a fresh child process that
reads those bytes (not timed) and times one phase:

- ``json``: ``json.loads`` of the body alone (the floor any client pays);
- ``pipeline``: ``json.loads``, ``normalize_record`` on every record and
  ``merge_duplicates``, as the sync does after the HTTP transfer.

Fresh processes keep the two phases from sharing a heap, and give an honest
peak: ``peak_mb`` is the pipeline child's peak resident set (ru_maxrss),
interpreter and body bytes included. The HTTP transfer itself is not timed;
over loopback it is a memory copy. ``--gc-freeze`` moves the decoded feed out
of the garbage collector's reach before normalizing (``gc.freeze()``), which a
bulk job may choose to do; the default is the interpreter's normal behaviour.
The last line reads ``normalize-bench: records_per_s=N ratio_to_json=R peak_mb=M``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

from bench.synthetic import get_iocs_body, synthetic_records
from shared.filters import Filters
from shared.pipeline import prepare_indicators
from shared.report import IndicatorReport
from shared.settings import offline_settings

START = datetime(2026, 11, 1, tzinfo=UTC)


def _build_body(count: int) -> bytes:
    records = synthetic_records(count, seed=20261201, start=START, days=7)
    return json.dumps(get_iocs_body(records)).encode("utf-8")


def _run_json(body: bytes) -> dict[str, float]:
    started = time.perf_counter()
    decoded = json.loads(body)
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "records": len(decoded["data"])}


def _run_pipeline(body: bytes, freeze: bool) -> dict[str, float]:
    # The sync's own pipeline (normalize, filter, merge), with filters that keep
    # every kind and confidence so that all records are normalized in full.
    settings = offline_settings(
        {"INDICATOR_KINDS": "ip,domain,url,hash", "MIN_CONFIDENCE": "0"}
    )
    filters = Filters.from_settings(settings)
    counts = IndicatorReport()
    started = time.perf_counter()
    decoded = json.loads(body)
    if freeze:
        gc.freeze()
    merged = prepare_indicators(decoded["data"], filters, counts)
    duplicates = counts.duplicates_merged
    rejected = counts.invalid + counts.unsupported_types
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": elapsed,
        "records": len(decoded["data"]),
        "kept": len(merged),
        "duplicates": duplicates,
        "rejected": sum(rejected.values()),
        "peak_mb": peak_kb / 1024,
    }


def _child(phase: str, path: str, freeze: bool) -> None:
    with open(path, "rb") as handle:
        body = handle.read()
    result = _run_json(body) if phase == "json" else _run_pipeline(body, freeze)
    print(json.dumps(result))


def _measure(phase: str, path: str, freeze: bool) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.normalize_bench", "--child", phase, path]
    if freeze:
        command.append("--gc-freeze")
    output = subprocess.run(command, check=True, capture_output=True, text=True)
    figures: dict[str, float] = json.loads(output.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs")
    parser.add_argument("--gc-freeze", action="store_true")
    parser.add_argument(
        "--child", nargs=2, metavar=("PHASE", "PATH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], args.child[1], args.gc_freeze)
        return

    started = time.perf_counter()
    body = _build_body(args.records)
    print(
        f"feed: {args.records:,} records, {len(body) / 1e6:.1f} MB "
        f"(built in {time.perf_counter() - started:.1f} s)"
    )
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        handle.write(body)
        path = handle.name
    del body
    try:
        runs = [
            (_measure("json", path, False), _measure("pipeline", path, args.gc_freeze))
            for _ in range(args.repeat)
        ]
    finally:
        os.unlink(path)

    json_seconds = min(run[0]["seconds"] for run in runs)
    pipeline = min((run[1] for run in runs), key=lambda figures: figures["seconds"])
    records_per_s = pipeline["records"] / pipeline["seconds"]
    ratio = pipeline["seconds"] / json_seconds
    print(
        f"json.loads alone:       {json_seconds:7.2f} s  {pipeline['records'] / json_seconds:>10,.0f} records/s"
    )
    print(
        f"loads+normalize+merge:  {pipeline['seconds']:7.2f} s  {records_per_s:>10,.0f} records/s"
    )
    print(
        f"kept {pipeline['kept']:,.0f} after merging {pipeline['duplicates']:,.0f} duplicates; "
        f"rejected {pipeline['rejected']:,.0f}; gc.freeze={'on' if args.gc_freeze else 'off'}"
    )
    print(
        f"normalize-bench: records_per_s={records_per_s:.0f} "
        f"ratio_to_json={ratio:.2f} peak_mb={pipeline['peak_mb']:.0f}"
    )


if __name__ == "__main__":
    main()
