"""Keyed ThreatFox export files (CSV or JSON, zipped or plain) read as get_iocs records.

Every record comes out with the ``get_iocs`` field names and formats (``id``,
``ioc``, ``first_seen`` as ``YYYY-MM-DD HH:MM:SS UTC``, ``tags`` as a list, ...), so
``shared.normalize.normalize_record`` treats export rows and API rows alike.
Values that cannot be converted (a non-numeric confidence, an odd timestamp) are
passed on unchanged for ``normalize_record`` to reject and count; so are JSON
elements that are not objects and CSV rows whose field count does not match the
header (as the raw list of fields).

Unreadable files raise ``ThreatFoxError``: a zip without exactly one ``.csv`` or
``.json`` member, a zip member that fails its checksum, a body that is not UTF-8,
a CSV with data but no header line, a JSON top level that is not an object.
Readable but suspicious files come back with ``complete=False`` and the reasons in
``problems``: the CSV trailer ``# Number of entries: N`` missing or disagreeing with
the rows read, CSV rows of the wrong width or JSON entries that are not
objects, a zip cut short (the rows before the cut are read
from its first member), a JSON body cut short (the entries before the cut are
kept). A caller must not reconcile removals against an incomplete export.

Export URLs carry the Auth-Key in their path: ``redact_export_url`` is used for
every log line and message, and httpx's own request log is filtered likewise.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import struct
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from shared.errors import ThreatFoxError
from shared.http_retry import (
    RetryPolicy,
    TransientFailure,
    check_status,
    content_type,
    retry_transient,
    send,
)

__all__ = ["ExportResult", "fetch_export", "parse_export", "redact_export_url"]

logger = logging.getLogger(__name__)

ZIP_MAGIC = b"PK\x03\x04"
REDACTED = "<redacted>"
NULL_TEXTS = frozenset({"", "None"})
RECORD_FIELDS = (
    "id",
    "ioc",
    "ioc_type",
    "threat_type",
    "malware",
    "malware_printable",
    "malware_alias",
    "first_seen",
    "last_seen",
    "confidence_level",
    "reference",
    "tags",
    "reporter",
    "is_compromised",
)
# Export column -> get_iocs field. The get_iocs names map to themselves so an
# export that already uses them is read too; unknown columns are ignored.
FIELD_FOR_COLUMN = {
    "first_seen_utc": "first_seen",
    "ioc_id": "id",
    "ioc_value": "ioc",
    "fk_malware": "malware",
    "last_seen_utc": "last_seen",
    **{name: name for name in RECORD_FIELDS},
}
# HTTP libraries log request URLs; these loggers get the redacting filter.
HTTP_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2")

_EXPORT_KEY = re.compile(r"(/exports/)[^/?#]+")
# Keys seen by fetch_export: a mirror or proxy URL may carry the key anywhere.
_SECRETS: set[str] = set()
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_TRAILER = re.compile(r"#\s*Number of entries:\s*([\d,]+)\s*", re.IGNORECASE)
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_STORED, _DEFLATED = 0, 8


@dataclass(frozen=True)
class ExportResult:
    """An export file read into get_iocs-shaped records.

    Attributes
    ----------
    records : list
        One record per IOC, in file order; normally dicts (see the module notes).
    declared_count : int or None
        The CSV trailer's entry count; None for JSON or when the trailer is missing.
    complete : bool
        False when anything suggests rows are missing; see ``problems``.
    format : str
        ``"csv"`` or ``"json"``.
    problems : tuple of str
        Why the file is not complete, for the run report.
    """

    records: list[Any]
    declared_count: int | None
    complete: bool
    format: str
    problems: tuple[str, ...] = ()


def redact_export_url(url: str) -> str:
    """Replace the key segment of an export URL (``/exports/<KEY>/``) with a marker.

    Parameters
    ----------
    url : str
        An export URL, or any text that may contain one.

    Returns
    -------
    str
        The text with every ``/exports/<segment>`` replaced by ``/exports/<redacted>``,
        and every key given to ``fetch_export`` replaced wherever it appears.
    """
    text = _EXPORT_KEY.sub(r"\1" + REDACTED, url)
    for secret in _SECRETS:
        text = text.replace(secret, REDACTED)
    return text


class _RedactExportUrls(logging.Filter):
    """Redact export URLs in records that HTTP libraries log at INFO and DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/exports/" in message or any(secret in message for secret in _SECRETS):
            record.msg = redact_export_url(message)
            record.args = None
        return True


