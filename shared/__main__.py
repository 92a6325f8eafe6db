"""Command line: ``python -m shared sync | export | huntpack``.

Settings come from the environment, or from a JSON file shaped like
local.settings.json (``--settings FILE``; its ``Values`` object is used).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from shared.errors import ConfigError, SyncError, SyncLockedError
from shared.pipeline import desired_rows, feed_indicators, load_feed_file
from shared.settings import Settings, offline_settings
from shared.state import StateStore
from shared.sync import SyncOptions, run_sync
from shared.watchlists import format_time, parse_time, render_csv, watchlist_specs

logger = logging.getLogger("shared")

_NOISY_LOGGERS = ("azure", "httpx", "httpcore", "uvicorn")


def _settings_mapping(path: str | None) -> dict[str, str]:
    mapping = dict(os.environ)
    if path:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        values = document.get("Values", document)
        mapping.update({str(key): str(value) for key, value in values.items()})
    return mapping


def _as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _sync(args: argparse.Namespace) -> int:
    settings = Settings.from_mapping(_settings_mapping(args.settings))
    options = SyncOptions(
        dry_run=args.dry_run,
        days=args.days,
        manage_rules=False if args.no_rules else None,
        now=_as_of(args.as_of),
        state_store=StateStore.from_settings(settings),
    )
    report = run_sync(settings, options)
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.status == "ok" else 1


def _export(args: argparse.Namespace) -> int:
    from shared.rules import arm_template

    settings = offline_settings(_settings_mapping(args.settings))
    now = _as_of(args.as_of) or datetime.now(UTC)
    indicators, report = feed_indicators(load_feed_file(Path(args.feed)), settings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for spec in watchlist_specs(settings).values():
        rows = desired_rows(spec, indicators, report)
        valid = [row for row in rows if (parse_time(row["ValidUntil"]) or now) > now]
        path = out / f"{spec.alias}.csv"
        path.write_text(render_csv(spec, valid), encoding="utf-8", newline="")
        expired = len(rows) - len(valid)
        note = (
            f" ({expired} already past ValidUntil as of {format_time(now)} left out; replay an old feed with --as-of)"
            if expired
            else ""
        )
        print(f"{path}: {len(valid)} rows{note}")
    template = out / "analytics-rules.json"
    rules = arm_template(settings)
    template.write_text(json.dumps(rules, indent=2) + "\n", encoding="utf-8")
    print(f"{template}: {len(rules['resources'])} analytics rules")
    return 0


def _huntpack(args: argparse.Namespace) -> int:
    from shared.huntpack import build_packs
    from shared.pipeline import fetch_indicators

    if args.feed:
        settings = offline_settings(_settings_mapping(args.settings))
        indicators, _report = feed_indicators(load_feed_file(Path(args.feed)), settings)
    else:
        settings = Settings.from_mapping(_settings_mapping(args.settings))
        indicators = fetch_indicators(settings, days=args.days)
    packs = build_packs(
        indicators,
        settings,
        malware=args.malware,
        all_families=args.all,
        generated_at=datetime.now(UTC),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, markdown in packs.items():
        (out / name).write_text(markdown, encoding="utf-8")
        print(out / name)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__)
    parser.add_argument(
        "--settings", help="JSON settings file (local.settings.json shape)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    commands = parser.add_subparsers(dest="command", required=True)

    sync = commands.add_parser("sync", help="run one sync, as the timer does")
    sync.add_argument(
        "--dry-run", action="store_true", help="plan and report, write nothing"
    )
    sync.add_argument(
        "--days", type=int, choices=range(1, 8), help="override the feed window"
    )
    sync.add_argument(
        "--no-rules", action="store_true", help="leave analytics rules alone"
    )
    sync.add_argument(
        "--as-of", help="replay as of this UTC time (for old sample feeds)"
    )
    sync.set_defaults(run=_sync)

    export = commands.add_parser(
        "export", help="feed file -> watchlist CSVs and rules template"
    )
    export.add_argument("--feed", required=True, help="a ThreatFox get_iocs JSON file")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument(
        "--as-of", help="judge expiry as of this UTC time (default: now)"
    )
    export.set_defaults(run=_export)

    huntpack = commands.add_parser(
        "huntpack", help="Markdown hunt pack per malware family"
    )
    family = huntpack.add_mutually_exclusive_group(required=True)
    family.add_argument("--malware", help="family name, Malpedia id or alias")
    family.add_argument("--all", action="store_true", help="every family in the window")
    huntpack.add_argument(
        "--feed", help="a get_iocs JSON file (default: fetch from ThreatFox)"
    )
    huntpack.add_argument(
        "--days", type=int, choices=range(1, 8), help="feed window to fetch"
    )
    huntpack.add_argument("--out", required=True, help="output folder")
    huntpack.set_defaults(run=_huntpack)
    return parser


class _QuietLibraries(logging.Filter):
    """Hide the HTTP libraries' per-request INFO lines unless --verbose."""

    def filter(self, record: logging.LogRecord) -> bool:
        noisy = record.name.startswith(_NOISY_LOGGERS)
        return record.levelno >= logging.WARNING or not noisy


def _configure_logging(verbose: bool) -> None:
    # A filter on our own handler, not logger levels: changing the levels of
    # library loggers would outlive this call (and silence -v debugging).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    if not verbose:
        handler.addFilter(_QuietLibraries())
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, handlers=[handler]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        code: int = args.run(args)
    except SyncLockedError as error:
        logger.error("%s", error)
        return 3
    except (ConfigError, SyncError, ValueError, OSError) as error:
        logger.error("%s", error)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
