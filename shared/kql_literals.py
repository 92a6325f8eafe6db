r"""KQL literals for values that come from data: the one way a value enters a query.

``kql_string_literal`` writes any Python string as a double-quoted KQL string
literal whose text is printable ASCII only:

- ``\`` and ``"`` are escaped with a backslash, so nothing can end the literal;
- newline, carriage return and tab use ``\n``, ``\r`` and ``\t`` (documented
  in the Kusto "string data type" page);
- every other character outside printable ASCII (controls, NUL, DEL, all
  non-ASCII, bidi overrides) becomes ``\uXXXX``, a UTF-16 code unit, so a
  character outside the BMP becomes its surrogate pair. Microsoft's parser
  (Kusto.Language) decodes these; the docs page does not list ``\u``, but even
  an engine that did not decode it could only mis-read the value, never leave
  the literal, because a backslash is always followed by a character that
  cannot close the string.

Printable-ASCII output also keeps invisible or reordering characters (Trojan
Source style) out of the Markdown that carries the queries.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["kql_datetime_literal", "kql_string_literal"]

_NAMED_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    if " " <= char <= "~":
        return char
    # UTF-16 code units: one for the BMP, a surrogate pair above it.
    encoded = char.encode("utf-16-be")
    units = (
        int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)
    )
    return "".join(f"\\u{unit:04x}" for unit in units)


def kql_string_literal(value: str) -> str:
    """Return ``value`` as a KQL string literal that parses back to exactly ``value``.

    Parameters
    ----------
    value
        Any text, including quotes, backslashes, control characters and
        non-ASCII characters.

    Returns
    -------
    str
        A double-quoted literal made of printable ASCII only.
    """
    if not isinstance(value, str):
        raise TypeError(f"expected a str, got {type(value).__name__}")
    return '"' + "".join(_escape_char(char) for char in value) + '"'


def kql_datetime_literal(moment: datetime) -> str:
    """Return ``datetime(2026-05-22T07:02:44Z)`` for an aware time, in UTC."""
    if moment.tzinfo is None:
        raise ValueError("a KQL datetime must be built from an aware datetime")
    return "datetime(" + moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + ")"
