"""Share links through the API: the token shown once, opening and downloading without an
account, view-only links, expiry, revocation, PINs and their guess limit, deleted designs, and
who may manage links."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from tests.auth.conftest import Account, client_for, db_scalars, register
from tests.auth.test_workspaces import add_member, create_team
from tests.designs.conftest import STEP_FILE, STL_TRIANGLE
from tests.designs.test_versions import API, added, new_design, problem, sha256
from tezgah.designs.models import ShareLink


async def create_link(
    client: httpx.AsyncClient, account: Account, design_id: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        f"{API}/designs/{design_id}/share-links", json=fields, headers=account.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def list_links(client: httpx.AsyncClient, account: Account, design_id: str) -> httpx.Response:
    return await client.get(f"{API}/designs/{design_id}/share-links", headers=account.headers)


async def set_link(app: FastAPI, link_id: str, **values: Any) -> None:
    """Change a link row directly (time passing, for instance)."""
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        await session.execute(
            update(ShareLink).where(ShareLink.id == uuid.UUID(link_id)).values(**values)
        )


def pin(value: str) -> dict[str, str]:
    return {"X-Share-Pin": value}


async def test_a_link_opens_a_private_design_for_anybody(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    design = await new_design(client, alice, visibility="private", description="**Gizli** plan")
    await added(client, alice, design["id"], STEP_FILE)
    # Without the link, the design does not exist for outsiders.
    problem(await client.get(f"{API}/designs/{design['id']}"), 404, "DESIGN_NOT_FOUND")
    link = await create_link(client, alice, design["id"], label=" Müşteri ")
    token = link["token"]
    assert token.startswith("tzs_")
    assert len(token) > 30
    assert link["url"] == f"{API}/shared/{token}"
    assert link["prefix"] == token[:12]
    assert (link["label"], link["can_download"], link["has_pin"]) == ("Müşteri", False, False)
    assert (link["expires_at"], link["revoked_at"], link["last_used_at"]) == (None, None, None)
    # Shown once: the list shows the prefix only, and the database keeps only a hash.
    listed = await list_links(client, alice, design["id"])
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert item["id"] == link["id"]
    assert item["prefix"] == token[:12]
    assert "token" not in item
    assert "url" not in item
    assert token not in listed.text
    assert token[12:] not in listed.text
    stored = await db_scalars(
        app, select(ShareLink.token_hash).where(ShareLink.id == uuid.UUID(link["id"]))
    )
    assert stored == [sha256(token.encode())]
    # Anybody with the link sees the design, without signing in.
    opened = await client.get(link["url"])
    assert opened.status_code == 200, opened.text
    shared = opened.json()
    assert shared["design"]["id"] == design["id"]
    assert shared["design"]["name"] == design["name"]
    assert shared["design"]["current_version"]["sha256"] == sha256(STEP_FILE)
    assert shared["design"]["thumbnail_url"] is None  # the thumbnail route needs access
    assert "<strong>Gizli</strong>" in shared["description_html"]
    assert (shared["can_download"], shared["download_url"]) == (False, None)
    assert (await client.get(link["url"], headers=bob.headers)).status_code == 200
    # View only: no file.
    problem(await client.get(f"{link['url']}/file"), 403, "SHARE_LINK_VIEW_ONLY")
    # The link still does not open the design's own routes.
    problem(await client.get(f"{API}/designs/{design['id']}"), 404, "DESIGN_NOT_FOUND")
    # Its use is recorded.
    [item] = (await list_links(client, alice, design["id"])).json()["items"]
    assert item["last_used_at"] is not None
    # Tokens that are not links.
    for wrong in (token[:-1], token + "x", "tzs_" + "A" * 32, "x"):
        problem(await client.get(f"{API}/shared/{wrong}"), 404, "SHARE_LINK_NOT_FOUND")
        problem(await client.get(f"{API}/shared/{wrong}/file"), 404, "SHARE_LINK_NOT_FOUND")
    # Every link has its own token.
    second = await create_link(client, alice, design["id"])
    assert second["token"] != token
    assert len((await list_links(client, alice, design["id"])).json()["items"]) == 2


async def test_a_download_link_serves_the_current_version(
    client: httpx.AsyncClient, alice: Account
) -> None:
    design = await new_design(client, alice, visibility="private")
    empty = await create_link(client, alice, design["id"], can_download=True)
    problem(await client.get(f"{empty['url']}/file"), 409, "NO_VERSION")
    first = await added(client, alice, design["id"], STEP_FILE, "ilk.step")
    second = await added(client, alice, design["id"], STL_TRIANGLE, "şase.stl")
    link = await create_link(client, alice, design["id"], can_download=True)
    opened = (await client.get(link["url"])).json()
    assert opened["can_download"] is True
    assert opened["download_url"] == f"{link['url']}/file"
    file = await client.get(opened["download_url"])
    assert file.status_code == 200, file.text
    assert file.content == STL_TRIANGLE
    assert file.headers["etag"] == f'"{second["sha256"]}"'
    assert file.headers["cache-control"] == "private, no-store"
    assert "%C5%9Fase.stl" in file.headers["content-disposition"]
    part = await client.get(opened["download_url"], headers={"Range": "bytes=6-15"})
    assert part.status_code == 206
    assert part.content == STL_TRIANGLE[6:16]
    assert part.headers["content-range"] == f"bytes 6-15/{len(STL_TRIANGLE)}"
    refused = await client.get(opened["download_url"], headers={"Range": "bytes=9999-"})
    problem(refused, 416, "RANGE_NOT_SATISFIABLE")
    cached = await client.get(
        opened["download_url"], headers={"If-None-Match": file.headers["etag"]}
    )
    assert cached.status_code == 304
    # Another version made current: the same link now serves it.
    marked = await client.post(
        f"{API}/designs/{design['id']}/versions/{first['id']}/current", headers=alice.headers
    )
    assert marked.status_code == 200, marked.text
    assert (await client.get(opened["download_url"])).content == STEP_FILE


async def test_expired_revoked_and_deleted(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    design = await new_design(client, alice, visibility="private")
    await added(client, alice, design["id"], STEP_FILE)
    url = f"{API}/designs/{design['id']}/share-links"
    # An expiry must lie ahead, with or without a time zone (naive means UTC).
    for past in (
        (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "2020-01-01T00:00:00",
        datetime.now(UTC).replace(tzinfo=None).isoformat(),
    ):
        response = await client.post(url, json={"expires_at": past}, headers=alice.headers)
        body = problem(response, 422, "EXPIRY_IN_PAST")
        assert "expires_at" in body["field_errors"]
    naive_future = (datetime.now(UTC) + timedelta(days=2)).replace(tzinfo=None, microsecond=0)
    naive = await create_link(client, alice, design["id"], expires_at=naive_future.isoformat())
    assert datetime.fromisoformat(naive["expires_at"]) == naive_future.replace(tzinfo=UTC)
    assert (await client.get(naive["url"])).status_code == 200
    # A link that expires: works until then, then is gone.
    soon = datetime.now(UTC) + timedelta(hours=1)
    expiring = await create_link(
        client, alice, design["id"], can_download=True, expires_at=soon.isoformat()
    )
    assert datetime.fromisoformat(expiring["expires_at"]) == soon
    assert (await client.get(expiring["url"])).status_code == 200
    await set_link(app, expiring["id"], expires_at=datetime.now(UTC) - timedelta(seconds=1))
    problem(await client.get(expiring["url"]), 404, "SHARE_LINK_NOT_FOUND")
    problem(await client.get(f"{expiring['url']}/file"), 404, "SHARE_LINK_NOT_FOUND")
    # Revoked: gone at once; revoking again changes nothing.
    revocable = await create_link(client, alice, design["id"], can_download=True)
    assert (await client.get(f"{revocable['url']}/file")).status_code == 200
    revoked = await client.delete(f"{url}/{revocable['id']}", headers=alice.headers)
    assert revoked.status_code == 204, revoked.text
    problem(await client.get(revocable["url"]), 404, "SHARE_LINK_NOT_FOUND")
    problem(await client.get(f"{revocable['url']}/file"), 404, "SHARE_LINK_NOT_FOUND")
    [row] = [
        i
        for i in (await list_links(client, alice, design["id"])).json()["items"]
        if i["id"] == revocable["id"]
    ]
    assert row["revoked_at"] is not None
    again = await client.delete(f"{url}/{revocable['id']}", headers=alice.headers)
    assert again.status_code == 204
    [row_again] = [
        i
        for i in (await list_links(client, alice, design["id"])).json()["items"]
        if i["id"] == revocable["id"]
    ]
    assert row_again["revoked_at"] == row["revoked_at"]
    problem(
        await client.delete(f"{url}/{uuid.uuid4()}", headers=alice.headers),
        404,
        "SHARE_LINK_NOT_FOUND",
    )
    # A link of one design cannot be revoked through another.
    other = await new_design(client, alice, visibility="private")
    live = await create_link(client, alice, design["id"])
    problem(
        await client.delete(
            f"{API}/designs/{other['id']}/share-links/{live['id']}", headers=alice.headers
        ),
        404,
        "SHARE_LINK_NOT_FOUND",
    )
    assert (await client.get(live["url"])).status_code == 200
    # The design in the trash: its links stop working (with the PIN or without).
    protected = await create_link(client, alice, design["id"], pin="2468", can_download=True)
    deleted = await client.delete(f"{API}/designs/{design['id']}", headers=alice.headers)
    assert deleted.status_code == 204
    for link in (live, naive, protected):
        problem(await client.get(link["url"], headers=pin("2468")), 404, "SHARE_LINK_NOT_FOUND")
        problem(
            await client.get(f"{link['url']}/file", headers=pin("2468")),
            404,
            "SHARE_LINK_NOT_FOUND",
        )


async def test_pin_protected_links(client: httpx.AsyncClient, alice: Account) -> None:
    design = await new_design(client, alice, visibility="private")
    await added(client, alice, design["id"], STEP_FILE)
    url = f"{API}/designs/{design['id']}/share-links"
    for bad in ("123", "12345678901234", "12a4", "", 1234):
        response = await client.post(url, json={"pin": bad}, headers=alice.headers)
        problem(response, 422, "VALIDATION_ERROR")
    link = await create_link(client, alice, design["id"], pin="0482", can_download=True)
    assert link["has_pin"] is True
    assert "pin" not in link
    assert "0482" not in (await list_links(client, alice, design["id"])).text
    for target in (link["url"], f"{link['url']}/file"):
        problem(await client.get(target), 401, "SHARE_PIN_REQUIRED")
        problem(await client.get(target, headers=pin("")), 401, "SHARE_PIN_REQUIRED")
        problem(await client.get(target, headers=pin("0483")), 401, "SHARE_PIN_WRONG")
    opened = await client.get(link["url"], headers=pin("0482"))
    assert opened.status_code == 200, opened.text
    assert opened.json()["design"]["id"] == design["id"]
    file = await client.get(f"{link['url']}/file", headers=pin("0482"))
    assert (file.status_code, file.content) == (200, STEP_FILE)
    # "0482" is not "482": a PIN is a string of digits.
    problem(await client.get(link["url"], headers=pin("482")), 401, "SHARE_PIN_WRONG")


async def test_pin_guesses_are_rate_limited_per_link(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    design = await new_design(client, alice, visibility="private")
    await added(client, alice, design["id"], STEP_FILE)
    link = await create_link(client, alice, design["id"], pin="7391", can_download=True)
    other = await create_link(client, alice, design["id"], pin="7391")
    for guess in ("0000", "1111", "2222", "3333", "4444"):
        problem(await client.get(link["url"], headers=pin(guess)), 401, "SHARE_PIN_WRONG")
    limited = await client.get(link["url"], headers=pin("5555"))
    problem(limited, 429, "RATE_LIMITED")
    assert int(limited.headers["retry-after"]) >= 1
    # Locked means locked: the right PIN is refused too, so the lock tells nothing.
    problem(await client.get(link["url"], headers=pin("7391")), 429, "RATE_LIMITED")
    problem(await client.get(f"{link['url']}/file", headers=pin("7391")), 429, "RATE_LIMITED")
    # From another address, the same link is still locked (the limit is the link's).
    async with client_for(app, "198.51.100.9") as elsewhere:
        problem(await elsewhere.get(link["url"], headers=pin("7391")), 429, "RATE_LIMITED")
    # Another link of the same design is not affected.
    assert (await client.get(other["url"], headers=pin("7391"))).status_code == 200
    # Asking without a PIN is not a guess.
    problem(await client.get(other["url"]), 401, "SHARE_PIN_REQUIRED")


async def test_right_pins_do_not_use_up_the_guesses(
    client: httpx.AsyncClient, alice: Account
) -> None:
    """A PIN link handed to a team, or a download that resumes, keeps working: only wrong PINs
    count against the link's limit."""
    design = await new_design(client, alice, visibility="private")
    await added(client, alice, design["id"], STEP_FILE)
    link = await create_link(client, alice, design["id"], pin="7391", can_download=True)
    for _ in range(8):
        assert (await client.get(link["url"], headers=pin("7391"))).status_code == 200
    for guess in ("0000", "1111", "2222", "3333"):
        problem(await client.get(link["url"], headers=pin(guess)), 401, "SHARE_PIN_WRONG")
    assert (await client.get(link["url"], headers=pin("7391"))).status_code == 200
    problem(await client.get(link["url"], headers=pin("4444")), 401, "SHARE_PIN_WRONG")
    problem(await client.get(link["url"], headers=pin("7391")), 429, "RATE_LIMITED")


