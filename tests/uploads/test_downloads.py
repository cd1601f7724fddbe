"""Streamed downloads: Content-Disposition, Range parsing, and the HTTP behaviour of
``download_response`` (200/206/304/416, HEAD, If-Range) through a real ASGI app."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response

from tezgah.core.errors import PROBLEM_MEDIA_TYPE, install_exception_handlers
from tezgah.core.storage import LocalBlobStore, iterate_bytes
from tezgah.uploads.downloads import (
    DownloadFile,
    RangeNotSatisfiable,
    content_disposition,
    download_response,
    parse_range,
)

SIZE = 300 * 1024 + 7  # more than one storage chunk, not a round number
MODIFIED = datetime(2025, 2, 3, 4, 5, 6, 789_000, tzinfo=UTC)
MODIFIED_HTTP = "Mon, 03 Feb 2025 04:05:06 GMT"
TURKISH_NAME = "Çerçeve_ığdır şişe.FCStd"
DISPOSITION = re.compile(r'^(attachment|inline); filename="([^"]*)"; filename\*=UTF-8\'\'(\S+)$')


def disposition_parts(value: str) -> tuple[str, str, str]:
    match = DISPOSITION.fullmatch(value)
    assert match, value
    kind, fallback, encoded = match.groups()
    return kind, fallback, unquote(encoded, encoding="utf-8", errors="strict")


# -- content_disposition -----------------------------------------------------------------------


def test_turkish_name_is_intact_in_filename_star() -> None:
    kind, fallback, exact = disposition_parts(content_disposition(TURKISH_NAME))
    assert kind == "attachment"
    assert exact == TURKISH_NAME
    assert fallback == "Cerceve_igdir sise.FCStd"


def test_every_turkish_letter_has_an_ascii_fallback() -> None:
    _, fallback, exact = disposition_parts(content_disposition("çğıİöşü ÇĞÖŞÜ"))
    assert fallback == "cgiIosu CGOSU"
    assert exact == "çğıİöşü ÇĞÖŞÜ"


def test_decomposed_unicode_is_composed_first() -> None:
    """macOS spells "ç" as "c" + U+0327; the header carries the composed letter."""
    _, fallback, exact = disposition_parts(content_disposition("c\u0327erc\u0327eve.FCStd"))
    assert exact == "çerçeve.FCStd"
    assert fallback == "cerceve.FCStd"


def test_other_non_ascii_becomes_underscore_in_fallback_only() -> None:
    _, fallback, exact = disposition_parts(content_disposition("plan 图纸 100%.pdf"))
    assert fallback == "plan __ 100_.pdf"
    assert exact == "plan 图纸 100%.pdf"


def test_inline_disposition() -> None:
    kind, _, exact = disposition_parts(content_disposition("preview.png", inline=True))
    assert (kind, exact) == ("inline", "preview.png")


def test_header_injection_is_neutralised() -> None:
    value = content_disposition("a\r\nSet-Cookie: x")
    assert "\r" not in value
    assert "\n" not in value
    _, fallback, exact = disposition_parts(value)
    assert fallback == exact == "aSet-Cookie: x"


def test_quotes_backslashes_and_controls_are_removed() -> None:
    value = content_disposition('evil"; filename="x.exe\\\x00\x1b\u202egpj.FCStd')
    _, fallback, exact = disposition_parts(value)
    assert '"' not in fallback + exact
    assert "\\" not in fallback + exact
    assert not any(ord(char) < 0x20 or char == "\u202e" for char in exact)
    assert exact == "gpj.FCStd"  # the part after the last (back)slash


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/", "download"),
        ("..", "download"),
        (".hidden", "hidden"),
        ("  ...  .bashrc", "bashrc"),
        ("", "download"),
        ("\r\n\t", "download"),
        ("dir/", "dir"),
    ],
)
def test_paths_and_leading_dots_are_stripped(filename: str, expected: str) -> None:
    _, fallback, exact = disposition_parts(content_disposition(filename))
    assert exact == expected
    assert fallback == expected
    assert "/" not in content_disposition(filename).replace("UTF-8''", "")


def test_very_long_name_is_shortened_keeping_the_extension() -> None:
    _, _, exact = disposition_parts(content_disposition("ş" * 1000 + ".FCStd"))
    assert len(exact) <= 180
    assert exact.endswith("ş.FCStd")


# -- parse_range -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", (0, 0)),
        ("bytes=0-99", (0, 99)),
        ("bytes=10-19", (10, 19)),
        ("bytes=990-", (990, 999)),
        ("bytes=-10", (990, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=500-5000", (500, 999)),
        ("bytes=999-999", (999, 999)),
        ("Bytes=1-2", (1, 2)),
        ("bytes= 1-2 ", (1, 2)),
        ("bytes=0-99999999999999999999999999", (0, 999)),
    ],
)
def test_parse_range_single_ranges(header: str, expected: tuple[int, int]) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "items=0-10",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=a-b",
        "bytes=1-a",
        "bytes=--1",
        "bytes=1 - 2",
        "bytes=+1-2",
        "bytes=20-10",  # last before first: invalid, ignored
        "bytes=0-1,5-6",
        "bytes=0-1,",
        "bytes=-1,-2",
        "0-10",
    ],
)
def test_parse_range_ignores_absent_invalid_and_multiple(header: str | None) -> None:
    assert parse_range(header, 1000) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=1000-", 1000),
        ("bytes=1000-2000", 1000),
        ("bytes=5000-6000", 1000),
        ("bytes=-0", 1000),
        ("bytes=99999999999999999999999999-", 1000),
        ("bytes=0-", 0),
        ("bytes=0-0", 0),
        ("bytes=-1", 0),
    ],
)
def test_parse_range_unsatisfiable_raises_416(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, size)
    assert caught.value.status_code == 416
    assert caught.value.error_code == "RANGE_NOT_SATISFIABLE"
    assert caught.value.headers == {"Content-Range": f"bytes */{size}"}


# -- HTTP --------------------------------------------------------------------------------------


class Files:
    def __init__(self, data: bytes, big: DownloadFile, empty: DownloadFile) -> None:
        self.data = data
        self.big = big
        self.empty = empty


@pytest.fixture
async def files(tmp_path: Path) -> Files:
    blobs = LocalBlobStore(tmp_path / "blobs")
    data = random.Random(11).randbytes(SIZE)
    big = await blobs.put(iterate_bytes(data))
    empty = await blobs.put(iterate_bytes(b""))
    return Files(
        data,
        DownloadFile(big.sha256, big.size, TURKISH_NAME, "application/x-freecad", MODIFIED),
        DownloadFile(empty.sha256, 0, "empty.txt", "text/plain", MODIFIED),
    )


@pytest.fixture
async def client(tmp_path: Path, files: Files) -> AsyncIterator[httpx.AsyncClient]:
    blobs = LocalBlobStore(tmp_path / "blobs")
    app = FastAPI()
    install_exception_handlers(app)

    @app.api_route("/files/{name}", methods=["GET", "HEAD"])
    async def download(request: Request, name: str) -> Response:
        file = files.big if name == "big" else files.empty
        return download_response(request, blobs, file, cache_control="private, max-age=60")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def assert_file_headers(response: httpx.Response, file: DownloadFile) -> None:
    assert response.headers["etag"] == f'"{file.sha256}"'
    assert response.headers["last-modified"] == MODIFIED_HTTP
    assert response.headers["cache-control"] == "private, max-age=60"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-type"] == file.media_type
    _, _, exact = disposition_parts(response.headers["content-disposition"])
    assert exact == file.filename


async def test_full_download(client: httpx.AsyncClient, files: Files) -> None:
    response = await client.get("/files/big")
    assert response.status_code == 200
    assert response.content == files.data
    assert response.headers["content-length"] == str(SIZE)
    assert "content-range" not in response.headers
    assert_file_headers(response, files.big)


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100000-200000", 100_000, 200_000),
        ("bytes=-1000", SIZE - 1000, SIZE - 1),
        ("bytes=262140-", 262_140, SIZE - 1),  # crosses the 256 KiB storage chunk
        ("bytes=0-", 0, SIZE - 1),
        (f"bytes={SIZE - 1}-{SIZE * 2}", SIZE - 1, SIZE - 1),
    ],
)
async def test_range_returns_exact_bytes(
    client: httpx.AsyncClient, files: Files, header: str, start: int, end: int
) -> None:
    response = await client.get("/files/big", headers={"Range": header})
    assert response.status_code == 206
    assert response.content == files.data[start : end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert_file_headers(response, files.big)


async def test_range_past_the_end_is_416_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/files/big", headers={"Range": f"bytes={SIZE}-"})
    assert response.status_code == 416
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    body = response.json()
    assert body["error_code"] == "RANGE_NOT_SATISFIABLE"
    assert body["status"] == 416
    assert str(SIZE) in body["detail"]


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "bytes=9-3", "lines=1-2", "bytes=x"])
async def test_multiple_or_invalid_ranges_get_the_whole_file(
    client: httpx.AsyncClient, files: Files, header: str
) -> None:
    response = await client.get("/files/big", headers={"Range": header})
    assert response.status_code == 200
    assert response.content == files.data


@pytest.mark.parametrize(
    "if_none_match",
    [
        "{etag}",
        "W/{etag}",
        "*",
        '"other", {etag}',
        ' "other" ,W/{etag} ',
    ],
)
async def test_if_none_match_answers_304(
    client: httpx.AsyncClient, files: Files, if_none_match: str
) -> None:
    etag = f'"{files.big.sha256}"'
    headers = {"If-None-Match": if_none_match.format(etag=etag), "Range": "bytes=0-9"}
    response = await client.get("/files/big", headers=headers)
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["last-modified"] == MODIFIED_HTTP
    assert response.headers["cache-control"] == "private, max-age=60"
    assert "content-range" not in response.headers


async def test_if_none_match_other_etag_sends_the_file(
    client: httpx.AsyncClient, files: Files
) -> None:
    # If-Modified-Since would say "not modified", but If-None-Match takes precedence.
    headers = {"If-None-Match": '"stale"', "If-Modified-Since": MODIFIED_HTTP}
    response = await client.get("/files/big", headers=headers)
    assert response.status_code == 200
    assert response.content == files.data


@pytest.mark.parametrize(
    ("since", "status"),
    [
        (MODIFIED_HTTP, 304),
        (format_datetime(MODIFIED + timedelta(days=1), usegmt=True), 304),
        (format_datetime(MODIFIED - timedelta(seconds=1), usegmt=True), 200),
        ("not a date", 200),
    ],
)
async def test_if_modified_since(
    client: httpx.AsyncClient, files: Files, since: str, status: int
) -> None:
    response = await client.get("/files/big", headers={"If-Modified-Since": since})
    assert response.status_code == status
    assert response.content == (b"" if status == 304 else files.data)


async def test_if_range_with_current_etag_allows_the_range(
    client: httpx.AsyncClient, files: Files
) -> None:
    headers = {"Range": "bytes=10-19", "If-Range": f'"{files.big.sha256}"'}
    response = await client.get("/files/big", headers=headers)
    assert response.status_code == 206
    assert response.content == files.data[10:20]


@pytest.mark.parametrize(
    "if_range",
    [
        '"0000000000000000000000000000000000000000000000000000000000000000"',
        "W/{etag}",  # If-Range needs a strong validator
        "Mon, 03 Feb 2025 04:05:05 GMT",
        "garbage",
    ],
)
async def test_if_range_with_stale_validator_sends_the_whole_file(
    client: httpx.AsyncClient, files: Files, if_range: str
) -> None:
    headers = {"Range": "bytes=10-19", "If-Range": if_range.format(etag=f'"{files.big.sha256}"')}
    response = await client.get("/files/big", headers=headers)
    assert response.status_code == 200
    assert response.content == files.data


async def test_if_range_with_the_last_modified_date_allows_the_range(
    client: httpx.AsyncClient, files: Files
) -> None:
    headers = {"Range": "bytes=-3", "If-Range": MODIFIED_HTTP}
    response = await client.get("/files/big", headers=headers)
    assert response.status_code == 206
    assert response.content == files.data[-3:]


async def test_stale_if_range_skips_even_an_unsatisfiable_range(
    client: httpx.AsyncClient, files: Files
) -> None:
    headers = {"Range": f"bytes={SIZE * 2}-", "If-Range": '"stale"'}
    response = await client.get("/files/big", headers=headers)
    assert response.status_code == 200
    assert response.content == files.data


async def test_head_has_the_headers_and_no_body(client: httpx.AsyncClient, files: Files) -> None:
    response = await client.head("/files/big", headers={"Range": "bytes=0-9"})
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(SIZE)
    assert "content-range" not in response.headers
    assert_file_headers(response, files.big)


async def test_head_honours_if_none_match(client: httpx.AsyncClient, files: Files) -> None:
    response = await client.head("/files/big", headers={"If-None-Match": f'"{files.big.sha256}"'})
    assert response.status_code == 304


async def test_zero_byte_file(client: httpx.AsyncClient, files: Files) -> None:
    response = await client.get("/files/empty")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"
    assert response.headers["etag"] == f'"{files.empty.sha256}"'
    assert response.headers["content-type"] == "text/plain"  # no charset appended

    ranged = await client.get("/files/empty", headers={"Range": "bytes=0-"})
    assert ranged.status_code == 416
    assert ranged.headers["content-range"] == "bytes */0"
    assert ranged.headers["content-type"] == PROBLEM_MEDIA_TYPE


async def test_unsafe_media_type_falls_back_to_octet_stream(tmp_path: Path, files: Files) -> None:
    app = FastAPI()
    blobs = LocalBlobStore(tmp_path / "blobs")
    file = DownloadFile(files.big.sha256, SIZE, "x.bin", "text/html\r\nX-Evil: 1", MODIFIED)

    @app.get("/x")
    async def download(request: Request) -> Response:
        return download_response(request, blobs, file, inline=True)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/x", headers={"Range": "bytes=0-0"})
    assert response.status_code == 206
    assert response.headers["content-type"] == "application/octet-stream"
    assert "x-evil" not in response.headers
    assert response.headers["content-disposition"].startswith("inline;")
    assert response.headers["cache-control"] == "private, no-cache"
