"""The design list: filters, full-text search, sorting with keyset pages, a constant number of
SQL statements per page, and the cached anonymous list.

Every test runs on both backends; the database is shared by the session's tests, so each test
narrows the list to its own people's workspaces.
"""

from __future__ import annotations

import contextvars
import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import bindparam, event, update

from tests.auth.conftest import Account, register
from tests.designs.conftest import STEP_FILE, add_file, make_superuser
from tests.designs.test_designs import (
    API,
    EN,
    TR,
    create_category,
    create_design,
    ids,
    list_ids,
    problem,
    unique_stl,
)
from tezgah.designs import service
from tezgah.designs.models import (
    Category,
    Design,
    DesignCategory,
    DesignTag,
    DesignVersion,
    Review,
)

# Seeding rows directly ------------------------------------------------------------------------


@dataclass
class Seed:
    """One design to write with the ORM (with the rows a list page shows)."""

    name: str
    created_at: datetime
    updated_at: datetime | None = None
    rating_count: int = 0
    rating_avg: float = 0.0
    tags: list[str] = field(default_factory=list)
    category_ids: list[uuid.UUID] = field(default_factory=list)
    with_version: bool = True
    visibility: str = "public"
    id: uuid.UUID = field(default_factory=uuid.uuid4)


async def seed_designs(
    app: FastAPI, owner: Account, seeds: list[Seed], reviewer: Account | None = None
) -> None:
    """Write designs of ``owner``'s personal workspace, each (optionally) with a version, its
    tags and categories, and a review by ``reviewer``; search text as the service writes it."""
    workspace_id = uuid.UUID(owner.personal_workspace_id)
    owner_id = uuid.UUID(owner.id)
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        session.add_all(
            Design(
                id=seed.id,
                workspace_id=workspace_id,
                slug=f"seed-{seed.id.hex}",
                name=seed.name,
                description="tohum",
                visibility=seed.visibility,
                material_hints=[],
                created_by_id=owner_id,
                rating_count=seed.rating_count,
                rating_sum=round(seed.rating_avg * seed.rating_count),
                rating_avg=seed.rating_avg,
                search_text=service.search_text(seed.name, "tohum", seed.tags),
                created_at=seed.created_at,
                updated_at=seed.updated_at or seed.created_at,
            )
            for seed in seeds
        )
        await session.flush()
        versions: dict[uuid.UUID, uuid.UUID] = {}
        for seed in seeds:
            session.add_all(DesignTag(design_id=seed.id, tag=tag) for tag in seed.tags)
            session.add_all(
                DesignCategory(design_id=seed.id, category_id=category_id)
                for category_id in seed.category_ids
            )
            if reviewer is not None:
                session.add(
                    Review(design_id=seed.id, user_id=uuid.UUID(reviewer.id), rating=4, body="iyi")
                )
            if seed.with_version:
                version_id = versions[seed.id] = uuid.uuid4()
                session.add(
                    DesignVersion(
                        id=version_id,
                        design_id=seed.id,
                        number=1,
                        author_id=owner_id,
                        filename="tohum.stl",
                        size=100,
                        sha256=hashlib.sha256(seed.id.bytes).hexdigest(),
                        media_type="model/stl",
                        format="stl",
                        created_at=seed.created_at,
                    )
                )
        await session.flush()
        if versions:
            # updated_at is given again: the column's onupdate would move it otherwise.
            table = Design.__table__
            await session.execute(
                update(table)
                .where(table.c.id == bindparam("design_id"))
                .values(
                    current_version_id=bindparam("version_id"),
                    version_count=1,
                    updated_at=bindparam("stamp"),
                ),
                [
                    {
                        "design_id": seed.id,
                        "version_id": versions[seed.id],
                        "stamp": seed.updated_at or seed.created_at,
                    }
                    for seed in seeds
                    if seed.id in versions
                ],
            )


