"""ETag / If-None-Match: a read answers 304 Not Modified when the client's copy is current."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from starlette.responses import Response

ETAG_HASH_CHARS = 32


def etag_for_bytes(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:ETAG_HASH_CHARS] + '"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def if_none_match_matches(header: str | None, etag: str) -> bool:
    """Weak comparison (RFC 9110 13.1.2): ``W/"x"`` matches ``"x"``; ``*`` matches anything."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    wanted = _opaque(etag)
    return any(_opaque(candidate) == wanted for candidate in header.split(","))


def conditional_json(
    request: Request,
    content: Any,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    cache_control: str = "private, no-cache",
) -> Response:
    """JSON with an ETag of its exact bytes, or an empty 304 when ``If-None-Match`` matches."""
    body = JSONResponse(jsonable_encoder(content)).body
    return conditional_body(
        request, bytes(body), status_code=status_code, headers=headers, cache_control=cache_control
    )


def conditional_body(
    request: Request,
    body: bytes,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    cache_control: str = "private, no-cache",
    media_type: str = "application/json",
) -> Response:
    """Like :func:`conditional_json` for a body already serialised (a Pydantic model's
    ``model_dump_json()`` is many times faster than encoding it again)."""
    etag = etag_for_bytes(body)
    validators = {"ETag": etag, "Cache-Control": cache_control, **(headers or {})}
    if if_none_match_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=validators)
    return Response(body, status_code=status_code, headers=validators, media_type=media_type)
