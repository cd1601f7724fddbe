"""Keyset pagination, sorting whitelist, ETag/304 and Idempotency-Key, through a real endpoint
on a real table, on both databases."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Integer, String, delete, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tezgah.core.config import Settings
from tezgah.core.db import SessionDep, UTCDateTime
from tezgah.core.http_cache import conditional_json, etag_for_bytes, if_none_match_matches
from tezgah.core.idempotency import IdempotencyDep, IdempotencyRecord
from tezgah.core.pagination import (
    CursorCodec,
    Page,
    PageParams,
    Sorting,
    page_params,
    paginate,
    set_link_header,
)
from tezgah.core.routing import make_router
from tezgah.main import create_app


class ThingBase(DeclarativeBase):
    pass


class Thing(ThingBase):
    __tablename__ = "test_things"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(50), nullable=False)
    rank: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ThingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    rank: int
    created_at: datetime


class ThingIn(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    rank: int = Field(ge=0)


SORTING = Sorting(
    {"name": Thing.name, "rank": Thing.rank, "created_at": Thing.created_at},
    default="-created_at",
    tiebreaker=Thing.id,
)


def build_router() -> Any:
    router = make_router(prefix="/api/v1/test-things")

    @router.get("", response_model=Page[ThingOut])
    async def list_things(
        request: Request,
        response: Response,
        session: SessionDep,
        params: Annotated[PageParams, Depends(page_params)],
        min_rank: int | None = None,
    ) -> Page[ThingOut]:
        statement = select(Thing)
        if min_rank is not None:
            statement = statement.where(Thing.rank >= min_rank)
        codec: CursorCodec = request.app.state.resources.cursors
        page = await paginate(session, statement, params, SORTING, codec)
        set_link_header(request, response, page.next_cursor)
        return Page[ThingOut](
            items=[ThingOut.model_validate(item) for item in page.items],
            next_cursor=page.next_cursor,
        )

    @router.get("/{thing_id}")
    async def read_thing(thing_id: uuid.UUID, request: Request, session: SessionDep) -> Response:
        thing = await session.get(Thing, thing_id)
        assert thing is not None
        return conditional_json(request, ThingOut.model_validate(thing))

    @router.post("", status_code=201)
    async def create_thing(
        body: ThingIn, session: SessionDep, idempotency: IdempotencyDep
    ) -> Response:
        if (replay := await idempotency.replay()) is not None:
            return replay
        thing = Thing(name=body.name, rank=body.rank, created_at=datetime.now(UTC))
        session.add(thing)
        await session.flush()
        if body.name == "explode-after-insert":
            raise RuntimeError("boom")
        return await idempotency.remember(ThingOut.model_validate(thing), status_code=201)

    return router


@pytest.fixture
async def things_app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    app.include_router(build_router())
    async with LifespanManager(app):
        engine = app.state.resources.database.engine
        async with engine.begin() as connection:
            await connection.run_sync(ThingBase.metadata.create_all)
        try:
            yield app
        finally:
            async with engine.begin() as connection:
                await connection.run_sync(ThingBase.metadata.drop_all)
                await connection.execute(delete(IdempotencyRecord))


@pytest.fixture
async def things_client(things_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=things_app, client=("198.51.100.4", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def seed(app: FastAPI, count: int) -> list[Thing]:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    # Duplicate ranks and timestamps on purpose: the id tie-breaker must keep the order total.
    things = [
        Thing(
            name=f"thing-{index % 7:02d}-{index:03d}",
            rank=index % 5,
            created_at=base + timedelta(minutes=index // 3),
        )
        for index in range(count)
    ]
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        session.add_all(things)
    return things


async def walk(client: httpx.AsyncClient, query: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    url = f"/api/v1/test-things?{query}"
    for _ in range(100):
        response = await client.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        if body["next_cursor"] is None:
            assert "link" not in response.headers
            return items
        link = response.headers["link"]
        assert link.endswith('>; rel="next"')
        url = link[1 : link.index(">")]
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize(
    ("sort", "key"),
    [
        ("", lambda t: (t.created_at, t.id)),
        ("name", lambda t: (t.name, t.id)),
        ("-rank,name", lambda t: (-t.rank, t.name, t.id)),
        ("rank,-created_at", lambda t: (t.rank, -t.created_at.timestamp(), t.id)),
    ],
)
async def test_keyset_walk_returns_every_row_once_in_order(
    things_app: FastAPI, things_client: httpx.AsyncClient, sort: str, key: Any
) -> None:
    things = await seed(things_app, 53)
    query = "limit=7" + (f"&sort={sort}" if sort else "")
    items = await walk(things_client, query)
    assert len(items) == 53
    assert len({item["id"] for item in items}) == 53
    if sort:
        expected = sorted(things, key=key)
    else:
        # Default sort is -created_at; the id tie-breaker follows the last key's direction.
        expected = sorted(things, key=lambda t: (t.created_at, t.id), reverse=True)
    # Compare ids only: UUID ordering differs between databases for the final tie-breaker,
    # so check the order of the sort keys and that the set of rows is complete.
    got_keys = [(item["rank"], item["name"]) for item in items]
    expected_keys = [(thing.rank, thing.name) for thing in expected]
    if sort in ("name",):
        assert got_keys == expected_keys
    else:
        assert sorted(got_keys) == sorted(expected_keys)
        assert_sorted(items, sort or "-created_at")


def assert_sorted(items: list[dict[str, Any]], sort: str) -> None:
    def value(item: dict[str, Any], field: str) -> Any:
        return datetime.fromisoformat(item[field]) if field == "created_at" else item[field]

    fields = [(part.lstrip("-"), part.startswith("-")) for part in sort.split(",")]
    for previous, current in itertools.pairwise(items):
        for field, descending in fields:
            a, b = value(previous, field), value(current, field)
            if a == b:
                continue
            assert (a > b) if descending else (a < b), (field, a, b)
            break


async def test_filters_combine_with_cursor(
    things_app: FastAPI, things_client: httpx.AsyncClient
) -> None:
    await seed(things_app, 30)
    items = await walk(things_client, "limit=4&min_rank=3&sort=name")
    assert items
    assert all(item["rank"] >= 3 for item in items)
    assert len(items) == sum(1 for index in range(30) if index % 5 >= 3)


async def test_tampered_or_foreign_cursor_is_refused(
    things_app: FastAPI, things_client: httpx.AsyncClient
) -> None:
    await seed(things_app, 10)
    first = (await things_client.get("/api/v1/test-things?limit=3&sort=name")).json()
    cursor = first["next_cursor"]
    assert cursor
    # Same cursor, different sort: refused rather than silently skipping rows.
    other_sort = await things_client.get(f"/api/v1/test-things?limit=3&sort=rank&cursor={cursor}")
    assert other_sort.status_code == 400
    assert other_sort.json()["error_code"] == "INVALID_CURSOR"
    flipped = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    for bad in (flipped, "not-a-cursor", "%%%", "eyJ"):
        response = await things_client.get(
            "/api/v1/test-things", params={"sort": "name", "cursor": bad}
        )
        assert response.status_code == 400, bad
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["error_code"] == "INVALID_CURSOR"


async def test_sort_whitelist_and_limit_bounds(things_client: httpx.AsyncClient) -> None:
    response = await things_client.get(
        "/api/v1/test-things?sort=password_hash", headers={"Accept-Language": "tr"}
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "INVALID_SORT"
    assert "sıralanamaz" in body["detail"]
    assert "created_at, name, rank" in body["detail"]
    for limit in ("0", "101", "abc"):
        response = await things_client.get(f"/api/v1/test-things?limit={limit}")
        assert response.status_code == 422
        assert "limit" in response.json()["field_errors"]
    duplicate = await things_client.get("/api/v1/test-things?sort=name,-name")
    assert duplicate.status_code == 400


async def test_etag_and_if_none_match(
    things_app: FastAPI, things_client: httpx.AsyncClient
) -> None:
    things = await seed(things_app, 1)
    url = f"/api/v1/test-things/{things[0].id}"
    first = await things_client.get(url)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag == etag_for_bytes(first.content)
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = await things_client.get(url, headers={"If-None-Match": header})
        assert cached.status_code == 304, header
        assert cached.content == b""
        assert cached.headers["etag"] == etag
    stale = await things_client.get(url, headers={"If-None-Match": '"stale"'})
    assert stale.status_code == 200
    async with things_app.state.resources.database.sessionmaker() as session, session.begin():
        thing = await session.get(Thing, things[0].id)
        assert thing is not None
        thing.rank = 42
    changed = await things_client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


def test_if_none_match_parsing() -> None:
    assert if_none_match_matches('"a", W/"b"', '"b"')
    assert not if_none_match_matches('"a"', '"b"')
    assert not if_none_match_matches(None, '"b"')
    assert not if_none_match_matches("", '"b"')


async def count_things(app: FastAPI) -> int:
    async with app.state.resources.database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Thing)) or 0)


async def test_idempotency_key_replays_the_first_answer(
    things_app: FastAPI, things_client: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "create-thing-1"}
    first = await things_client.post(
        "/api/v1/test-things", json={"name": "a", "rank": 1}, headers=headers
    )
    assert first.status_code == 201
    again = await things_client.post(
        "/api/v1/test-things", json={"name": "a", "rank": 1}, headers=headers
    )
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await count_things(things_app) == 1
    # Without a key every POST creates.
    await things_client.post("/api/v1/test-things", json={"name": "a", "rank": 1})
    assert await count_things(things_app) == 2


async def test_idempotency_key_reused_with_other_body_is_refused(
    things_app: FastAPI, things_client: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "create-thing-2", "Accept-Language": "tr"}
    await things_client.post("/api/v1/test-things", json={"name": "a", "rank": 1}, headers=headers)
    other = await things_client.post(
        "/api/v1/test-things", json={"name": "b", "rank": 1}, headers=headers
    )
    assert other.status_code == 422
    assert other.json()["error_code"] == "IDEMPOTENCY_KEY_REUSED"
    assert (
        other.json()["detail"] != "This Idempotency-Key was already used for a different request."
    )
    assert await count_things(things_app) == 1


async def test_idempotency_keys_are_private_to_the_caller(
    things_app: FastAPI, things_client: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    await things_client.post("/api/v1/test-things", json={"name": "a", "rank": 1}, headers=headers)
    transport = httpx.ASGITransport(app=things_app, client=("192.0.2.99", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        response = await other.post(
            "/api/v1/test-things", json={"name": "a", "rank": 1}, headers=headers
        )
    assert response.status_code == 201
    assert "idempotent-replayed" not in response.headers
    assert await count_things(things_app) == 2


async def test_failed_request_leaves_neither_object_nor_key(
    things_app: FastAPI, things_client: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "will-fail"}
    failed = await things_client.post(
        "/api/v1/test-things", json={"name": "explode-after-insert", "rank": 1}, headers=headers
    )
    assert failed.status_code == 500
    assert await count_things(things_app) == 0
    # The key was rolled back with the row, so the client's retry is processed normally.
    retry = await things_client.post(
        "/api/v1/test-things", json={"name": "fixed", "rank": 1}, headers=headers
    )
    assert retry.status_code == 201


@pytest.mark.parametrize("key", ["", "a" * 256, "has space", "ünicode"])
async def test_invalid_idempotency_key(things_client: httpx.AsyncClient, key: str) -> None:
    response = await things_client.post(
        "/api/v1/test-things",
        json={"name": "a", "rank": 1},
        headers={"Idempotency-Key": key.encode("utf-8")},  # type: ignore[dict-item]
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_IDEMPOTENCY_KEY"
