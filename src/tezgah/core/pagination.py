"""Keyset pagination with opaque cursors and whitelisted sorting.

``sort=-created_at,name`` picks columns from a whitelist; the primary key is always appended as
the final tie-breaker so the order is total. The cursor holds the last row's sort values, the sort
it belongs to, and an HMAC so a client cannot forge or reuse it for another query. Each page is one
indexed range query (no OFFSET), whatever the page number.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from tezgah.core.errors import InvalidCursor, InvalidSort

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
SIGNATURE_BYTES = 12

ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    next_cursor: str | None = None


@dataclass(frozen=True)
class SortKey:
    name: str
    column: InstrumentedAttribute[Any]
    descending: bool


@dataclass(frozen=True)
class PageParams:
    limit: int
    cursor: str | None
    sort: str | None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(max_length=2048, description="`next_cursor` of the previous page.")
    ] = None,
    sort: Annotated[
        str | None, Query(max_length=200, description="Comma-separated fields; '-' = descending.")
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor, sort=sort)


class Sorting:
    """The whitelist of sortable fields of one list endpoint."""

    def __init__(
        self,
        fields: Mapping[str, InstrumentedAttribute[Any]],
        *,
        default: str,
        tiebreaker: InstrumentedAttribute[Any],
    ) -> None:
        self.fields = dict(fields)
        self.default = default
        self.tiebreaker = tiebreaker

    def parse(self, sort: str | None) -> list[SortKey]:
        expression = sort if sort else self.default
        keys: list[SortKey] = []
        seen: set[str] = set()
        for raw in expression.split(","):
            token = raw.strip()
            descending = token.startswith("-")
            name = token.lstrip("-+")
            if name not in self.fields or name in seen:
                raise InvalidSort(
                    params={"field": name[:50], "allowed": ", ".join(sorted(self.fields))}
                )
            seen.add(name)
            keys.append(SortKey(name, self.fields[name], descending))
        tiebreaker_descending = keys[-1].descending
        keys.append(SortKey("__id", self.tiebreaker, tiebreaker_descending))
        return keys


def _signature_of(keys: Sequence[SortKey]) -> str:
    return ",".join(("-" if key.descending else "") + key.name for key in keys)


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"uuid": str(value)}
    if isinstance(value, Decimal):
        return {"dec": str(value)}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        kind, raw = next(iter(value.items()))
        if kind == "dt":
            return datetime.fromisoformat(raw)
        if kind == "uuid":
            return uuid.UUID(raw)
        if kind == "dec":
            return Decimal(raw)
    return value


class CursorCodec:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"tezgah-cursor:" + secret.encode()).digest()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]

    def encode(self, keys: Sequence[SortKey], values: Sequence[Any]) -> str:
        body = {"s": _signature_of(keys), "v": [_encode_value(value) for value in values]}
        payload = json.dumps(body, separators=(",", ":")).encode()
        token = self._sign(payload) + payload
        return base64.urlsafe_b64encode(token).rstrip(b"=").decode()

    def decode(self, cursor: str, keys: Sequence[SortKey]) -> list[Any]:
        try:
            token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            signature, payload = token[:SIGNATURE_BYTES], token[SIGNATURE_BYTES:]
            if not hmac.compare_digest(signature, self._sign(payload)):
                raise InvalidCursor()
            body = json.loads(payload)
            values = [_decode_value(value) for value in body["v"]]
        except (binascii.Error, ValueError, KeyError, TypeError) as exc:
            raise InvalidCursor() from exc
        if body.get("s") != _signature_of(keys) or len(values) != len(keys):
            raise InvalidCursor()
        return values


def keyset_condition(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in the order of ``keys`` (mixed directions allowed):
    (k1 > v1) OR (k1 = v1 AND k2 > v2) OR ... with '<' for descending keys."""
    clauses = []
    for position, key in enumerate(keys):
        equal_prefix = [keys[i].column == values[i] for i in range(position)]
        beyond = key.column < values[position] if key.descending else key.column > values[position]
        clauses.append(and_(*equal_prefix, beyond))
    return or_(*clauses)


def order_by(keys: Sequence[SortKey]) -> list[ColumnElement[Any]]:
    return [key.column.desc() if key.descending else key.column.asc() for key in keys]


async def paginate(
    session: AsyncSession,
    statement: Select[Any],
    params: PageParams,
    sorting: Sorting,
    codec: CursorCodec,
) -> Page[Any]:
    """One page of ORM rows from ``statement`` (which selects a single entity)."""
    keys, statement = _page_statement(statement, params, sorting, codec)
    rows = list((await session.scalars(statement)).all())
    return _page_of(rows, rows, keys, params, codec)


async def paginate_rows(
    session: AsyncSession,
    statement: Select[Any],
    params: PageParams,
    sorting: Sorting,
    codec: CursorCodec,
) -> Page[Any]:
    """Like :func:`paginate` for a statement of plain columns: the items are the rows, which
    must carry the sort columns under their own names (the cursor reads them from there)."""
    keys, statement = _page_statement(statement, params, sorting, codec)
    rows = list((await session.execute(statement)).all())
    return _page_of(rows, rows, keys, params, codec)


def _page_statement(
    statement: Select[Any], params: PageParams, sorting: Sorting, codec: CursorCodec
) -> tuple[list[SortKey], Select[Any]]:
    keys = sorting.parse(params.sort)
    if params.cursor:
        statement = statement.where(keyset_condition(keys, codec.decode(params.cursor, keys)))
    return keys, statement.order_by(*order_by(keys)).limit(params.limit + 1)


def _page_of(
    rows: list[Any],
    entities: list[Any],
    keys: Sequence[SortKey],
    params: PageParams,
    codec: CursorCodec,
) -> Page[Any]:
    has_more = len(rows) > params.limit
    next_cursor = None
    if has_more:
        last = entities[params.limit - 1]
        next_cursor = codec.encode(keys, [getattr(last, key.column.key) for key in keys])
    return Page[Any](items=rows[: params.limit], next_cursor=next_cursor)


def set_link_header(request: Request, response: Response, next_cursor: str | None) -> None:
    """RFC 8288 ``Link: <...>; rel="next"`` keeping the request's other query parameters."""
    if next_cursor is None:
        return
    next_url = request.url.include_query_params(cursor=next_cursor)
    response.headers["Link"] = f'<{next_url}>; rel="next"'


async def paginate_request(
    request: Request,
    response: Response,
    session: AsyncSession,
    statement: Select[Any],
    params: PageParams,
    sorting: Sorting,
    *,
    whole_rows: bool = False,
) -> Page[Any]:
    """One page for a list endpoint: the app's cursor codec, and the ``Link`` header set.
    ``whole_rows``: see :func:`paginate_rows`."""
    codec: CursorCodec = request.app.state.resources.cursors
    pager = paginate_rows if whole_rows else paginate
    page = await pager(session, statement, params, sorting, codec)
    set_link_header(request, response, page.next_cursor)
    return page
