r"""Markdown pieces of the hunt pack that carry data: defanged values, cells, fences.

Every value from the feed that lands in the prose goes through ``cell`` (plain
text) or ``code_span`` (a value), so no value can start a heading, close a
table cell or a code fence, or hide characters: controls become visible
``\uXXXX`` text.
"""

from __future__ import annotations

import re

from shared.indicators import Indicator

__all__ = ["cell", "code_span", "defang", "defang_host", "fenced"]

_CELL_ESCAPES = {
    "\\": "\\\\",
    "|": "\\|",
    "`": "\\`",
    "<": "&lt;",
    ">": "&gt;",
    "&": "&amp;",
}


def _visible(text: str) -> str:
    return "".join(
        char if char.isprintable() else f"\\u{ord(char):04x}" for char in text
    )


def defang_host(host: str) -> str:
    """Write a host name or IPv4 address with ``[.]`` so it cannot resolve."""
    return host.replace(".", "[.]")


def defang(indicator: Indicator) -> str:
    """Write the indicator's value so it cannot be clicked or resolved by accident.

    IPs and domains get ``[.]`` (IPv6 ``[:]``), URLs ``hxxp``/``hxxps`` and a
    defanged host; hashes are unchanged.
    """
    if indicator.kind == "ip":
        if ":" in indicator.ioc:
            address = "[" + indicator.ioc.replace(":", "[:]") + "]"
        else:
            address = defang_host(indicator.ioc)
        return f"{address}:{indicator.port}" if indicator.port else address
    if indicator.kind == "domain":
        return defang_host(indicator.ioc)
    if indicator.kind == "url":
        scheme, _, rest = indicator.ioc.partition("://")
        authority, slash, path = rest.partition("/")
        authority = defang_host(authority).replace(":", "[:]")
        return scheme.replace("t", "x", 2) + "://" + authority + slash + path
    return indicator.ioc


def cell(text: str) -> str:
    """Make text safe as Markdown prose or a table cell: on one line, no HTML.

    Emphasis characters are left alone: they can change how a word looks,
    never where a cell, block or line ends.
    """
    return "".join(_CELL_ESCAPES.get(char, char) for char in _visible(text))


def code_span(text: str) -> str:
    """Show a value as inline code, safe in a table cell, whatever it holds."""
    # Inside a code span a backslash is literal, so only the pipe is escaped,
    # and the span's fence is longer than any run of backticks in the value.
    visible = _visible(text)
    runs = [len(run) for run in re.findall(r"`+", visible)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if visible.startswith("`") or visible.endswith("`") else ""
    escaped = visible.replace("|", "\\|")
    return f"{fence}{pad}{escaped}{pad}{fence}"


def fenced(text: str, info: str) -> str:
    """Put text in a code block whose fence no line of the text can close."""
    runs = [len(run) for run in re.findall(r"`+", text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return f"{fence}{info}\n{text}\n{fence}"
