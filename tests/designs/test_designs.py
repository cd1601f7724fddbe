"""Designs: create, change, see (visibility, API keys), trash and purge, remix.

Every test runs on both backends. The database is shared by the tests of a session, so each test
works with its own people and workspaces and filters lists down to them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select, update

from tests.auth.conftest import FAST_AUTH_SETTINGS, Account, client_for, db_scalars, register
from tests.designs.conftest import STL_TRIANGLE, add_file, make_superuser
from tests.designs.conftest import create_design as create_design_named
from tezgah.auth.models import Membership
from tezgah.core.config import Settings
from tezgah.core.db import utcnow
from tezgah.designs import service
from tezgah.designs.models import Design, DesignCategory, DesignTag, DesignVersion, Review
from tezgah.main import create_app
from tezgah.uploads.models import Upload

API = "/api/v1"
TR = {"Accept-Language": "tr"}
EN = {"Accept-Language": "en"}


# Helpers (the other design test modules import them) --------------------------------------------


async def create_design(
    client: httpx.AsyncClient, account: Account, **fields: Any
) -> dict[str, Any]:
    """A (by default public) design; the default name is one that the session's other tests
    do not search for (the database is shared)."""
    fields.setdefault("name", "Deneme Parçası")
    return await create_design_named(client, account, **fields)


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The problem+json body of an error response, after checking its status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["error_code"] == code, body
    return body


def unique_stl(label: str = "") -> bytes:
    """An STL file whose content (and so SHA-256) no other test uses."""
    return STL_TRIANGLE.replace(b"solid part", f"solid {label}{uuid.uuid4().hex}".encode(), 1)


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def list_ids(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **params: Any
) -> list[str]:
    params.setdefault("limit", 100)
    return ids(await client.get(f"{API}/designs", params=params, headers=headers or {}))


async def add_member(app: FastAPI, workspace_id: str, account: Account, role: str) -> None:
    """Put ``account`` in a workspace with ``role`` (what an accepted invitation does)."""
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        found = await session.scalar(
            select(Membership).where(
                Membership.workspace_id == uuid.UUID(workspace_id),
                Membership.user_id == uuid.UUID(account.id),
            )
        )
        if found is None:
            session.add(
                Membership(
                    workspace_id=uuid.UUID(workspace_id), user_id=uuid.UUID(account.id), role=role
                )
            )
        else:
            found.role = role


async def create_workspace(client: httpx.AsyncClient, owner: Account) -> str:
    response = await client.post(
        f"{API}/workspaces", json={"name": f"Atölye {uuid.uuid4().hex[:6]}"}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def api_key(
    client: httpx.AsyncClient, owner: Account, workspace_id: str, scopes: list[str]
) -> dict[str, str]:
    response = await client.post(
        f"{API}/workspaces/{workspace_id}/api-keys",
        json={"name": "makine", "scopes": scopes},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    return {"X-API-Key": response.json()["key"]}


async def create_category(
    client: httpx.AsyncClient,
    superuser: Account,
    *,
    parent_id: str | None = None,
    position: int = 0,
    name_en: str = "Parts",
    name_tr: str = "Parçalar",
    slug: str | None = None,
) -> dict[str, Any]:
    body = {
        "slug": slug or f"c-{uuid.uuid4().hex[:12]}",
        "name_en": name_en,
        "name_tr": name_tr,
        "parent_id": parent_id,
        "position": position,
    }
    response = await client.post(f"{API}/categories", json=body, headers=superuser.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def set_deleted_at(app: FastAPI, design_id: str, days_ago: float) -> None:
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        await session.execute(
            update(Design)
            .where(Design.id == uuid.UUID(design_id))
            .values(deleted_at=utcnow() - timedelta(days=days_ago))
        )


# Create ------------------------------------------------------------------------------------------


async def test_create_goes_to_personal_workspace_with_transliterated_unique_slugs(
    client: httpx.AsyncClient, alice: Account
) -> None:
    response = await client.post(
        f"{API}/designs", json={"name": "  Işıklı Çağ Dişlisi — Ölçü 2 "}, headers=alice.headers
    )
    assert response.status_code == 201, response.text
    first = response.json()
    assert first["workspace_id"] == alice.personal_workspace_id
    assert first["slug"] == "isikli-cag-dislisi-olcu-2"
    assert first["name"] == "Işıklı Çağ Dişlisi — Ölçü 2"
    assert first["visibility"] == "private"  # the default
    assert first["can_edit"] is True
    assert first["current_version"] is None
    assert first["version_count"] == 0
    assert first["rating"] == {"average": 0.0, "count": 0}

    second = await create_design(client, alice, name="Işıklı Çağ Dişlisi Ölçü 2")
    third = await create_design(client, alice, name="IŞIKLI ÇAĞ DİŞLİSİ ÖLÇÜ 2")
    assert second["slug"] == "isikli-cag-dislisi-olcu-2-2"
    assert third["slug"] == "isikli-cag-dislisi-olcu-2-3"
    # A name with nothing to transliterate still gets a slug.
    assert (await create_design(client, alice, name="!!!"))["slug"] == "design"

    # An explicit slug that is taken in the workspace is a conflict, not a silent rename ...
    taken = await client.post(
        f"{API}/designs",
        json={"name": "Başka", "slug": "isikli-cag-dislisi-olcu-2"},
        headers=alice.headers,
    )
    body = problem(taken, 409, "SLUG_TAKEN")
    assert "isikli-cag-dislisi-olcu-2" in body["detail"]
    # ... and it stays free in other workspaces.
    bob = await register(client, display_name="Bob")
    other = await create_design(client, bob, name="Başka", slug="isikli-cag-dislisi-olcu-2")
    assert other["slug"] == "isikli-cag-dislisi-olcu-2"
    assert other["workspace_id"] == bob.personal_workspace_id

    # An Idempotency-Key replays the first answer instead of making a second design.
    keyed = {**alice.headers, "Idempotency-Key": f"tasarim-{uuid.uuid4().hex}"}
    payload = {"name": "Tekrar Eden Parça", "tags": ["Çelik"]}
    original = await client.post(f"{API}/designs", json=payload, headers=keyed)
    replayed = await client.post(f"{API}/designs", json=payload, headers=keyed)
    assert original.status_code == replayed.status_code == 201, replayed.text
    assert original.json() == replayed.json()
    scope = {"workspace_id": alice.personal_workspace_id}
    assert await list_ids(client, alice.headers, q="tekrar", **scope) == [original.json()["id"]]
    reused = await client.post(f"{API}/designs", json={**payload, "name": "Başka"}, headers=keyed)
    assert reused.status_code == 422, reused.text
    assert reused.json()["error_code"] == "IDEMPOTENCY_KEY_REUSED"
    # Without the key, the same body makes a second design.
    again = await client.post(f"{API}/designs", json=payload, headers=alice.headers)
    assert again.json()["id"] != original.json()["id"]
    assert again.json()["slug"] == "tekrar-eden-parca-2"


async def test_create_in_another_workspace_needs_designs_write_there(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    team = await create_workspace(client, alice)
    body = {"name": "Ekip Parçası", "workspace_id": team}

    # An outsider does not learn that the workspace exists.
    problem(
        await client.post(f"{API}/designs", json=body, headers=bob.headers),
        404,
        "WORKSPACE_NOT_FOUND",
    )
    await add_member(app, team, bob, "viewer")
    problem(
        await client.post(f"{API}/designs", json=body, headers=bob.headers),
        403,
        "MISSING_PERMISSION",
    )
    await add_member(app, team, bob, "engineer")
    created = await client.post(f"{API}/designs", json=body, headers=bob.headers)
    assert created.status_code == 201, created.text
    assert created.json()["workspace_id"] == team
    # Nothing was written by the refused attempts.
    assert len(await list_ids(client, alice.headers, workspace_id=team)) == 1
    # Anonymous callers cannot create at all.
    problem(await client.post(f"{API}/designs", json={"name": "x"}), 401, "UNAUTHORIZED")


INVALID_DESIGNS: list[tuple[dict[str, Any], str]] = [
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"visibility": "public"}, "name"),
    ({"name": "Parça", "visibility": "secret"}, "visibility"),
    ({"name": "Parça", "tags": [f"etiket{i}" for i in range(21)]}, "tags"),
    ({"name": "Parça", "tags": ["<b>"]}, "tags"),
    ({"name": "Parça", "colour": "red"}, "colour"),
    ({"name": "Parça", "slug": "Büyük Harf"}, "slug"),
    ({"name": "Parça", "workspace_id": "yok"}, "workspace_id"),
]


async def test_invalid_designs_are_refused_in_the_callers_language(
    client: httpx.AsyncClient, alice: Account
) -> None:
    for body, field in INVALID_DESIGNS:
        answers = [
            problem(
                await client.post(f"{API}/designs", json=body, headers={**alice.headers, **lang}),
                422,
                "VALIDATION_ERROR",
            )
            for lang in (EN, TR)
        ]
        english, turkish = answers
        for answer in answers:
            assert any(key.split(".")[0] == field for key in answer["field_errors"]), (
                body,
                answer["field_errors"],
            )
            assert answer["request_id"]
        assert english["detail"] != turkish["detail"]
        english_messages = [m for ms in english["field_errors"].values() for m in ms]
        turkish_messages = [m for ms in turkish["field_errors"].values() for m in ms]
        assert english_messages, english
        assert english_messages != turkish_messages, (english, turkish)

    # An unknown category is named, in both languages, on create and on change.
    missing = str(uuid.uuid4())
    details = []
    for headers in (EN, TR):
        response = await client.post(
            f"{API}/designs",
            json={"name": "Parça", "category_ids": [missing]},
            headers={**alice.headers, **headers},
        )
        body = problem(response, 422, "UNKNOWN_CATEGORY")
        assert missing in body["field_errors"]["category_ids"]
        assert missing in body["detail"]
        details.append(body["detail"])
    assert details[0] != details[1]
    assert await list_ids(client, alice.headers, workspace_id=alice.personal_workspace_id) == []
    design = await create_design(client, alice)
    patched = await client.patch(
        f"{API}/designs/{design['id']}", json={"category_ids": [missing]}, headers=alice.headers
    )
    problem(patched, 422, "UNKNOWN_CATEGORY")


# Change ------------------------------------------------------------------------------------------


async def test_patch_changes_only_the_given_fields_and_normalises_tags(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    design = await create_design(
        client,
        alice,
        name="Mil Yatağı",
        description="Rulman *yuvası*",
        license="CC-BY-4.0",
        tags=["Rulman"],
        material_hints=["Çelik"],
        visibility="unlisted",
    )
    url = f"{API}/designs/{design['id']}"
    renamed = await client.patch(url, json={"name": " Mil Yatağı v2  "}, headers=alice.headers)
    assert renamed.status_code == 200, renamed.text
    after = renamed.json()
    assert after["name"] == "Mil Yatağı v2"
    assert after["slug"] == design["slug"]  # a rename keeps links working
    for field in ("description", "license", "tags", "material_hints", "visibility"):
        assert after[field] == design[field], field
    assert after["updated_at"] > design["updated_at"]

    tagged = await client.patch(
        url, json={"tags": ["Çelik", "çelik", " ÇELİK ", "İnox", "CNC"]}, headers=alice.headers
    )
    assert tagged.status_code == 200, tagged.text
    assert sorted(tagged.json()["tags"]) == ["cnc", "inox", "çelik"]
    assert tagged.json()["name"] == "Mil Yatağı v2"

    cleared = await client.patch(
        url, json={"license": None, "visibility": "public"}, headers=alice.headers
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["license"] is None
    assert cleared.json()["visibility"] == "public"
    assert sorted(cleared.json()["tags"]) == ["cnc", "inox", "çelik"]

    # What was saved is what a fresh read shows, and the search follows the new tags.
    fresh = (await client.get(url, headers=alice.headers)).json()
    assert fresh["name"] == "Mil Yatağı v2"
    assert sorted(fresh["tags"]) == ["cnc", "inox", "çelik"]
    assert fresh["description"] == "Rulman *yuvası*"
    scope = {"workspace_id": alice.personal_workspace_id}
    assert await list_ids(client, alice.headers, q="inox", **scope) == [design["id"]]
    assert await list_ids(client, alice.headers, tag="ÇELİK", **scope) == [design["id"]]
    assert await list_ids(client, alice.headers, tag="rulman", **scope) == []

    other = await create_design(client, alice, name="Başka", slug="baska-parca")
    problem(
        await client.patch(url, json={"slug": "baska-parca"}, headers=alice.headers),
        409,
        "SLUG_TAKEN",
    )
    problem(
        await client.patch(url, json={"name": ""}, headers=alice.headers), 422, "VALIDATION_ERROR"
    )
    problem(
        await client.patch(url, json={"owner": "bob"}, headers=alice.headers),
        422,
        "VALIDATION_ERROR",
    )
    # Someone else may see the public design but not change it; a private one stays hidden.
    problem(
        await client.patch(url, json={"name": "x"}, headers=bob.headers), 403, "MISSING_PERMISSION"
    )
    private_url = f"{API}/designs/{other['id']}"
    await client.patch(private_url, json={"visibility": "private"}, headers=alice.headers)
    problem(
        await client.patch(private_url, json={"name": "x"}, headers=bob.headers),
        404,
        "DESIGN_NOT_FOUND",
    )
    problem(await client.patch(url, json={"name": "x"}), 401, "UNAUTHORIZED")
    assert (await client.get(url, headers=alice.headers)).json()["name"] == "Mil Yatağı v2"


async def test_description_markdown_is_rendered_to_sanitised_html(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    description = (
        "# Başlık\n\n"
        "**kalın** ve *eğik*\n\n"
        "<script>alert('x')</script>\n\n"
        '<img src="x" onerror="alert(1)">\n\n'
        "[tıkla](javascript:alert(1)) [kötü](JAVASCRIPT:alert(2)) "
        "[site](https://example.com/a?b=1)\n"
    )
    design = await create_design(client, alice, description=description)
    got = await client.get(f"{API}/designs/{design['id']}", headers=bob.headers)
    body = got.json()
    html = body["description_html"]
    assert body["description"] == description
    assert "<h1>Başlık</h1>" in html
    assert "<strong>kalın</strong>" in html
    assert "<em>eğik</em>" in html
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert "<img" not in html
    assert 'href="javascript' not in html.lower()
    assert html.count("<a ") == 1
    assert '<a href="https://example.com/a?b=1" rel="noopener noreferrer nofollow">site</a>' in html

    changed = await client.patch(
        f"{API}/designs/{design['id']}",
        json={"description": "[x](https://tezgah.example) <b onclick=1>y</b>"},
        headers=alice.headers,
    )
    html = changed.json()["description_html"]
    assert 'rel="noopener noreferrer nofollow"' in html
    assert "onclick" not in html.replace("&lt;b onclick=1&gt;", "")
    assert "<b" not in html


# See ---------------------------------------------------------------------------------------------


async def test_visibility_decides_who_sees_a_design_and_where(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    private = await create_design(client, alice, name="Gizli", visibility="private")
    unlisted = await create_design(client, alice, name="Bağlantılı", visibility="unlisted")
    public = await create_design(client, alice, name="Açık", visibility="public")

    for who in (alice.headers, bob.headers, {}):
        for design in (unlisted, public):
            response = await client.get(f"{API}/designs/{design['id']}", headers=who)
            assert response.status_code == 200, response.text
    assert (
        await client.get(f"{API}/designs/{private['id']}", headers=alice.headers)
    ).status_code == 200
    for who in (bob.headers, {}):
        problem(
            await client.get(f"{API}/designs/{private['id']}", headers=who), 404, "DESIGN_NOT_FOUND"
        )
    problem(
        await client.get(f"{API}/designs/{uuid.uuid4()}", headers=alice.headers),
        404,
        "DESIGN_NOT_FOUND",
    )
    assert (await client.get(f"{API}/designs/{public['id']}", headers=bob.headers)).json()[
        "can_edit"
    ] is False

    everything = {private["id"], unlisted["id"], public["id"]}
    for scope in ({"workspace_id": alice.personal_workspace_id}, {"author_id": alice.id}):
        assert set(await list_ids(client, alice.headers, **scope)) == everything
        assert await list_ids(client, bob.headers, **scope) == [public["id"]]
        assert await list_ids(client, None, **scope) == [public["id"]]
        assert await list_ids(client, bob.headers, visibility="unlisted", **scope) == []
        assert await list_ids(client, alice.headers, visibility="unlisted", **scope) == [
            unlisted["id"]
        ]
    # Unfiltered lists of other people (and of nobody) leave out the unlisted and private ones.
    newest_for_bob = await list_ids(client, bob.headers)
    newest_for_nobody = await list_ids(client, None)
    assert public["id"] in newest_for_bob
    assert public["id"] in newest_for_nobody
    assert not (everything - {public["id"]}) & (set(newest_for_bob) | set(newest_for_nobody))


async def test_api_keys_with_designs_read_see_their_workspaces_private_designs(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    private = await create_design(client, alice, name="Fikstür", visibility="private")
    unlisted = await create_design(client, alice, name="Kalıp", visibility="unlisted")
    bobs = await create_design(client, bob, name="Bobun Gizlisi", visibility="private")
    reader = await api_key(client, alice, alice.personal_workspace_id, ["designs:read"])
    blind = await api_key(client, alice, alice.personal_workspace_id, ["cam:read"])
    writer = await api_key(
        client, alice, alice.personal_workspace_id, ["designs:read", "designs:write"]
    )

    assert (await client.get(f"{API}/designs/{private['id']}", headers=reader)).status_code == 200
    scope = {"workspace_id": alice.personal_workspace_id}
    assert set(await list_ids(client, reader, **scope)) == {private["id"], unlisted["id"]}
    problem(
        await client.get(f"{API}/designs/{private['id']}", headers=blind), 404, "DESIGN_NOT_FOUND"
    )
    assert await list_ids(client, blind, **scope) == []
    # A key reads only its own workspace, whoever created it.
    problem(
        await client.get(f"{API}/designs/{bobs['id']}", headers=reader), 404, "DESIGN_NOT_FOUND"
    )
    assert await list_ids(client, reader, workspace_id=bob.personal_workspace_id) == []
    # A reading key cannot write; a writing key creates in its workspace.
    problem(
        await client.patch(f"{API}/designs/{private['id']}", json={"name": "x"}, headers=reader),
        403,
        "MISSING_PERMISSION",
    )
    created = await client.post(f"{API}/designs", json={"name": "Makineden"}, headers=writer)
    assert created.status_code == 201, created.text
    assert created.json()["workspace_id"] == alice.personal_workspace_id
    assert created.json()["can_review"] is False


async def test_a_key_reads_no_more_than_its_creator_may(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    team = await create_workspace(client, alice)
    await add_member(app, team, bob, "admin")
    key = await api_key(client, bob, team, ["designs:read"])
    secret = await create_design(
        client, alice, name="Ekip Sırrı", workspace_id=team, visibility="private"
    )
    public = await create_design(client, alice, name="Ekip Vitrini", workspace_id=team)
    assert set(await list_ids(client, key, workspace_id=team)) == {secret["id"], public["id"]}
    assert (await client.get(f"{API}/designs/{secret['id']}", headers=key)).status_code == 200

    # Bob leaves the team: his key still signs in, but sees only what anybody sees.
    removed = await client.delete(
        f"{API}/workspaces/{team}/members/{bob.id}", headers=alice.headers
    )
    assert removed.status_code == 204, removed.text
    problem(await client.get(f"{API}/designs/{secret['id']}", headers=key), 404, "DESIGN_NOT_FOUND")
    assert await list_ids(client, key, workspace_id=team) == [public["id"]]
    assert secret["id"] not in await list_ids(client, key)


# Trash -------------------------------------------------------------------------------------------


async def test_delete_moves_to_the_trash_and_restore_brings_it_back(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    design = await create_design(client, alice, name="Çöpe Gidecek")
    keep = await create_design(client, alice, name="Kalacak")
    url = f"{API}/designs/{design['id']}"
    trash = f"{API}/workspaces/{alice.personal_workspace_id}/trash"
    scope = {"workspace_id": alice.personal_workspace_id}

    problem(await client.delete(url, headers=bob.headers), 403, "MISSING_PERMISSION")
    problem(await client.delete(url), 401, "UNAUTHORIZED")
    assert ids(await client.get(trash, headers=alice.headers)) == []

    deleted = await client.delete(url, headers=alice.headers)
    assert deleted.status_code == 204, deleted.text
    for who in (alice.headers, bob.headers, {}):
        problem(await client.get(url, headers=who), 404, "DESIGN_NOT_FOUND")
    assert await list_ids(client, alice.headers, **scope) == [keep["id"]]
    assert await list_ids(client, alice.headers, q="çöpe", **scope) == []
    problem(await client.delete(url, headers=alice.headers), 404, "DESIGN_NOT_FOUND")
    problem(
        await client.patch(url, json={"name": "x"}, headers=alice.headers), 404, "DESIGN_NOT_FOUND"
    )
    in_trash = await client.get(trash, headers=alice.headers)
    assert ids(in_trash) == [design["id"]]
    assert in_trash.json()["items"][0]["name"] == "Çöpe Gidecek"
    problem(await client.get(trash, headers=bob.headers), 404, "WORKSPACE_NOT_FOUND")
    # Only the workspace's writers can take it out; others do not learn it exists.
    problem(await client.post(f"{url}/restore", headers=bob.headers), 404, "DESIGN_NOT_FOUND")
    problem(
        await client.post(f"{API}/designs/{keep['id']}/restore", headers=alice.headers),
        404,
        "DESIGN_NOT_FOUND",
    )

    restored = await client.post(f"{url}/restore", headers=alice.headers)
    assert restored.status_code == 200, restored.text
    assert restored.json()["deleted_at"] is None
    assert restored.json()["name"] == "Çöpe Gidecek"
    assert (await client.get(url, headers=bob.headers)).status_code == 200
    assert set(await list_ids(client, alice.headers, **scope)) == {design["id"], keep["id"]}
    assert ids(await client.get(trash, headers=alice.headers)) == []

    # The trash keeps a design for TRASH_DAYS: after that, restoring is refused.
    late = await create_design(client, alice, name="Geç Kalınan")
    in_time = await create_design(client, alice, name="Zamanında")
    for design in (late, in_time):
        assert (
            await client.delete(f"{API}/designs/{design['id']}", headers=alice.headers)
        ).status_code == 204
    await set_deleted_at(app, late["id"], days_ago=service.TRASH_DAYS + 0.01)
    await set_deleted_at(app, in_time["id"], days_ago=service.TRASH_DAYS - 0.01)

    for headers, language in ((EN, "en"), (TR, "tr")):
        response = await client.post(
            f"{API}/designs/{late['id']}/restore", headers={**alice.headers, **headers}
        )
        body = problem(response, 410, "RESTORE_WINDOW_OVER")
        assert str(service.TRASH_DAYS) in body["detail"], language
    restored = await client.post(f"{API}/designs/{in_time['id']}/restore", headers=alice.headers)
    assert restored.status_code == 200, restored.text
    problem(
        await client.get(f"{API}/designs/{late['id']}", headers=alice.headers),
        404,
        "DESIGN_NOT_FOUND",
    )


async def test_purge_removes_only_designs_deleted_longer_than_the_window(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    await make_superuser(app, alice)
    category = await create_category(client, alice)
    designs: dict[str, dict[str, Any]] = {}
    files: dict[str, str] = {}
    for label in ("old", "recent", "kept", "live"):
        designs[label] = await create_design(
            client, alice, name=f"Temizlik {label}", tags=["Çelik"], category_ids=[category["id"]]
        )
        added = await add_file(client, alice, designs[label]["id"], unique_stl(label))
        assert added.status_code == 201, added.text
        files[label] = added.json()["sha256"]
    old_url = f"{API}/designs/{designs['old']['id']}"
    second = await add_file(client, alice, designs["old"]["id"], unique_stl("old-2"))
    assert second.status_code == 201, second.text
    review = await client.post(f"{old_url}/reviews", json={"rating": 3}, headers=bob.headers)
    assert review.status_code == 201, review.text
    remix = await client.post(f"{old_url}/remix", json={}, headers=bob.headers)
    assert remix.status_code == 201, remix.text
    for label, days in (("old", 31), ("recent", 5), ("kept", 29)):
        url = f"{API}/designs/{designs[label]['id']}"
        assert (await client.delete(url, headers=alice.headers)).status_code == 204
        await set_deleted_at(app, designs[label]["id"], days_ago=days)
    old_id = uuid.UUID(designs["old"]["id"])

    database = app.state.resources.database
    async with database.sessionmaker() as session, session.begin():
        freed = await service.purge_deleted(session, now=utcnow())
    assert {files["old"], second.json()["sha256"]} <= set(freed)
    for label in ("recent", "kept", "live"):
        assert files[label] not in freed, label

    assert await db_scalars(app, select(Design.id).where(Design.id == old_id)) == []
    for model in (DesignVersion, DesignTag, DesignCategory, Review):
        rows = await db_scalars(app, select(model).where(model.design_id == old_id))
        assert rows == [], model
    # The workspace's quota no longer counts the purged files.
    ledger = await db_scalars(
        app,
        select(Upload.id).where(
            Upload.workspace_id == uuid.UUID(alice.personal_workspace_id),
            Upload.sha256.in_([files["old"], second.json()["sha256"]]),
        ),
    )
    assert ledger == []
    # The remix outlives its source: it keeps its own version (same file) and loses the link.
    copy = await client.get(f"{API}/designs/{remix.json()['id']}", headers=bob.headers)
    assert copy.status_code == 200, copy.text
    assert copy.json()["remixed_from_id"] is None
    assert copy.json()["current_version"]["sha256"] == second.json()["sha256"]
    # Designs still in their window stay restorable, with their files.
    restored = await client.post(
        f"{API}/designs/{designs['kept']['id']}/restore", headers=alice.headers
    )
    assert restored.status_code == 200, restored.text
    assert restored.json()["current_version"]["sha256"] == files["kept"]
    assert restored.json()["tags"] == ["çelik"]
    problem(await client.post(f"{old_url}/restore", headers=alice.headers), 404, "DESIGN_NOT_FOUND")

    # Later, the recent one's window is over too; restored and live designs are never touched.
    async with database.sessionmaker() as session, session.begin():
        later = await service.purge_deleted(session, now=utcnow() + timedelta(days=26))
    assert files["recent"] in later
    assert files["kept"] not in later
    assert files["live"] not in later
    gone = await db_scalars(
        app, select(Design.id).where(Design.id == uuid.UUID(designs["recent"]["id"]))
    )
    assert gone == []
    for label in ("kept", "live"):
        got = await client.get(f"{API}/designs/{designs[label]['id']}", headers=alice.headers)
        assert got.status_code == 200
        assert got.json()["current_version"]["sha256"] == files[label]


# Remix -------------------------------------------------------------------------------------------


async def test_remix_copies_into_your_personal_workspace(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    await make_superuser(app, alice)
    category = await create_category(client, alice)
    source = await create_design(
        client,
        alice,
        name="Ana Parça",
        description="Orijinal **açıklama**",
        tags=["Çelik", "CNC"],
        category_ids=[category["id"]],
        license="MIT",
    )
    content = unique_stl("remix")
    added = await add_file(client, alice, source["id"], content, "ana.stl", "ilk sürüm")
    assert added.status_code == 201, added.text

    response = await client.post(
        f"{API}/designs/{source['id']}/remix", json={}, headers=bob.headers
    )
    assert response.status_code == 201, response.text
    copy = response.json()
    assert copy["id"] != source["id"]
    assert copy["workspace_id"] == bob.personal_workspace_id
    assert copy["remixed_from_id"] == source["id"]
    assert copy["visibility"] == "private"
    assert copy["name"] == "Ana Parça"
    assert copy["slug"] == "ana-parca"
    assert sorted(copy["tags"]) == ["cnc", "çelik"]
    assert [c["id"] for c in copy["categories"]] == [category["id"]]
    assert copy["description"] == "Orijinal **açıklama**"
    assert copy["license"] == "MIT"
    assert copy["can_edit"] is True
    version = copy["current_version"]
    assert version["number"] == 1
    assert copy["version_count"] == 1
    assert version["sha256"] == added.json()["sha256"]
    assert version["filename"] == "ana.stl"
    assert version["author"]["id"] == bob.id
    downloaded = await client.get(version["download_url"], headers=bob.headers)
    assert downloaded.status_code == 200
    assert downloaded.content == content

    # The copy is Bob's private design; the source is unchanged.
    problem(
        await client.get(f"{API}/designs/{copy['id']}", headers=alice.headers),
        404,
        "DESIGN_NOT_FOUND",
    )
    assert await list_ids(client, bob.headers, workspace_id=bob.personal_workspace_id) == [
        copy["id"]
    ]
    assert (await client.get(f"{API}/designs/{source['id']}")).json()["version_count"] == 1
    # A second remix with a name of its own.
    named = await client.post(
        f"{API}/designs/{source['id']}/remix", json={"name": "  Bobun Sürümü "}, headers=bob.headers
    )
    assert named.status_code == 201, named.text
    assert named.json()["slug"] == "bobun-surumu"
    assert named.json()["name"] == "Bobun Sürümü"
    # The remixer's own designs can be remixed again, keeping the chain.
    again = await client.post(f"{API}/designs/{copy['id']}/remix", json={}, headers=bob.headers)
    assert again.json()["remixed_from_id"] == copy["id"]
    assert again.json()["slug"] == "ana-parca-2"

    # Only what you can see, only into a workspace where you may write.
    private = await create_design(client, alice, name="Gizli Parça", visibility="private")
    await add_file(client, alice, private["id"], unique_stl())
    problem(
        await client.post(f"{API}/designs/{private['id']}/remix", json={}, headers=bob.headers),
        404,
        "DESIGN_NOT_FOUND",
    )
    public = await create_design(client, alice, name="Açık Parça")
    problem(
        await client.post(
            f"{API}/designs/{public['id']}/remix",
            json={"workspace_id": alice.personal_workspace_id},
            headers=bob.headers,
        ),
        404,
        "WORKSPACE_NOT_FOUND",
    )
    problem(await client.post(f"{API}/designs/{public['id']}/remix", json={}), 401, "UNAUTHORIZED")
    # Without a file, a remix is a copy of the metadata only.
    empty = await client.post(f"{API}/designs/{public['id']}/remix", json={}, headers=bob.headers)
    assert empty.status_code == 201, empty.text
    assert empty.json()["current_version"] is None


@asynccontextmanager
async def app_with(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with LifespanManager(application), client_for(application) as http:
        yield application, http


async def test_remix_counts_against_the_target_workspace_quota(
    settings: Settings, settings_factory: Callable[..., Settings]
) -> None:
    # (``settings`` first: the session's databases exist before this test builds its own.)
    size = len(unique_stl())
    small = settings_factory(**FAST_AUTH_SETTINGS, upload_quota_bytes=size + size // 2)
    async with app_with(small) as (_, client):
        owner = await register(client)
        remixer = await register(client)
        source = await create_design(client, owner, name="Kota")
        assert (await add_file(client, owner, source["id"], unique_stl())).status_code == 201
        url = f"{API}/designs/{source['id']}/remix"
        first = await client.post(url, json={}, headers=remixer.headers)
        assert first.status_code == 201, first.text
        second = await client.post(url, json={}, headers=remixer.headers)
        problem(second, 413, "UPLOAD_QUOTA_EXCEEDED")
        # The refused copy left nothing behind.
        scope = {"workspace_id": remixer.personal_workspace_id}
        assert await list_ids(client, remixer.headers, **scope) == [first.json()["id"]]