def _install_log_redaction() -> None:
    # Logger filters are not inherited, so each logger that can print a URL gets it.
    for name in HTTP_LOGGERS:
        http_logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactExportUrls) for f in http_logger.filters):
            http_logger.addFilter(_RedactExportUrls())


_install_log_redaction()


def _is_null(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in NULL_TEXTS)


def _text(value: object) -> object:
    # The hot path of a large export: one strip per value.
    if isinstance(value, str):
        value = value.strip()
        return None if value in NULL_TEXTS else value
    return value


def _timestamp(value: object) -> object:
    # Exports drop the " UTC" that get_iocs writes; add it back when the shape fits.
    value = _text(value)
    if isinstance(value, str) and _TIMESTAMP.fullmatch(value):
        return f"{value} UTC"
    return value


def _integer(value: object) -> object:
    value = _text(value)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value


def _flag(value: object) -> object:
    value = _text(value)
    if isinstance(value, str) and value.lower() in {"true", "1"}:
        return True
    if isinstance(value, str) and value.lower() in {"false", "0"}:
        return False
    return value


def _tags(value: object) -> object:
    if _is_null(value):
        return None
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return value
    tags = [tag.strip() for tag in value if isinstance(tag, str) and not _is_null(tag)]
    return tags or None


CONVERTERS: dict[str, Callable[[object], object]] = {
    "first_seen": _timestamp,
    "last_seen": _timestamp,
    "confidence_level": _integer,
    "is_compromised": _flag,
    "tags": _tags,
}


_Column = tuple[str, Callable[[object], object]]
# Export column -> (get_iocs field, converter), looked up once per column.
COLUMNS: dict[str, _Column] = {
    column: (name, CONVERTERS.get(name, _text))
    for column, name in FIELD_FOR_COLUMN.items()
}


def _record(fields: Iterable[tuple[str, object]]) -> dict[str, Any]:
    # Every get_iocs field is present; a column the export lacks reads as None.
    record: dict[str, Any] = dict.fromkeys(RECORD_FIELDS)
    for column, value in fields:
        known = COLUMNS.get(column.strip())
        if known is not None:
            record[known[0]] = known[1](value)
    return record


def _row_reader(header: list[str]) -> Callable[[list[str]], dict[str, Any]]:
    # Resolve the header once; each row then only converts the known columns.
    plan = [
        (index, *COLUMNS[column])
        for index, column in enumerate(header)
        if column in COLUMNS
    ]

    def read(row: list[str]) -> dict[str, Any]:
        record: dict[str, Any] = dict.fromkeys(RECORD_FIELDS)
        for index, name, convert in plan:
            record[name] = convert(row[index])
        return record

    return read


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        message = f"export is not UTF-8 text (bad byte at offset {exc.start})"
        raise ThreatFoxError(message) from None


def _salvage_truncated_zip(content: bytes) -> bytes:
    # A cut-off zip has no central directory, so zipfile cannot open it; the
    # first member's local header still tells where its data starts.
    if len(content) < _LOCAL_HEADER.size:
        raise ThreatFoxError("export zip is cut off inside its first header")
    fields = _LOCAL_HEADER.unpack_from(content)
    method, compressed_size, name_length, extra_length = (
        fields[3],
        fields[7],
        fields[9],
        fields[10],
    )
    start = _LOCAL_HEADER.size + name_length + extra_length
    data = content[start:]

    if method == _STORED:
        raw = data[:compressed_size] if compressed_size else data
    elif method == _DEFLATED:
        try:
            raw = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data)
        except zlib.error as exc:
            raise ThreatFoxError(f"export zip is corrupt: {exc}") from None
    else:
        raise ThreatFoxError(f"export zip uses compression method {method}")
    return raw


