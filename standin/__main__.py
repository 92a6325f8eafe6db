"""Run the stand-ins standalone: python -m standin --feed FILE --port N --auth-key KEY."""

from __future__ import annotations

import argparse
from datetime import datetime

from standin.sentinel import SentinelState
from standin.server import serve
from standin.threatfox import ThreatFoxState


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m standin",
        description="Local stand-in for the ThreatFox API and the Sentinel management API.",
    )
    parser.add_argument("--feed", help="get_iocs response or list of records (JSON)")
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--auth-key", default="test-auth-key")
    parser.add_argument(
        "--now",
        help="clock for get_iocs 'days' (ISO 8601); omitted: serve every record",
    )
    parser.add_argument("--log-level", default="info")
    return parser.parse_args()


def main() -> None:
    arguments = _arguments()
    threatfox = ThreatFoxState(arguments.auth_key)
    if arguments.feed:
        threatfox.load_feed(arguments.feed)
    if arguments.now:
        threatfox.now = datetime.fromisoformat(arguments.now)
    serve(
        threatfox,
        SentinelState(),
        host=arguments.host,
        port=arguments.port,
        log_level=arguments.log_level,
    )


if __name__ == "__main__":
    main()