async def seed_categories(app: FastAPI, count: int) -> list[uuid.UUID]:
    made = [uuid.uuid4() for _ in range(count)]
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        session.add_all(
            Category(id=i, slug=f"s-{i.hex}", name_en=f"Cat {n}", name_tr=f"Kat {n}", position=n)
            for n, i in enumerate(made)
        )
    return made


# Filters -----------------------------------------------------------------------------------------


async def test_filters_narrow_the_list(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    carol = await register(client, display_name="Carol")
    first = await create_design(client, alice, name="Birinci", tags=["Çelik", "cnc"])
    second = await create_design(client, alice, name="İkinci", tags=["alüminyum"])
    third = await create_design(client, alice, name="Üçüncü", visibility="unlisted")
    bobs = await create_design(client, bob, name="Bobun", tags=["çelik"])
    assert (await add_file(client, alice, first["id"], unique_stl())).status_code == 201
    assert (await add_file(client, alice, second["id"], STEP_FILE, "b.step")).status_code == 201
    # The format is the current version's: a later STEP makes the third design a STEP one.
    assert (await add_file(client, alice, third["id"], unique_stl())).status_code == 201
    assert (await add_file(client, alice, third["id"], STEP_FILE, "c.stp")).status_code == 201
    for who, design, rating in ((bob, first, 5), (carol, first, 4), (bob, second, 2)):
        response = await client.post(
            f"{API}/designs/{design['id']}/reviews", json={"rating": rating}, headers=who.headers
        )
        assert response.status_code == 201, response.text

    scope = {"workspace_id": alice.personal_workspace_id}
    everything = [third["id"], second["id"], first["id"]]  # newest first
    assert await list_ids(client, alice.headers, **scope) == everything
    assert await list_ids(client, bob.headers, **scope) == [second["id"], first["id"]]
    assert await list_ids(client, alice.headers, workspace_id=bob.personal_workspace_id) == [
        bobs["id"]
    ]
    assert await list_ids(client, alice.headers, tag="ÇELİK", **scope) == [first["id"]]
    assert await list_ids(client, alice.headers, tag="Alüminyum", **scope) == [second["id"]]
    assert await list_ids(client, alice.headers, tag="çeli", **scope) == []
    assert await list_ids(client, alice.headers, format="stl", **scope) == [first["id"]]
    assert await list_ids(client, alice.headers, format="step", **scope) == [
        third["id"],
        second["id"],
    ]
    assert await list_ids(client, alice.headers, format="fcstd", **scope) == []
    assert await list_ids(client, alice.headers, min_rating=4.5, **scope) == [first["id"]]
    assert await list_ids(client, alice.headers, min_rating=2, **scope) == [
        second["id"],
        first["id"],
    ]
    assert await list_ids(client, alice.headers, min_rating=0, **scope) == everything
    assert await list_ids(client, alice.headers, visibility="unlisted", **scope) == [third["id"]]
    assert await list_ids(client, alice.headers, author_id=alice.id) == everything
    assert await list_ids(client, alice.headers, author_id=bob.id) == [bobs["id"]]
    assert await list_ids(client, alice.headers, tag="çelik", author_id=bob.id) == [bobs["id"]]
    assert await list_ids(client, alice.headers, tag="çelik", format="stl", **scope) == [
        first["id"]
    ]
    listed = await client.get(
        f"{API}/designs", params={"min_rating": 4.5, **scope}, headers=alice.headers
    )
    assert listed.json()["items"][0]["rating"] == {"average": 4.5, "count": 2}

    # Time windows: after is inclusive, before exclusive, any offset means the same instant.
    moment = datetime.fromisoformat(second["created_at"])
    assert moment.tzinfo is not None
    istanbul = moment.astimezone(timezone(timedelta(hours=3))).isoformat()
    for stamp in (moment.isoformat(), istanbul):
        assert await list_ids(client, alice.headers, created_after=stamp, **scope) == [
            third["id"],
            second["id"],
        ]
        assert await list_ids(client, alice.headers, created_before=stamp, **scope) == [first["id"]]
    window = {"created_after": moment.isoformat(), "created_before": third["created_at"]}
    assert await list_ids(client, alice.headers, **window, **scope) == [second["id"]]

    for params in (
        {"created_after": moment.replace(tzinfo=None).isoformat()},
        {"created_before": "2024-01-01T10:00:00"},
        {"created_after": "dün"},
        {"format": "dwg"},
        {"visibility": "secret"},
        {"min_rating": 6},
        {"workspace_id": "not-a-uuid"},
        {"limit": 0},
        {"limit": 101},
    ):
        response = await client.get(f"{API}/designs", params=params, headers=alice.headers)
        body = problem(response, 422, "VALIDATION_ERROR")
        assert set(body["field_errors"]) & {*params, *(f"query.{name}" for name in params)}, body
    turkish = await client.get(
        f"{API}/designs",
        params={"created_after": "2024-01-01T10:00:00"},
        headers={**alice.headers, **TR},
    )
    english = await client.get(
        f"{API}/designs",
        params={"created_after": "2024-01-01T10:00:00"},
        headers={**alice.headers, **EN},
    )
    assert turkish.json()["detail"] != english.json()["detail"]


# Search ------------------------------------------------------------------------------------------


async def test_full_text_search_finds_turkish_words_by_prefix(
    client: httpx.AsyncClient, alice: Account
) -> None:
    flange = await create_design(
        client,
        alice,
        name="Flanş Adaptörü",
        description="Paslanmaz çelik boru bağlantısı.",
        tags=["Tesisat"],
    )
    gearbox = await create_design(
        client, alice, name="Dişli Kutusu", description="Alüminyum gövde", tags=["Redüktör"]
    )
    lamp = await create_design(
        client, alice, name="Işık Tutucu", description="İnce LED şerit için", tags=["Aydınlatma"]
    )
    scope = {"workspace_id": alice.personal_workspace_id}

    async def found(q: str, headers: dict[str, str] | None = alice.headers) -> set[str]:
        return set(await list_ids(client, headers, q=q, **scope))

    expectations = {
        "flan": {flange["id"]},
        "flanş": {flange["id"]},
        "FLANŞ": {flange["id"]},
        "Adaptör": {flange["id"]},
        "flan adap": {flange["id"]},
        "paslanmaz BORU": {flange["id"]},
        "paslanmaz dişli": set(),
        "tesis": {flange["id"]},  # a tag
        "dişli": {gearbox["id"]},
        "DİŞLİ": {gearbox["id"]},
        "alüminyum": {gearbox["id"]},
        "redüktör": {gearbox["id"]},
        "Işık": {lamp["id"]},
        "ışık": {lamp["id"]},
        "IŞIK": {lamp["id"]},
        "ince": {lamp["id"]},
        "İNCE led": {lamp["id"]},
        "aydın": {lamp["id"]},
        "yok-böyle-bir-şey": set(),
        "!!! ...": {flange["id"], gearbox["id"], lamp["id"]},
        "  ": {flange["id"], gearbox["id"], lamp["id"]},
        "'\"*:&|()": {flange["id"], gearbox["id"], lamp["id"]},
        "_": {flange["id"], gearbox["id"], lamp["id"]},
        "__ - __": {flange["id"], gearbox["id"], lamp["id"]},
        "flan_adap": {flange["id"]},
        "_dişli_": {gearbox["id"]},
        'flan" OR "dişli': set(),
    }
    for q, expected in expectations.items():
        assert await found(q) == expected, q
    # Anonymous callers search the public designs the same way.
    assert await found("flan", None) == {flange["id"]}

    renamed = await client.patch(
        f"{API}/designs/{flange['id']}", json={"name": "Boru Kelepçesi"}, headers=alice.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert await found("flan") == set()
    assert await found("kelepçe") == {flange["id"]}
    assert await found("paslanmaz") == {flange["id"]}  # the description still matches
    retagged = await client.patch(
        f"{API}/designs/{gearbox['id']}", json={"tags": ["Şanzıman"]}, headers=alice.headers
    )
    assert retagged.status_code == 200, retagged.text
    assert await found("redüktör") == set()
    assert await found("şanzıman") == {gearbox["id"]}
    assert (
        await client.delete(f"{API}/designs/{lamp['id']}", headers=alice.headers)
    ).status_code == 204
    assert await found("ışık") == set()
    problem(
        await client.get(f"{API}/designs", params={"q": "x" * 201}, headers=alice.headers),
        422,
        "VALIDATION_ERROR",
    )


# Sorting and keyset pages ------------------------------------------------------------------------

SORTS = [
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "rating",
    "-rating",
    "review_count",
    "-review_count",
    "name",
    "-name",
    "-rating,name",
    "review_count,-created_at",
]
FIELDS = {
    "created_at": "created_at",
    "updated_at": "updated_at",
    "rating": "rating_avg",
    "review_count": "rating_count",
    "name": "name",
}


def expected_order(seeds: list[Seed], sort: str) -> list[str]:
    """What the list must show: sorted by the fields, then by id in the last field's direction
    (stable sorts, applied from the last key to the first)."""
    keys = [(token.lstrip("-"), token.startswith("-")) for token in sort.split(",")]
    ordered = sorted(seeds, key=lambda seed: seed.id, reverse=keys[-1][1])
    for name, descending in reversed(keys):
        ordered.sort(key=lambda seed, attr=FIELDS[name]: getattr(seed, attr), reverse=descending)
    return [str(seed.id) for seed in ordered]


async def walk(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any], limit: int
) -> list[str]:
    """Follow next_cursor (and check the Link header) until the last page."""
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        page_params = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"{API}/designs", params=page_params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= limit
        seen.extend(item["id"] for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            assert "link" not in response.headers
            return seen
        assert len(body["items"]) == limit
        link = response.headers["link"]
        assert link.endswith('>; rel="next"')
        next_url = httpx.URL(link[1 : -len('>; rel="next"')])
        assert next_url.params["cursor"] == cursor
        assert next_url.params["sort"] == params["sort"]
    raise AssertionError("the pages never ended")


async def test_every_sort_walks_all_designs_exactly_once_in_order(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    base = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    seeds = []
    for n in range(25):
        # Ties everywhere (same instant, rating, review count and name for several designs),
        # so the id tie-breaker decides, and keyset conditions must cross the ties correctly.
        created = base + timedelta(minutes=n // 3, microseconds=n % 2)
        seeds.append(
            Seed(
                name=f"model {n % 9:02d}",
                created_at=created,
                updated_at=base + timedelta(hours=1, seconds=(n * 7) % 5),
                rating_count=n % 4,
                rating_avg=[2.5, 3.75, 5.0][n % 3] if n % 4 else 0.0,
                with_version=n % 5 != 0,
                visibility=["public", "private", "unlisted"][n % 3],
            )
        )
    await seed_designs(app, alice, seeds)
    scope = {"workspace_id": alice.personal_workspace_id}
    for sort in SORTS:
        walked = await walk(client, alice.headers, {**scope, "sort": sort}, limit=7)
        assert len(walked) == len(set(walked)) == 25, sort
        assert walked == expected_order(seeds, sort), sort
    # One page of everything agrees with the walk.
    whole = await list_ids(client, alice.headers, sort="-rating,name", **scope)
    assert whole == expected_order(seeds, "-rating,name")
    # The default is newest first.
    assert await list_ids(client, alice.headers, **scope) == expected_order(seeds, "-created_at")

    # Unknown or repeated sort fields, and cursors that were forged or belong to another sort.
    for sort in ("bogus", "description", "name,-name", "-", "search_text", "rating,,name"):
        response = await client.get(
            f"{API}/designs", params={"sort": sort, **scope}, headers=alice.headers
        )
        problem(response, 400, "INVALID_SORT")
    first = await client.get(
        f"{API}/designs", params={"sort": "name", "limit": 1, **scope}, headers=alice.headers
    )
    cursor = first.json()["next_cursor"]
    assert cursor
    assert first.headers["link"].startswith(f"<http://testserver{API}/designs?")
    middle = len(cursor) // 2
    tampered = cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1 :]
    for params in (
        {"sort": "name", "cursor": tampered},
        {"sort": "-name", "cursor": cursor},  # another sort's cursor
        {"sort": "created_at", "cursor": cursor},
        {"sort": "name", "cursor": "bm90LWEtY3Vyc29y"},
        {"sort": "name", "cursor": "%%%"},
    ):
        response = await client.get(
            f"{API}/designs", params={**params, "limit": 1, **scope}, headers=alice.headers
        )
        problem(response, 400, "INVALID_CURSOR")
    good = await client.get(
        f"{API}/designs",
        params={"sort": "name", "cursor": cursor, "limit": 1, **scope},
        headers=alice.headers,
    )
    assert good.status_code == 200
    assert ids(good) != ids(first)


# A constant number of statements per page --------------------------------------------------------

COUNTING: contextvars.ContextVar[bool] = contextvars.ContextVar("counting", default=False)


@contextmanager
def statements_of_this_task(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements run while the block runs, by this task only (the mail sender and
    other background tasks use the same engine)."""
    engine = app.state.resources.database.engine.sync_engine
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if COUNTING.get():
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    token = COUNTING.set(True)
    try:
        yield seen
    finally:
        COUNTING.reset(token)
        event.remove(engine, "before_cursor_execute", count)


async def test_a_page_costs_the_same_statements_whatever_its_size(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    categories = await seed_categories(app, 2)
    start = datetime.now(UTC) - timedelta(days=1)
    seeds = [
        Seed(
            name=f"Sayım {n:03d}",
            created_at=start + timedelta(seconds=n),
            rating_count=1,
            rating_avg=4.0,
            tags=["çelik", f"etiket-{n % 7}"],
            category_ids=categories,
        )
        for n in range(110)
    ]
    await seed_designs(app, alice, seeds, reviewer=bob)

    counts = {}
    filtered = {"tag": "çelik", "category_id": str(categories[1]), "q": "sayım", "sort": "name"}
    for headers, extra in ((alice.headers, {}), ({}, {}), (alice.headers, filtered)):
        for limit in (1, 100):
            params = {"workspace_id": alice.personal_workspace_id, "limit": limit, **extra}
            with statements_of_this_task(app) as statements:
                response = await client.get(f"{API}/designs", params=params, headers=headers)
            assert response.status_code == 200, response.text
            items = response.json()["items"]
            assert len(items) == limit
            assert all(item["current_version"]["author"]["id"] == alice.id for item in items)
            assert all(len(item["categories"]) == 2 for item in items)
            assert all(item["rating"]["count"] == 1 for item in items)
            assert all("çelik" in item["tags"] for item in items)
            counts[bool(headers), bool(extra), limit] = len(statements)
    for who, extra in ((True, False), (False, False), (True, True)):
        assert counts[who, extra, 1] == counts[who, extra, 100], counts
    assert max(counts.values()) <= 12, counts

    # The design page costs a fixed number too.
    with statements_of_this_task(app) as statements:
        response = await client.get(f"{API}/designs/{seeds[0].id}", headers=alice.headers)
    assert response.status_code == 200
    assert len(statements) <= 15, statements


# The cached anonymous list -----------------------------------------------------------------------


async def test_anonymous_lists_are_cached_and_invalidated_on_change(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    await make_superuser(app, alice)
    category = await create_category(client, alice, name_en="Fixtures", name_tr="Fikstürler")
    design = await create_design(client, alice, name="Önbellek", category_ids=[category["id"]])
    hidden = await create_design(client, alice, name="Gizli", visibility="private")
    url = f"{API}/designs"
    params = {"author_id": alice.id}

    async def anonymous(headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
        return await client.get(url, params={**params, **extra}, headers={**EN, **(headers or {})})

    first = await anonymous()
    assert first.status_code == 200, first.text
    assert [item["id"] for item in first.json()["items"]] == [design["id"]]
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, no-cache"
    assert "Accept-Language" in first.headers["vary"]
    not_modified = await anonymous({"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    assert (await anonymous({"If-None-Match": '"other"'})).status_code == 200
    signed_in = await client.get(url, params=params, headers=alice.headers)
    assert signed_in.headers["cache-control"].startswith("private")
    assert {item["id"] for item in signed_in.json()["items"]} == {design["id"], hidden["id"]}

    # The page is served from the cache: a change behind the API's back does not show ...
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        await session.execute(
            update(Design).where(Design.id == uuid.UUID(design["id"])).values(license="MIT")
        )
    cached = await anonymous()
    assert cached.headers["etag"] == etag
    assert cached.json()["items"][0]["license"] is None

    # ... but every change through the API does, at once, with a new ETag.
    renamed = await client.patch(
        f"{API}/designs/{design['id']}", json={"name": "Önbellek 2"}, headers=alice.headers
    )
    assert renamed.status_code == 200
    after_rename = await anonymous({"If-None-Match": etag})
    assert after_rename.status_code == 200
    assert after_rename.json()["items"][0]["name"] == "Önbellek 2"
    assert after_rename.json()["items"][0]["license"] == "MIT"
    assert after_rename.headers["etag"] != etag

    review = await client.post(
        f"{API}/designs/{design['id']}/reviews", json={"rating": 5}, headers=bob.headers
    )
    assert review.status_code == 201
    after_review = await anonymous({"If-None-Match": after_rename.headers["etag"]})
    assert after_review.status_code == 200
    assert after_review.json()["items"][0]["rating"] == {"average": 5.0, "count": 1}

    newer = await create_design(client, alice, name="Yeni")
    after_create = await anonymous()
    assert [item["id"] for item in after_create.json()["items"]] == [newer["id"], design["id"]]
    assert after_create.headers["etag"] not in (etag, after_review.headers["etag"])

    published = await client.patch(
        f"{API}/designs/{hidden['id']}", json={"visibility": "public"}, headers=alice.headers
    )
    assert published.status_code == 200
    assert len((await anonymous()).json()["items"]) == 3
    assert (
        await client.delete(f"{API}/designs/{newer['id']}", headers=alice.headers)
    ).status_code == 204
    assert {item["id"] for item in (await anonymous()).json()["items"]} == {
        design["id"],
        hidden["id"],
    }

    # Each language has its own page.
    english = await anonymous()
    turkish = await anonymous(TR)
    assert turkish.headers["etag"] != english.headers["etag"]
    names = {
        language: [c["name"] for item in answer.json()["items"] for c in item["categories"]]
        for language, answer in (("en", english), ("tr", turkish))
    }
    assert names == {"en": ["Fixtures"], "tr": ["Fikstürler"]}
    assert (await anonymous(TR)).json()["items"][-1]["categories"][0]["name"] == "Fikstürler"
    assert (await anonymous({"If-None-Match": turkish.headers["etag"], **TR})).status_code == 304
    assert (await anonymous({"If-None-Match": turkish.headers["etag"]})).status_code == 200

    # Renaming the category reaches the cached pages too.
    renamed_category = await client.patch(
        f"{API}/categories/{category['id']}", json={"name_tr": "Bağlama"}, headers=alice.headers
    )
    assert renamed_category.status_code == 200, renamed_category.text
    assert (await anonymous(TR)).json()["items"][-1]["categories"][0]["name"] == "Bağlama"

    # A page with more carries a Link header, cached or not.
    for _ in range(2):
        paged = await anonymous(limit=1)
        assert paged.json()["next_cursor"]
        assert 'rel="next"' in paged.headers["link"]