def _unzip(content: bytes) -> tuple[bytes, bool]:
    """Return the single member's bytes, and whether the archive was cut off."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile:
        return _salvage_truncated_zip(content), True

    with archive:
        members = [
            info
            for info in archive.infolist()
            if info.filename.lower().endswith((".csv", ".json"))
        ]
        if len(members) != 1:
            names = [info.filename for info in archive.infolist()]
            message = f"export zip must hold one .csv or .json file, found {names}"
            raise ThreatFoxError(message)
        try:
            return archive.read(members[0]), False
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            message = f"export zip member {members[0].filename} is corrupt: {exc}"
            raise ThreatFoxError(message) from None


def _csv_header(line: str) -> list[str]:
    names = next(csv.reader([line], skipinitialspace=True))
    return [name.strip() for name in names]


def _parse_csv(text: str, problems: list[str]) -> ExportResult:
    header: list[str] | None = None
    declared: int | None = None
    data_lines: list[str] = []

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            data_lines.append(line)
            continue
        trailer = _TRAILER.fullmatch(stripped)
        if trailer:
            declared = int(trailer.group(1).replace(",", ""))
        # The header is the last quoted comment line before the first data row.
        comment = stripped[1:].strip()
        if not data_lines and comment.startswith('"'):
            header = _csv_header(comment)

    if header is None or "ioc_value" not in header:
        if data_lines:
            raise ThreatFoxError("export CSV has data rows but no header line")
        header = []

    records: list[Any] = []
    malformed = 0
    read = _row_reader(header)
    for row in csv.reader(data_lines, skipinitialspace=True):
        if len(row) != len(header):
            malformed += 1
            records.append(row)
            continue
        records.append(read(row))

    if malformed:
        problems.append(
            f"{malformed} row(s) do not have the header's {len(header)} fields"
        )
    if declared is None:
        problems.append("no '# Number of entries' trailer")
    elif declared != len(records):
        problems.append(
            f"trailer declares {declared} entries but {len(records)} were read"
        )
    return ExportResult(records, declared, not problems, "csv", tuple(problems))


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _salvage_json_object(text: str) -> dict[str, Any]:
    # Read "key": value pairs one by one, stopping at the first that does not parse.
    decoder = json.JSONDecoder()
    entries: dict[str, Any] = {}
    position = _skip_space(text, 0) + 1
    try:
        while True:
            position = _skip_space(text, position)
            if text[position] == "}":
                return entries
            key, position = decoder.raw_decode(text, position)
            position = _skip_space(text, position)
            if not isinstance(key, str) or text[position] != ":":
                return entries
            value, position = decoder.raw_decode(text, _skip_space(text, position + 1))
            entries[key] = value
            position = _skip_space(text, position)
            if text[position] == ",":
                position += 1
    except (ValueError, IndexError):
        return entries


def _json_records(entries: dict[str, Any]) -> list[Any]:
    records: list[Any] = []
    for ioc_id, value in entries.items():
        # Each value should be a list holding one record; a bare object is accepted.
        for element in value if isinstance(value, list) else [value]:
            if isinstance(element, dict):
                records.append(_record([*element.items(), ("ioc_id", ioc_id)]))
            else:
                records.append(element)
    return records


def _parse_json(text: str, problems: list[str]) -> ExportResult:
    try:
        # The text starts with "{", so a successful parse is an object.
        entries: dict[str, Any] = json.loads(text)
    except ValueError:
        entries = _salvage_json_object(text)
        problems.append(
            f"JSON body is cut off or malformed; {len(entries)} entries read before it"
        )
    records = _json_records(entries)

    # Like a CSV row of the wrong width, a non-object entry makes the file suspect.
    strays = sum(1 for record in records if not isinstance(record, dict))
    if strays:
        problems.append(f"{strays} JSON entries are not objects")
    return ExportResult(records, None, not problems, "json", tuple(problems))


def parse_export(content: bytes) -> ExportResult:
    """Read an export file: zip or plain (by magic bytes), then JSON or CSV.

    Parameters
    ----------
    content : bytes
        The downloaded file.

    Returns
    -------
    ExportResult
        Records in get_iocs shape, the declared count and whether the file is
        complete.

    Raises
    ------
    ThreatFoxError
        When the file cannot be read at all (see the module notes).
    """
    problems: list[str] = []
    cut = False
    if content.startswith(ZIP_MAGIC):
        content, cut = _unzip(content)

    if cut:
        problems.append("zip archive is cut off; read what came before the cut")
        # The cut may split a UTF-8 sequence; only the tail can be damaged.
        text = content.decode("utf-8-sig", errors="ignore")
    else:
        text = _decode(content)

    start = text.lstrip()[:1]
    if not start:
        raise ThreatFoxError("export is empty")
    if start == "[":
        raise ThreatFoxError("export JSON is a list, not an object keyed by id")
    if start == "{":
        return _parse_json(text, problems)
    if cut:
        # The last row was probably cut in half; keep whole lines only.
        text = text[: text.rfind("\n") + 1]
    return _parse_csv(text, problems)


def _download(client: httpx.Client, url: str, target: str) -> bytes:
    request = client.build_request("GET", url)
    logger.debug("GET %s", redact_export_url(url))

    response = send(client, request, redact=redact_export_url)
    check_status(response, target)

    # A proxy's HTML page or an empty 200 is a fault, never an empty export.
    body = response.content
    received = content_type(response)
    if not body.strip():
        raise TransientFailure(f"HTTP {response.status_code} with an empty body")
    if body.lstrip()[:1] == b"<":
        reason = (
            f"HTTP {response.status_code} with an HTML body (content type {received})"
        )
        raise TransientFailure(reason)
    return body


def fetch_export(
    url: str,
    *,
    timeout_seconds: float = 60,
    transport: httpx.BaseTransport | None = None,
    max_attempts: int = 5,
    max_total_seconds: float = 120,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    secret: str | None = None,
) -> ExportResult:
    """Download and read a keyed export, retrying like the API client.

    Parameters
    ----------
    url : str
        The keyed export URL; a secret, only ever shown redacted.
    timeout_seconds : float
        HTTP timeout of one attempt.
    transport : httpx.BaseTransport, optional
        Test seam.
    max_attempts, max_total_seconds : int, float
        Retry bounds; see ``shared.threatfox.RetryPolicy``.
    sleep, clock : callable
        Injected by tests.
    secret : str, optional
        The Auth-Key inside ``url``; redacted wherever the URL is shown, even
        when it is not in the usual ``/exports/<KEY>/`` place.

    Returns
    -------
    ExportResult
        The export; check ``complete`` before reconciling against it.

    Raises
    ------
    ThreatFoxAuthError, ThreatFoxRequestError, ThreatFoxUnavailableError,
    ThreatFoxError
        As for the API client, plus unreadable files.
    """
    if secret:
        _SECRETS.add(secret)
    policy = RetryPolicy(
        max_attempts=max_attempts,
        max_total_seconds=max_total_seconds,
        sleep=sleep,
        clock=clock,
    )
    target = f"ThreatFox export {redact_export_url(url)}"

    with httpx.Client(
        timeout=timeout_seconds, transport=transport, follow_redirects=True
    ) as client:
        content, attempts = retry_transient(
            lambda: _download(client, url, target), policy=policy, target=target
        )
    result = parse_export(content)

    logger.info(
        "%s: %s, %d records, %d bytes, declared %s, %d attempt(s)",
        target,
        result.format,
        len(result.records),
        len(content),
        result.declared_count,
        attempts,
    )
    if not result.complete:
        logger.warning("%s is incomplete: %s", target, "; ".join(result.problems))
    return result