async def test_only_the_design_team_manages_links(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    team = await create_team(client, alice, f"Paylaşım {uuid.uuid4().hex[:6]}")
    engineer = await register(client, display_name="Mühendis")
    viewer = await register(client, display_name="İzleyici")
    await add_member(app, team["id"], engineer.id, "engineer")
    await add_member(app, team["id"], viewer.id, "viewer")
    private = await new_design(client, alice, workspace_id=team["id"], visibility="private")
    public = await new_design(client, alice, workspace_id=team["id"], visibility="public")
    link = await create_link(client, engineer, private["id"], label="mühendisten")
    url = f"{API}/designs/{private['id']}/share-links"
    # A viewer sees the design but may not share it.
    problem(await client.post(url, json={}, headers=viewer.headers), 403, "MISSING_PERMISSION")
    problem(await client.get(url, headers=viewer.headers), 403, "MISSING_PERMISSION")
    problem(
        await client.delete(f"{url}/{link['id']}", headers=viewer.headers),
        403,
        "MISSING_PERMISSION",
    )
    # Outsiders do not learn that a private design exists; a public one they may not share.
    problem(await client.post(url, json={}, headers=bob.headers), 404, "DESIGN_NOT_FOUND")
    problem(await client.get(url, headers=bob.headers), 404, "DESIGN_NOT_FOUND")
    problem(
        await client.delete(f"{url}/{link['id']}", headers=bob.headers), 404, "DESIGN_NOT_FOUND"
    )
    public_url = f"{API}/designs/{public['id']}/share-links"
    problem(await client.post(public_url, json={}, headers=bob.headers), 403, "MISSING_PERMISSION")
    problem(await client.get(public_url, headers=bob.headers), 403, "MISSING_PERMISSION")
    assert (await client.post(url, json={})).status_code == 401
    assert (await client.get(url)).status_code == 401
    # API keys are not people: they may not hand out links.
    created = await client.post(
        f"{API}/workspaces/{team['id']}/api-keys",
        json={"name": "robot", "scopes": ["designs:read", "designs:write"]},
        headers=alice.headers,
    )
    assert created.status_code == 201, created.text
    key = {"X-API-Key": created.json()["key"]}
    problem(await client.post(url, json={}, headers=key), 403, "API_KEY_NOT_ALLOWED")
    # The link survives all that; the owner and the engineer manage it.
    assert (await client.get(link["url"])).status_code == 200
    [item] = (await list_links(client, alice, private["id"])).json()["items"]
    assert item["label"] == "mühendisten"
    assert (await client.delete(f"{url}/{link['id']}", headers=alice.headers)).status_code == 204
    problem(await client.get(link["url"]), 404, "SHARE_LINK_NOT_FOUND")
    # Unknown fields are refused.
    problem(
        await client.post(url, json={"token": "tzs_mine"}, headers=engineer.headers),
        422,
        "VALIDATION_ERROR",
    )
