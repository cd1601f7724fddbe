"""File downloads streamed from the blob store: never the whole file in memory.

The blob store is content-addressed, so a file's SHA-256 is its strong entity tag. Conditional
requests and single byte ranges follow RFC 9110: If-None-Match before If-Modified-Since, Range
only for GET and only when If-Range (if sent) still names the current representation. Several
ranges in one request are answered with the whole file, which the RFC allows.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import quote

from fastapi import Request
from starlette.responses import Response, StreamingResponse

from tezgah.core.errors import AppError
from tezgah.core.http_cache import if_none_match_matches
from tezgah.core.i18n import N_
from tezgah.core.storage import BlobStore

DEFAULT_FILENAME = "download"
DEFAULT_MEDIA_TYPE = "application/octet-stream"
MAX_FILENAME_CHARS = 180
MAX_EXTENSION_CHARS = 16
# Digits beyond this are clamped: a 4300-digit number would make int() raise.
MAX_POSITION_DIGITS = 18
BYTE_RANGE = re.compile(r"^(?:(\d+)-(\d*)|-(\d+))$")
TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
MEDIA_TYPE = re.compile(rf"^{TCHARS}/{TCHARS}(?:[ \t]*;[\t\x20-\x7e]*)?$")
PATH_SEPARATORS = re.compile(r"[/\\]")
# Characters that could break out of the header or spoof the name: controls, format characters
# (bidi overrides), line/paragraph separators, lone surrogates.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
TURKISH_TO_ASCII = str.maketrans("çğıİöşüÇĞÖŞÜâîûÂÎÛ", "cgiIosuCGOSUaiuAIU")


class RangeNotSatisfiable(AppError):
    status_code = 416
    error_code = "RANGE_NOT_SATISFIABLE"
    title = N_("Range not satisfiable")
    message = N_("The requested range is outside the file, which is {size} bytes long.")

    def __init__(self, size: int) -> None:
        super().__init__(params={"size": size}, headers={"Content-Range": f"bytes */{size}"})


@dataclass(frozen=True, slots=True)
class DownloadFile:
    sha256: str
    size: int
    filename: str
    media_type: str
    last_modified: datetime


# -- Content-Disposition -----------------------------------------------------------------------


def _shorten(name: str) -> str:
    if len(name) <= MAX_FILENAME_CHARS:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and len(extension) <= MAX_EXTENSION_CHARS:
        return stem[: MAX_FILENAME_CHARS - len(extension) - 1] + "." + extension
    return name[:MAX_FILENAME_CHARS]


def safe_filename(filename: str) -> str:
    """The last path component, without controls, quotes or leading dots; never empty."""
    name = unicodedata.normalize("NFC", filename)  # macOS sends "ç" as "c" + combining cedilla
    name = "".join(char for char in name if unicodedata.category(char) not in UNSAFE_CATEGORIES)
    parts = [part for part in PATH_SEPARATORS.split(name) if part.strip()]
    name = parts[-1] if parts else ""
    name = name.replace('"', "").strip().lstrip(". ").strip()
    return _shorten(name) or DEFAULT_FILENAME


def ascii_filename(name: str) -> str:
    """The ``filename=`` fallback for old clients: Turkish letters lose their marks, other
    non-ASCII characters (and ``%``, which some clients decode) become ``_``."""
    transliterated = name.translate(TURKISH_TO_ASCII)
    return "".join(char if " " <= char <= "~" and char != "%" else "_" for char in transliterated)


def content_disposition(filename: str, *, inline: bool = False) -> str:
    """RFC 6266 with an RFC 5987 ``filename*`` carrying the exact UTF-8 name."""
    name = safe_filename(filename)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_filename(name)}\"; filename*=UTF-8''{quote(name, safe='')}"


# -- Range -------------------------------------------------------------------------------------


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= MAX_POSITION_DIGITS else 10**MAX_POSITION_DIGITS


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range of a single-range ``Range`` header, clamped to the file.

    ``None`` means "send the whole file": no header, another unit, bad syntax or several ranges.
    Raises :class:`RangeNotSatisfiable` for a valid range that selects no byte of the file.
    """
    if not header:
        return None
    unit, equals, spec = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    match = BYTE_RANGE.fullmatch(spec.strip())
    if match is None:  # also "a-b,c-d": several ranges are not worth a multipart body
        return None
    first, last, suffix = match.groups()
    if suffix is not None:
        length = _position(suffix)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(size - length, 0), size - 1
    start = _position(first)
    end = _position(last) if last else None
    if end is not None and end < start:
        return None  # RFC 9110 14.1.1: invalid, so the header is ignored
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, size - 1 if end is None else min(end, size - 1)


