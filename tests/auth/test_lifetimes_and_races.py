"""How long things live and what happens when requests race: signed-out access tokens,
refresh chains that cannot outlive their login, delivered mail that forgets its links, a reset
that lifts a lockout, paged member/invitation/key lists, and owners or slugs fought over by two
requests at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from tests.auth.conftest import (
    PASSWORD,
    Account,
    MailBox,
    StartApp,
    db_scalars,
    login,
    register,
    token_in,
    unique_email,
)
from tests.auth.test_workspaces import add_member, create_team

from tezgah.auth.models import Membership, RefreshToken
from tezgah.core.config import Settings
from tezgah.core.mail import OutboxMail

API = "/api/v1"


async def me_status(client: httpx.AsyncClient, access_token: str) -> int:
    response = await client.get(
        f"{API}/auth/me", headers={"Authorization": f"Bearer {access_token}"}
    )
    return response.status_code


async def test_logout_ends_the_logins_access_tokens_at_once_and_no_other(
    client: httpx.AsyncClient, account: Account
) -> None:
    other = await login(client, account.email)
    assert await me_status(client, account.access_token) == 200
    response = await client.post(
        f"{API}/auth/logout", json={"refresh_token": account.refresh_token}
    )
    assert response.status_code == 204
    assert await me_status(client, account.access_token) == 401
    # Another login of the same person is untouched.
    assert await me_status(client, other["access_token"]) == 200


async def test_browser_sign_out_ends_the_session_cookie_at_once(
    client: httpx.AsyncClient, account: Account
) -> None:
    signed_in = await client.post(
        f"{API}/auth/session", json={"email": account.email, "password": PASSWORD}
    )
    assert signed_in.status_code == 200
    access_cookie = client.cookies.get("tezgah_access")
    csrf = signed_in.json()["csrf_token"]
    assert access_cookie
    out = await client.delete(f"{API}/auth/session", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    # A copy of the cookie kept by an attacker no longer works.
    client.cookies.set("tezgah_access", access_cookie)
    replay = await client.get(f"{API}/auth/me")
    assert replay.status_code == 401


async def test_a_refresh_chain_keeps_the_end_of_its_login(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    token = account.refresh_token
    for _ in range(3):
        response = await client.post(f"{API}/auth/refresh", json={"refresh_token": token})
        assert response.status_code == 200
        token = response.json()["refresh_token"]
    rows = await db_scalars(
        app,
        select(RefreshToken).where(RefreshToken.user_id == uuid.UUID(account.id)),
    )
    family = [row for row in rows if row.family_id == rows[0].family_id]
    assert len(family) == 4
    assert {row.expires_at for row in family} == {family[0].expires_at}


async def test_delivered_mail_keeps_no_link_in_the_outbox(
    app: FastAPI, client: httpx.AsyncClient, mailbox: MailBox
) -> None:
    address = unique_email("outbox")
    await register(client, address)
    message = await mailbox.wait_for(address)
    assert token_in(message)
    for _ in range(100):
        rows = await db_scalars(app, select(OutboxMail).where(OutboxMail.to_address == address))
        if rows and rows[0].sent_at is not None:
            break
        await asyncio.sleep(0.02)
    assert rows[0].sent_at is not None
    assert rows[0].body_text == ""


async def test_a_password_reset_lifts_a_lockout(
    auth_settings: Callable[..., Settings], start_app: StartApp, mailbox: MailBox
) -> None:
    _app, client = await start_app(auth_settings(lockout_threshold=2, lockout_base_seconds=600))
    account = await register(client)
    for _ in range(2):
        wrong = await client.post(
            f"{API}/auth/token", data={"username": account.email, "password": "wrong-" + PASSWORD}
        )
        assert wrong.status_code == 401
    locked = await client.post(
        f"{API}/auth/token", data={"username": account.email, "password": PASSWORD}
    )
    assert locked.status_code == 429
    assert locked.json()["error_code"] == "ACCOUNT_LOCKED"
    before = len(mailbox.to(account.email))
    assert (
        await client.post(f"{API}/auth/password/forgot", json={"email": account.email})
    ).status_code == 202
    token = token_in(await mailbox.wait_for(account.email, count=before + 1))
    new_password = PASSWORD + "-reset"
    reset = await client.post(
        f"{API}/auth/password/reset", json={"token": token, "new_password": new_password}
    )
    assert reset.status_code == 200, reset.text
    assert (await login(client, account.email, new_password))["access_token"]


async def test_member_invitation_and_key_lists_are_paged(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    team = await create_team(client, account)
    others = [await register(client) for _ in range(2)]
    for other in others:
        await add_member(app, team["id"], other.id, "viewer")
    for number in range(3):
        invited = await client.post(
            f"{API}/workspaces/{team['id']}/invitations",
            json={"email": unique_email(f"inv{number}"), "role": "viewer"},
            headers=account.headers,
        )
        assert invited.status_code == 201
        key = await client.post(
            f"{API}/workspaces/{team['id']}/api-keys",
            json={"name": f"cnc-{number}", "scopes": ["cam:run"]},
            headers=account.headers,
        )
        assert key.status_code == 201
    for path, total in (("members", 3), ("invitations", 3), ("api-keys", 3)):
        seen: list[Any] = []
        url = f"{API}/workspaces/{team['id']}/{path}?limit=2"
        while url:
            response = await client.get(url, headers=account.headers)
            assert response.status_code == 200, response.text
            body = response.json()
            assert len(body["items"]) <= 2
            seen += body["items"]
            cursor = body["next_cursor"]
            assert ("link" in response.headers) == (cursor is not None)
            url = f"{API}/workspaces/{team['id']}/{path}?limit=2&cursor={cursor}" if cursor else ""
        assert len(seen) == total, path
        assert len({repr(item) for item in seen}) == total, path


async def test_two_owners_demoting_each_other_at_once_leave_one_owner(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    for _ in range(3):
        team = await create_team(client, account, name="Race")
        second = await register(client)
        await add_member(app, team["id"], second.id, "owner")
        first_demotes_second = client.patch(
            f"{API}/workspaces/{team['id']}/members/{second.id}",
            json={"role": "engineer"},
            headers=account.headers,
        )
        second_demotes_first = client.patch(
            f"{API}/workspaces/{team['id']}/members/{account.id}",
            json={"role": "engineer"},
            headers=second.headers,
        )
        results = await asyncio.gather(first_demotes_second, second_demotes_first)
        statuses = sorted(response.status_code for response in results)
        owners = await db_scalars(
            app,
            select(func.count())
            .select_from(Membership)
            .where(
                Membership.workspace_id == uuid.UUID(team["id"]),
                Membership.role == "owner",
            ),
        )
        assert owners == [1], statuses
        assert statuses[0] == 200
        # The loser is told why (409 LAST_OWNER), or could not even see it was still an owner.
        assert statuses[1] in (403, 409), [r.text for r in results]


async def test_one_explicit_slug_asked_for_twice_at_once_is_given_once(
    client: httpx.AsyncClient, account: Account
) -> None:
    other = await register(client)
    slug = "race-" + unique_email("s").split("@")[0][-8:].lower()
    results = await asyncio.gather(
        client.post(f"{API}/workspaces", json={"name": "A", "slug": slug}, headers=account.headers),
        client.post(f"{API}/workspaces", json={"name": "B", "slug": slug}, headers=other.headers),
    )
    statuses = sorted(response.status_code for response in results)
    assert statuses == [201, 409], [r.text for r in results]
    loser = next(response for response in results if response.status_code == 409)
    assert loser.json()["error_code"] == "SLUG_TAKEN"
