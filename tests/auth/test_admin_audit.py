"""Server administration and the audit trail: superusers page through, search and filter
accounts, deactivate and re-activate them (with immediate effect), grant and revoke the role but
never take it from themselves; security events carry actor, address, user agent and the
response's request id, are read by workspace owners and superusers, and the database refuses to
change or delete them."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError
from tests.auth.conftest import (
    PASSWORD,
    Account,
    MailBox,
    body_of,
    db_scalars,
    db_user,
    register,
    set_user_flags,
    unique_email,
)

from tezgah.auth.models import AuditEvent, Membership, RefreshToken, User
from tezgah.auth.repository import email_key
from tezgah.core.db import utcnow

API = "/api/v1"
CLIENT_IP = "203.0.113.7"  # the address of the test client (tests/conftest.py)
NEW_PASSWORD = "Başka-Parola-2024-xyz"


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["error_code"] == code, body
    return body


async def superuser(app: FastAPI, client: httpx.AsyncClient) -> Account:
    account = await register(client, display_name="Root")
    await set_user_flags(app, account.id, is_superuser=True)
    return account


async def tagged_users(app: FastAPI, tag: str, names: list[str]) -> list[str]:
    """Set-up only: accounts written straight to the database, one second apart (oldest
    first); their emails and names carry ``tag``."""
    start = utcnow() - timedelta(hours=1)
    ids = []
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        for position, name in enumerate(names):
            address = f"{tag}-{position}@Example.com"
            user = User(
                email=address,
                email_key=email_key(address),
                display_name=f"{name} {tag}",
                tokens_valid_after=start,
                created_at=start + timedelta(seconds=position),
                updated_at=start,
            )
            session.add(user)
            await session.flush()
            ids.append(str(user.id))
    return ids


async def list_users(client: httpx.AsyncClient, admin: Account, **params: Any) -> httpx.Response:
    return await client.get(f"{API}/admin/users", params=params, headers=admin.headers)


def ids_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def tag() -> str:
    return "t" + uuid.uuid4().hex[:10]


# Accounts -----------------------------------------------------------------------------------


async def test_superusers_page_through_accounts_with_cursors_and_links(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await superuser(app, client)
    marker = tag()
    created = await tagged_users(app, marker, ["Ada", "Bora", "Cem", "Deniz", "Ece"])

    seen: list[str] = []
    response = await list_users(client, admin, q=marker, limit=2)
    pages = 0
    while True:
        pages += 1
        page = ids_of(response)
        assert len(page) == (2 if pages < 3 else 1)
        seen += page
        cursor = response.json()["next_cursor"]
        if cursor is None:
            assert "link" not in response.headers
            break
        link = re.fullmatch(r'<([^>]+)>; rel="next"', response.headers["link"])
        assert link, response.headers["link"]
        following = httpx.URL(link.group(1))
        assert following.params["cursor"] == cursor
        assert following.params["q"] == marker  # the other parameters are kept
        assert following.params["limit"] == "2"
        response = await client.get(following.path, params=following.params, headers=admin.headers)
    assert pages == 3
    assert seen == created[::-1]  # newest first, each account once

    by_email = await list_users(client, admin, q=marker, sort="email", limit=10)
    assert ids_of(by_email) == created
    item = by_email.json()["items"][0]
    assert item["email"] == f"{marker}-0@Example.com"
    assert "password_hash" not in item
    problem(await list_users(client, admin, q=marker, sort="password_hash"), 400, "INVALID_SORT")


async def test_search_matches_part_of_email_or_name_case_insensitively_and_literally(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await superuser(app, client)
    marker = tag()
    snake, snakey, percent, thousand = await tagged_users(
        app, marker, ["Snake_case", "Snakeycase", "Kapasite 100%", "Kapasite 1000"]
    )

    assert set(ids_of(await list_users(client, admin, q=marker.upper(), limit=100))) == {
        snake,
        snakey,
        percent,
        thousand,
    }
    assert ids_of(await list_users(client, admin, q=f"{marker}-2@EXAMPLE")) == [percent]
    assert ids_of(await list_users(client, admin, q=f"SNAKEYCASE {marker}")) == [snakey]

    underscore = ids_of(await list_users(client, admin, q="e_c", limit=100))
    assert snake in underscore
    assert snakey not in underscore  # "_" is not a wildcard
    percent_sign = ids_of(await list_users(client, admin, q="100%", limit=100))
    assert percent in percent_sign
    assert thousand not in percent_sign  # nor is "%"
    assert ids_of(await list_users(client, admin, q=f"nobody-{marker}")) == []


async def test_the_active_filter(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await superuser(app, client)
    marker = tag()
    first, second, third = await tagged_users(app, marker, ["A", "B", "C"])
    response = await client.patch(
        f"{API}/admin/users/{second}", json={"is_active": False}, headers=admin.headers
    )
    assert response.json()["is_active"] is False

    assert ids_of(await list_users(client, admin, q=marker, active="false")) == [second]
    assert ids_of(await list_users(client, admin, q=marker, active="true")) == [third, first]
    assert len(ids_of(await list_users(client, admin, q=marker))) == 3


async def test_a_deactivated_account_is_shut_out_at_once_until_reactivated(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await superuser(app, client)
    victim = await register(client)
    assert (await client.get(f"{API}/auth/me", headers=victim.headers)).status_code == 200

    response = await client.patch(
        f"{API}/admin/users/{victim.id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is False

    problem(await client.get(f"{API}/auth/me", headers=victim.headers), 401, "ACCOUNT_INACTIVE")
    problem(
        await client.get(
            f"{API}/workspaces/{victim.personal_workspace_id}", headers=victim.headers
        ),
        401,
        "ACCOUNT_INACTIVE",
    )
    problem(
        await client.post(f"{API}/auth/refresh", json={"refresh_token": victim.refresh_token}),
        401,
        "INVALID_TOKEN",
    )
    problem(
        await client.post(
            f"{API}/auth/token", data={"username": victim.email, "password": PASSWORD}
        ),
        401,
        "ACCOUNT_INACTIVE",
    )
    user = await db_user(app, victim.id)
    assert user.deactivated_at is not None
    reasons = await db_scalars(
        app,
        select(RefreshToken.revoked_reason).where(RefreshToken.user_id == uuid.UUID(victim.id)),
    )
    assert reasons == ["deactivated"]

    response = await client.patch(
        f"{API}/admin/users/{victim.id}", json={"is_active": True}, headers=admin.headers
    )
    assert response.json()["is_active"] is True
    assert (await db_user(app, victim.id)).deactivated_at is None
    fresh = await client.post(
        f"{API}/auth/token", data={"username": victim.email, "password": PASSWORD}
    )
    assert fresh.status_code == 200, fresh.text
    new_headers = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    assert (await client.get(f"{API}/auth/me", headers=new_headers)).status_code == 200
    # Tokens from before the deactivation stay dead.
    problem(await client.get(f"{API}/auth/me", headers=victim.headers), 401, "INVALID_TOKEN")

    events = await db_scalars(
        app,
        select(AuditEvent)
        .where(AuditEvent.subject_user_id == uuid.UUID(victim.id))
        .where(AuditEvent.event.in_(["user.deactivated", "user.activated"]))
        .order_by(AuditEvent.occurred_at),
    )
    assert [(e.event, e.actor_user_id) for e in events] == [
        ("user.deactivated", uuid.UUID(admin.id)),
        ("user.activated", uuid.UUID(admin.id)),
    ]


async def test_superuser_role_is_granted_and_revoked_with_immediate_effect(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await superuser(app, client)
    other = await register(client)
    problem(await list_users(client, other), 403, "SUPERUSER_REQUIRED")

    granted = await client.patch(
        f"{API}/admin/users/{other.id}", json={"is_superuser": True}, headers=admin.headers
    )
    assert granted.json()["is_superuser"] is True
    assert (await list_users(client, other, limit=1)).status_code == 200

    revoked = await client.patch(
        f"{API}/admin/users/{other.id}", json={"is_superuser": False}, headers=admin.headers
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["is_superuser"] is False
    problem(await list_users(client, other), 403, "SUPERUSER_REQUIRED")
    assert (await db_user(app, other.id)).is_superuser is False
    events = await db_scalars(
        app,
        select(AuditEvent.event)
        .where(AuditEvent.subject_user_id == uuid.UUID(other.id))
        .where(AuditEvent.event.like("user.superuser_%"))
        .order_by(AuditEvent.occurred_at),
    )
    assert events == ["user.superuser_granted", "user.superuser_revoked"]


async def test_a_superuser_cannot_deactivate_or_demote_themselves(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await superuser(app, client)
    url = f"{API}/admin/users/{admin.id}"
    for change in (
        {"is_active": False},
        {"is_superuser": False},
        {"is_active": False, "is_superuser": True},
    ):
        problem(
            await client.patch(url, json=change, headers=admin.headers), 409, "CANNOT_DEMOTE_SELF"
        )
    turkish = await client.patch(
        url, json={"is_superuser": False}, headers={**admin.headers, "Accept-Language": "tr"}
    )
    assert "yönetici rolünüzü" in problem(turkish, 409, "CANNOT_DEMOTE_SELF")["detail"]

    user = await db_user(app, admin.id)
    assert (user.is_active, user.is_superuser) == (True, True)
    assert (await client.patch(url, json={"is_active": True}, headers=admin.headers)).is_success


async def test_unknown_accounts_and_non_superusers(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await superuser(app, client)
    ordinary = await register(client)
    problem(
        await client.patch(
            f"{API}/admin/users/{uuid.uuid4()}", json={"is_active": False}, headers=admin.headers
        ),
        404,
        "USER_NOT_FOUND",
    )
    problem(
        await client.patch(
            f"{API}/admin/users/{admin.id}", json={"is_active": False}, headers=ordinary.headers
        ),
        403,
        "SUPERUSER_REQUIRED",
    )
    problem(
        await client.get(f"{API}/admin/audit-events", headers=ordinary.headers),
        403,
        "SUPERUSER_REQUIRED",
    )
    assert (await db_user(app, admin.id)).is_active is True


# Audit events ---------------------------------------------------------------------------------


async def event_of(app: FastAPI, response: httpx.Response, name: str) -> AuditEvent:
    """The one event ``name`` written while answering ``response``."""
    request_id = response.headers["x-request-id"]
    events = await db_scalars(
        app,
        select(AuditEvent).where(AuditEvent.request_id == request_id, AuditEvent.event == name),
    )
    assert len(events) == 1, (name, request_id, events)
    event: AuditEvent = events[0]
    assert event.ip == CLIENT_IP
    return event


def agent() -> dict[str, str]:
    return {"User-Agent": f"cnc-cell/{uuid.uuid4().hex[:8]}"}


async def test_logins_and_failed_logins_are_recorded_with_their_request(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await register(client)
    request_id = f"req-{uuid.uuid4().hex}"
    headers = {**agent(), "X-Request-ID": request_id}

    ok = await client.post(
        f"{API}/auth/token",
        data={"username": account.email, "password": PASSWORD},
        headers=headers,
    )
    assert ok.status_code == 200
    assert ok.headers["x-request-id"] == request_id
    event = await event_of(app, ok, "login.succeeded")
    assert event.actor_user_id == uuid.UUID(account.id)
    assert event.subject_user_id == uuid.UUID(account.id)
    assert event.user_agent == headers["User-Agent"]
    assert event.request_id == request_id
    assert event.outcome == "success"
    assert event.details == {"method": "password"}

    headers = agent()
    failed = await client.post(
        f"{API}/auth/token",
        data={"username": account.email, "password": "wrong-" + PASSWORD},
        headers=headers,
    )
    problem(failed, 401, "INVALID_CREDENTIALS")
    event = await event_of(app, failed, "login.failed")  # kept although the request failed
    assert event.outcome == "failure"
    assert event.actor_user_id is None
    assert event.subject_user_id == uuid.UUID(account.id)
    assert event.user_agent == headers["User-Agent"]

    nobody = await client.post(
        f"{API}/auth/token", data={"username": unique_email("ghost"), "password": PASSWORD}
    )
    problem(nobody, 401, "INVALID_CREDENTIALS")
    event = await event_of(app, nobody, "login.failed")
    assert (event.subject_user_id, event.details) == (None, {"reason": "unknown_account"})


async def test_keys_roles_invitations_passwords_and_mfa_are_recorded(
    app: FastAPI, client: httpx.AsyncClient, mailbox: MailBox
) -> None:
    owner = await register(client)
    member = await register(client)
    invitee = await register(client)
    team = await client.post(f"{API}/workspaces", json={"name": "Audit"}, headers=owner.headers)
    workspace_id = team.json()["id"]
    base = f"{API}/workspaces/{workspace_id}"
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        session.add(
            Membership(
                workspace_id=uuid.UUID(workspace_id), user_id=uuid.UUID(member.id), role="viewer"
            )
        )

    def check(event: AuditEvent, actor: Account, headers: dict[str, str]) -> None:
        assert event.actor_user_id == uuid.UUID(actor.id)
        assert event.user_agent == headers["User-Agent"]
        assert event.outcome == "success"

    headers = agent()
    created = await client.post(
        f"{base}/api-keys",
        json={"name": "mill", "scopes": ["cam:run"]},
        headers={**owner.headers, **headers},
    )
    event = await event_of(app, created, "api_key.created")
    check(event, owner, headers)
    assert (event.workspace_id, event.target_type, event.target_id) == (
        uuid.UUID(workspace_id),
        "api_key",
        created.json()["id"],
    )
    assert event.details == {"scopes": ["cam:run"], "prefix": created.json()["prefix"]}
    assert created.json()["key"] not in str(event.details)

    headers = agent()
    revoked = await client.delete(
        f"{base}/api-keys/{created.json()['id']}", headers={**owner.headers, **headers}
    )
    event = await event_of(app, revoked, "api_key.revoked")
    check(event, owner, headers)
    assert event.target_id == created.json()["id"]

    headers = agent()
    changed = await client.patch(
        f"{base}/members/{member.id}",
        json={"role": "engineer"},
        headers={**owner.headers, **headers},
    )
    event = await event_of(app, changed, "member.role_changed")
    check(event, owner, headers)
    assert event.subject_user_id == uuid.UUID(member.id)
    assert event.details == {"previous_role": "viewer", "role": "engineer"}

    headers = agent()
    invited = await client.post(
        f"{base}/invitations",
        json={"email": invitee.email, "role": "operator"},
        headers={**owner.headers, **headers},
    )
    event = await event_of(app, invited, "invitation.created")
    check(event, owner, headers)
    assert (event.target_type, event.target_id) == ("invitation", invited.json()["id"])
    assert event.details == {"role": "operator"}
    message = await mailbox.wait_for(invitee.email, 2)
    token = re.search(r"token=([A-Za-z0-9_\-]+)", body_of(message))
    assert token

    headers = agent()
    accepted = await client.post(
        f"{API}/invitations/accept",
        json={"token": token.group(1)},
        headers={**invitee.headers, **headers},
    )
    event = await event_of(app, accepted, "invitation.accepted")
    check(event, invitee, headers)
    assert (event.workspace_id, event.target_id) == (uuid.UUID(workspace_id), invited.json()["id"])

    headers = agent()
    password = await client.post(
        f"{API}/auth/password/change",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers={**member.headers, **headers},
    )
    assert password.status_code == 200, password.text
    check(await event_of(app, password, "password.changed"), member, headers)

    setup = await client.post(
        f"{API}/auth/mfa/totp/setup", json={"password": PASSWORD}, headers=invitee.headers
    )
    headers = agent()
    confirmed = await client.post(
        f"{API}/auth/mfa/totp/confirm",
        json={"code": pyotp.TOTP(setup.json()["secret"]).now()},
        headers={**invitee.headers, **headers},
    )
    assert confirmed.status_code == 200, confirmed.text
    check(await event_of(app, confirmed, "mfa.enabled"), invitee, headers)


async def workspace_with_history(
    app: FastAPI, client: httpx.AsyncClient
) -> tuple[str, Account, Account]:
    """A team workspace whose owner changed an admin's role back and forth (five events of
    its own: created, three role changes, one invitation)."""
    owner = await register(client)
    admin = await register(client)
    response = await client.post(f"{API}/workspaces", json={"name": "Log"}, headers=owner.headers)
    workspace_id = str(response.json()["id"])
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        session.add(
            Membership(
                workspace_id=uuid.UUID(workspace_id), user_id=uuid.UUID(admin.id), role="admin"
            )
        )
    url = f"{API}/workspaces/{workspace_id}/members/{admin.id}"
    for role in ("engineer", "viewer", "admin"):
        changed = await client.patch(url, json={"role": role}, headers=owner.headers)
        assert changed.status_code == 200
    invited = await client.post(
        f"{API}/workspaces/{workspace_id}/invitations",
        json={"email": unique_email(), "role": "viewer"},
        headers=owner.headers,
    )
    assert invited.status_code == 201
    return workspace_id, owner, admin


async def test_workspace_owners_read_their_workspaces_events(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    workspace_id, owner, admin = await workspace_with_history(app, client)
    other_id, _, _ = await workspace_with_history(app, client)
    url = f"{API}/workspaces/{workspace_id}/audit-events"

    events: list[dict[str, Any]] = []
    response = await client.get(url, params={"limit": 2}, headers=owner.headers)
    while True:
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) <= 2
        events += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
        assert "cursor=" in response.headers["link"]
        response = await client.get(
            url, params={"limit": 2, "cursor": cursor}, headers=owner.headers
        )
    assert [e["event"] for e in events] == [
        "invitation.created",
        "member.role_changed",
        "member.role_changed",
        "member.role_changed",
        "workspace.created",
    ]
    assert {e["workspace_id"] for e in events} == {workspace_id}
    assert len({e["id"] for e in events}) == 5
    stamps = [e["occurred_at"] for e in events]
    assert stamps == sorted(stamps, reverse=True)

    roles = await client.get(url, params={"event": "member.role_changed"}, headers=owner.headers)
    assert [e["details"]["role"] for e in roles.json()["items"]] == ["admin", "viewer", "engineer"]
    since = datetime.fromisoformat(stamps[1])
    recent = await client.get(url, params={"since": since.isoformat()}, headers=owner.headers)
    assert [e["id"] for e in recent.json()["items"]] == [e["id"] for e in events[:2]]
    naive = await client.get(
        url,
        params={"since": since.astimezone(UTC).replace(tzinfo=None).isoformat()},
        headers=owner.headers,
    )  # a time without a zone is UTC
    assert naive.status_code == 200, naive.text
    assert [e["id"] for e in naive.json()["items"]] == [e["id"] for e in events[:2]]

    problem(await client.get(url, headers=admin.headers), 403, "MISSING_PERMISSION")
    problem(
        await client.get(f"{API}/workspaces/{other_id}/audit-events", headers=owner.headers),
        404,
        "WORKSPACE_NOT_FOUND",
    )


async def test_superusers_read_the_whole_trail_with_filters(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    root = await superuser(app, client)
    workspace_id, owner, admin = await workspace_with_history(app, client)
    url = f"{API}/admin/audit-events"

    by_workspace = await client.get(
        url, params={"workspace_id": workspace_id, "limit": 100}, headers=root.headers
    )
    assert len(by_workspace.json()["items"]) == 5
    assert {e["workspace_id"] for e in by_workspace.json()["items"]} == {workspace_id}

    # A user's events: those they did and those done to them.
    by_user = await client.get(
        url, params={"user_id": admin.id, "limit": 100}, headers=root.headers
    )
    items = by_user.json()["items"]
    assert sorted(e["event"] for e in items) == [
        "login.succeeded",
        "member.role_changed",
        "member.role_changed",
        "member.role_changed",
        "user.registered",
    ]
    assert all(admin.id in (e["actor_user_id"], e["subject_user_id"]) for e in items)
    changes = [e for e in items if e["event"] == "member.role_changed"]
    assert {(e["actor_user_id"], e["subject_user_id"]) for e in changes} == {(owner.id, admin.id)}

    combined = await client.get(
        url,
        params={"user_id": owner.id, "event": "workspace.created", "workspace_id": workspace_id},
        headers=root.headers,
    )
    (only,) = combined.json()["items"]
    assert (only["event"], only["actor_user_id"], only["ip"]) == (
        "workspace.created",
        owner.id,
        CLIENT_IP,
    )
    page = await client.get(
        url, params={"event": "login.succeeded", "limit": 1}, headers=root.headers
    )
    assert [e["event"] for e in page.json()["items"]] == ["login.succeeded"]
    assert page.json()["next_cursor"] is not None
    assert 'rel="next"' in page.headers["link"]


async def change_audit_event(app: FastAPI, event_id: uuid.UUID, change: str) -> None:
    """Try to alter one audit row through SQLAlchemy, as any code of the app could."""
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        if change == "update":
            await session.execute(
                update(AuditEvent)
                .where(AuditEvent.id == event_id)
                .values(event="nothing.happened", actor_user_id=None)
            )
        elif change == "delete":
            await session.execute(delete(AuditEvent).where(AuditEvent.id == event_id))
        else:
            row = await session.get(AuditEvent, event_id)
            assert row is not None
            if change == "orm_update":
                row.ip = "198.51.100.1"
            else:
                await session.delete(row)
            await session.flush()


@pytest.mark.parametrize("change", ["update", "delete", "orm_update", "orm_delete"])
async def test_the_database_refuses_to_change_or_delete_audit_events(
    app: FastAPI, client: httpx.AsyncClient, change: str
) -> None:
    account = await register(client)
    (event,) = await db_scalars(
        app,
        select(AuditEvent).where(
            AuditEvent.actor_user_id == uuid.UUID(account.id),
            AuditEvent.event == "user.registered",
        ),
    )
    with pytest.raises(DBAPIError, match="append-only"):
        await change_audit_event(app, event.id, change)

    (after,) = await db_scalars(app, select(AuditEvent).where(AuditEvent.id == event.id))
    assert (after.event, after.actor_user_id, after.ip, after.occurred_at) == (
        "user.registered",
        uuid.UUID(account.id),
        event.ip,
        event.occurred_at,
    )