# -- Conditional requests ----------------------------------------------------------------------


def _utc_seconds(moment: datetime) -> datetime:
    """HTTP dates have whole seconds; stored naive datetimes are UTC."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.replace(microsecond=0)


def http_date(moment: datetime) -> str:
    return format_datetime(_utc_seconds(moment), usegmt=True)


def parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return _utc_seconds(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError):
        return None


def _not_modified(request: Request, etag: str, last_modified: datetime) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        # When both are sent, If-Modified-Since is ignored (RFC 9110 13.2.2).
        return if_none_match_matches(if_none_match, etag)
    since = parse_http_date(request.headers.get("if-modified-since"))
    return since is not None and _utc_seconds(last_modified) <= since


def _if_range_allows(header: str | None, etag: str, last_modified: datetime) -> bool:
    """If-Range needs a strong match: the exact ETag, or exactly the Last-Modified date."""
    if header is None:
        return True
    header = header.strip()
    if header.startswith(('"', "W/")):
        return header == etag
    return parse_http_date(header) == _utc_seconds(last_modified)


# -- Response ----------------------------------------------------------------------------------


def _media_type(value: str) -> str:
    # Stored metadata must never be able to inject a header.
    return value if MEDIA_TYPE.fullmatch(value) else DEFAULT_MEDIA_TYPE


def _validator_headers(etag: str, file: DownloadFile, cache_control: str) -> dict[str, str]:
    return {
        "ETag": etag,
        "Last-Modified": http_date(file.last_modified),
        "Cache-Control": cache_control,
    }


def _requested_range(request: Request, file: DownloadFile, etag: str) -> tuple[int, int] | None:
    if request.method != "GET":
        return None
    if not _if_range_allows(request.headers.get("if-range"), etag, file.last_modified):
        return None  # the client's partial copy is stale: it gets the whole file
    return parse_range(request.headers.get("range"), file.size)


def download_response(
    request: Request,
    blobs: BlobStore,
    file: DownloadFile,
    *,
    inline: bool = False,
    cache_control: str = "private, no-cache",
) -> Response:
    """A 200, 206 or 304 for ``file``; the body is streamed from ``blobs`` (none for HEAD).

    Raises :class:`RangeNotSatisfiable` (416) for a range outside the file.
    """
    etag = f'"{file.sha256}"'
    validators = _validator_headers(etag, file, cache_control)
    if request.method in ("GET", "HEAD") and _not_modified(request, etag, file.last_modified):
        return Response(status_code=304, headers=validators)
    headers = {
        **validators,
        "Accept-Ranges": "bytes",
        "Content-Type": _media_type(file.media_type),
        "Content-Disposition": content_disposition(file.filename, inline=inline),
        "X-Content-Type-Options": "nosniff",
    }
    byte_range = _requested_range(request, file, etag)
    status_code, start, end = 200, 0, file.size - 1
    if byte_range is not None:
        status_code, (start, end) = 206, byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{file.size}"
    headers["Content-Length"] = str(end - start + 1)
    if request.method == "HEAD" or file.size == 0:
        return Response(status_code=status_code, headers=headers)
    return StreamingResponse(
        blobs.read(file.sha256, start=start, end=end), status_code=status_code, headers=headers
    )
