"""Workspaces, members, roles and invitations: the personal workspace of every account, team
workspaces and their slugs, invitations mailed through a real SMTP server and accepted by their
addressee, the owner/admin rules, and access that follows membership on the very next request.

Statuses per caller kind are in ``test_authorization_matrix.py``; these tests check behaviour
and data.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select, update
from tests.auth.conftest import (
    Account,
    MailBox,
    body_of,
    db_scalars,
    register,
    token_in,
    unique_email,
)

from tezgah.auth.models import ApiKey, AuditEvent, Invitation, Membership, Workspace
from tezgah.core.db import utcnow

API = "/api/v1"


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["error_code"] == code, body
    return body


async def create_team(
    client: httpx.AsyncClient, owner: Account, name: str = "Team", **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        f"{API}/workspaces", json={"name": name, **extra}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def add_member(app: FastAPI, workspace_id: str, user_id: str, role: str) -> None:
    """Set-up only: a membership written straight to the database."""
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        session.add(
            Membership(workspace_id=uuid.UUID(workspace_id), user_id=uuid.UUID(user_id), role=role)
        )


async def role_in(app: FastAPI, workspace_id: str, user_id: str) -> str | None:
    roles = await db_scalars(
        app,
        select(Membership.role).where(
            Membership.workspace_id == uuid.UUID(workspace_id),
            Membership.user_id == uuid.UUID(user_id),
        ),
    )
    return roles[0] if roles else None


async def invite(
    client: httpx.AsyncClient, inviter: Account, workspace_id: str, address: str, role: str
) -> httpx.Response:
    return await client.post(
        f"{API}/workspaces/{workspace_id}/invitations",
        json={"email": address, "role": role},
        headers=inviter.headers,
    )


async def accept(client: httpx.AsyncClient, who: Account, token: str) -> httpx.Response:
    return await client.post(
        f"{API}/invitations/accept", json={"token": token}, headers=who.headers
    )


async def invitation_mail(
    mailbox: MailBox, address: str, workspace: dict[str, Any], seconds: float = 5.0
) -> EmailMessage:
    """The invitation to ``workspace`` delivered to ``address`` by the SMTP server (a registered
    invitee also received a verification mail)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        found = [m for m in mailbox.to(address) if workspace["name"] in str(m["Subject"])]
        if found:
            assert len(found) == 1, [m["Subject"] for m in found]
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no invitation to {workspace['name']} for {address}")


async def team_with(
    app: FastAPI, client: httpx.AsyncClient, **roles: str
) -> tuple[dict[str, Any], Account, dict[str, Account]]:
    """A team workspace owned by a new account, plus one new member per ``name=role``."""
    owner = await register(client, display_name="Owner")
    team = await create_team(client, owner, f"Team {uuid.uuid4().hex[:6]}")
    members: dict[str, Account] = {}
    for name, role in roles.items():
        members[name] = await register(client, display_name=name.capitalize())
        await add_member(app, team["id"], members[name].id, role)
    return team, owner, members


# Workspaces ---------------------------------------------------------------------------------


async def test_registration_creates_exactly_one_personal_workspace_owned_by_the_user(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    account = await register(client, display_name="Ayşe Yılmaz")

    rows = await db_scalars(
        app, select(Membership).where(Membership.user_id == uuid.UUID(account.id))
    )
    assert [m.role for m in rows] == ["owner"]
    workspaces = await db_scalars(
        app, select(Workspace).where(Workspace.id == rows[0].workspace_id)
    )
    assert workspaces[0].is_personal is True
    assert workspaces[0].created_by_id == uuid.UUID(account.id)
    assert workspaces[0].name == "Ayşe Yılmaz"
    assert workspaces[0].slug == "ayse-yilmaz" or workspaces[0].slug.startswith("ayse-yilmaz-")

    listed = (await client.get(f"{API}/workspaces", headers=account.headers)).json()["items"]
    assert [(w["id"], w["is_personal"], w["role"]) for w in listed] == [
        (str(rows[0].workspace_id), True, "owner")
    ]
    assert account.personal_workspace_id == str(rows[0].workspace_id)


async def test_team_workspace_slug_is_made_from_a_turkish_name(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        await session.execute(
            delete(Workspace).where(Workspace.slug.in_(["atolye-isik", "izmir-tezgah-unitesi"]))
        )
    owner = await register(client)

    first = await create_team(client, owner, "  Atölye Işık ")
    assert first["slug"] == "atolye-isik"
    assert first["name"] == "Atölye Işık"
    assert first["is_personal"] is False
    assert first["role"] == "owner"
    second = await create_team(client, owner, "ATÖLYE IŞIK")
    assert re.fullmatch(r"atolye-isik-[0-9a-f]{6}", second["slug"]), second["slug"]
    third = await create_team(client, owner, "İzmir Tezgâh Ünitesi")
    assert third["slug"] == "izmir-tezgah-unitesi"

    assert await role_in(app, first["id"], owner.id) == "owner"
    listed = (await client.get(f"{API}/workspaces", headers=owner.headers)).json()["items"]
    assert listed[0]["is_personal"] is True  # the personal workspace comes first
    assert {w["id"]: w["role"] for w in listed[1:]} == {
        first["id"]: "owner",
        second["id"]: "owner",
        third["id"]: "owner",
    }


async def test_explicit_taken_and_invalid_slugs(app: FastAPI, client: httpx.AsyncClient) -> None:
    owner = await register(client)
    other = await register(client)
    slug = f"cnc-{uuid.uuid4().hex[:8]}"

    created = await create_team(client, owner, "Whatever Name", slug=slug)
    assert created["slug"] == slug

    body = problem(
        await client.post(
            f"{API}/workspaces", json={"name": "Again", "slug": slug}, headers=other.headers
        ),
        409,
        "SLUG_TAKEN",
    )
    assert slug in body["detail"]
    for bad in ("Bad Slug", "-dash", "dash-", "a", "UPPER", "çay-evi", "x" * 65):
        body = problem(
            await client.post(
                f"{API}/workspaces", json={"name": "Bad", "slug": bad}, headers=owner.headers
            ),
            422,
            "VALIDATION_ERROR",
        )
        assert list(body["field_errors"]) == ["slug"], (bad, body)

    mine = await db_scalars(
        app,
        select(func.count())
        .select_from(Membership)
        .where(Membership.user_id == uuid.UUID(other.id)),
    )
    assert mine == [1]  # only the personal workspace: the refused ones left nothing behind


async def test_list_shows_the_callers_role_in_each_workspace(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team, _, members = await team_with(app, client, engineer="engineer")
    other, _, _ = await team_with(app, client)
    await add_member(app, other["id"], members["engineer"].id, "viewer")

    listed = (await client.get(f"{API}/workspaces", headers=members["engineer"].headers)).json()[
        "items"
    ]
    assert (listed[0]["is_personal"], listed[0]["role"]) == (True, "owner")
    assert {w["id"]: w["role"] for w in listed[1:]} == {
        team["id"]: "engineer",
        other["id"]: "viewer",
    }
    one = await client.get(f"{API}/workspaces/{team['id']}", headers=members["engineer"].headers)
    assert one.json()["role"] == "engineer"
    assert one.json()["slug"] == team["slug"]


async def test_admin_renames_a_workspace_and_an_operator_cannot(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team, _, members = await team_with(app, client, admin="admin", operator="operator")
    url = f"{API}/workspaces/{team['id']}"

    response = await client.patch(url, json={"name": " Yeni Ad "}, headers=members["admin"].headers)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Yeni Ad"
    assert response.json()["slug"] == team["slug"]  # renaming keeps the address
    seen = await client.get(url, headers=members["operator"].headers)
    assert seen.json()["name"] == "Yeni Ad"

    refused = await client.patch(
        url, json={"name": "Operatör"}, headers=members["operator"].headers
    )
    problem(refused, 403, "MISSING_PERMISSION")
    names = await db_scalars(
        app, select(Workspace.name).where(Workspace.id == uuid.UUID(team["id"]))
    )
    assert names == ["Yeni Ad"]


async def test_deleting_a_team_workspace_removes_its_members_keys_and_invitations(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team, owner, members = await team_with(app, client, engineer="engineer")
    workspace_id = uuid.UUID(team["id"])
    created = await client.post(
        f"{API}/workspaces/{team['id']}/api-keys",
        json={"name": "router", "scopes": ["workspace:read"]},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert (await invite(client, owner, team["id"], unique_email("x"), "viewer")).status_code == 201
    assert (
        await client.get(f"{API}/workspaces/{team['id']}", headers={"X-API-Key": key})
    ).is_success

    response = await client.delete(f"{API}/workspaces/{team['id']}", headers=owner.headers)
    assert response.status_code == 204, response.text

    for model in (Workspace, Membership, ApiKey, Invitation):
        column = model.id if model is Workspace else model.workspace_id  # type: ignore[attr-defined]
        count = await db_scalars(
            app, select(func.count()).select_from(model).where(column == workspace_id)
        )
        assert count == [0], model.__name__
    problem(
        await client.get(f"{API}/workspaces/{team['id']}", headers=owner.headers),
        404,
        "WORKSPACE_NOT_FOUND",
    )
    problem(
        await client.get(f"{API}/workspaces/{team['id']}", headers={"X-API-Key": key}),
        401,
        "INVALID_TOKEN",
    )
    listed = (await client.get(f"{API}/workspaces", headers=members["engineer"].headers)).json()[
        "items"
    ]
    assert [w["id"] for w in listed] == [members["engineer"].personal_workspace_id]
    events = await db_scalars(
        app,
        select(AuditEvent).where(
            AuditEvent.workspace_id == workspace_id, AuditEvent.event == "workspace.deleted"
        ),
    )
    assert [(e.actor_user_id, e.details["name"]) for e in events] == [
        (uuid.UUID(owner.id), team["name"])
    ]


async def test_a_personal_workspace_cannot_be_deleted_or_shared(
    app: FastAPI, client: httpx.AsyncClient, mailbox: MailBox
) -> None:
    owner = await register(client)
    personal = owner.personal_workspace_id
    address = unique_email("guest")

    problem(
        await client.delete(f"{API}/workspaces/{personal}", headers=owner.headers),
        409,
        "PERSONAL_WORKSPACE",
    )
    problem(await invite(client, owner, personal, address, "viewer"), 409, "PERSONAL_WORKSPACE")

    assert (await client.get(f"{API}/workspaces/{personal}", headers=owner.headers)).is_success
    invitations = await db_scalars(
        app, select(Invitation).where(Invitation.workspace_id == uuid.UUID(personal))
    )
    assert invitations == []
    assert mailbox.to(address) == []


# Invitations --------------------------------------------------------------------------------


async def test_invitation_is_mailed_and_accepted_by_its_addressee(
    app: FastAPI, client: httpx.AsyncClient, mailbox: MailBox
) -> None:
    team, owner, _ = await team_with(app, client)
    address = unique_email("newcomer")

    created = await invite(client, owner, team["id"], address, "engineer")
    assert created.status_code == 201, created.text
    invitation = created.json()
    assert invitation["email"] == address
    assert invitation["role"] == "engineer"
    assert invitation["accepted_at"] is None

    message = await invitation_mail(mailbox, address, team)
    assert message["Subject"] == f"Invitation to {team['name']} on tezgah"
    text = body_of(message)
    assert f'Owner invited you to the workspace "{team["name"]}" on tezgah as engineer.' in text
    token = token_in(message)
    assert f"/invitations#token={token}" in text
    stored = await db_scalars(
        app, select(Invitation.token_hash).where(Invitation.id == uuid.UUID(invitation["id"]))
    )
    assert stored == [app.state.auth.tokens.hash_secret(token)]  # only the hash is kept

    newcomer = await register(client, address, display_name="Newcomer")
    problem(
        await client.get(f"{API}/workspaces/{team['id']}", headers=newcomer.headers),
        404,
        "WORKSPACE_NOT_FOUND",
    )
    accepted = await accept(client, newcomer, token)
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["id"], accepted.json()["role"]) == (team["id"], "engineer")

    assert await role_in(app, team["id"], newcomer.id) == "engineer"
    mine = await client.get(f"{API}/workspaces/{team['id']}", headers=newcomer.headers)
    assert mine.json()["role"] == "engineer"
    listed = await client.get(f"{API}/workspaces/{team['id']}/invitations", headers=owner.headers)
    (row,) = listed.json()["items"]
    assert row["id"] == invitation["id"]
    assert row["accepted_at"] is not None


async def test_invitation_mail_speaks_the_invitees_language(
    app: FastAPI, client: httpx.AsyncClient, mailbox: MailBox
) -> None:
    team, owner, _ = await team_with(app, client)
    turkish = await register(client, display_name="Çağrı", language="tr")

    assert (await invite(client, owner, team["id"], turkish.email, "admin")).status_code == 201
    message = await invitation_mail(mailbox, turkish.email, team)
    assert message["Subject"] == f"tezgah'ta {team['name']} çalışma alanına davet"
    text = body_of(message)
    assert f'Owner sizi tezgah üzerindeki "{team["name"]}" çalışma alanına yönetici olarak' in text

    # Nobody has this address yet: the inviter's language is used.
    turkish_team = await create_team(client, turkish, "Tezgâh Atölyesi")
    stranger = unique_email("yabanci")
    assert (
        await invite(client, turkish, turkish_team["id"], stranger, "viewer")
    ).status_code == 201
    text = body_of(await invitation_mail(mailbox, stranger, turkish_team))
    assert "izleyici olarak davet etti" in text
    english = await invite(client, owner, team["id"], unique_email("en"), "operator")
    assert english.status_code == 201


async def test_an_invitation_cannot_be_accepted_by_someone_else(
    app: FastAPI, client: httpx.AsyncClient, mailbox: MailBox
) -> None:
    team, owner, _ = await team_with(app, client)
    invitee = await register(client)
    intruder = await register(client)
    assert (await invite(client, owner, team["id"], invitee.email, "viewer")).status_code == 201
    token = token_in(await invitation_mail(mailbox, invitee.email, team))

    problem(await accept(client, intruder, token), 403, "INVITATION_FOR_SOMEONE_ELSE")
    assert await role_in(app, team["id"], intruder.id) is None
    problem(
        await client.get(f"{API}/workspaces/{team['id']}", headers=intruder.headers),
        404,
        "WORKSPACE_NOT_FOUND",
    )
    # The attempt did not spend the invitation.
    assert (await accept(client, invitee, token)).status_code == 200
    assert await role_in(app, team["id"], invitee.id) == "viewer"


async def test_accepted_revoked_expired_and_unknown_invitations_are_invalid(
    app: FastAPI, client: httpx.AsyncClient, mailbox: MailBox
) -> None:
    team, owner, _ = await team_with(app, client)
    people = [await register(client) for _ in range(3)]
    tokens = {}
    ids = {}
    for person in people:
        created = await invite(client, owner, team["id"], person.email, "operator")
        assert created.status_code == 201
        ids[person.id] = created.json()["id"]
        tokens[person.id] = token_in(await invitation_mail(mailbox, person.email, team))
    used, revoked, expired = people

    assert (await accept(client, used, tokens[used.id])).status_code == 200
    response = await client.delete(
        f"{API}/workspaces/{team['id']}/members/{used.id}", headers=owner.headers
    )
    assert response.status_code == 204
    problem(await accept(client, used, tokens[used.id]), 400, "INVITATION_INVALID")

    revoke = await client.delete(
        f"{API}/workspaces/{team['id']}/invitations/{ids[revoked.id]}", headers=owner.headers
    )
    assert revoke.status_code == 204
    problem(await accept(client, revoked, tokens[revoked.id]), 400, "INVITATION_INVALID")

    async with app.state.resources.database.sessionmaker() as session, session.begin():
        await session.execute(
            update(Invitation)
            .where(Invitation.id == uuid.UUID(ids[expired.id]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    problem(await accept(client, expired, tokens[expired.id]), 400, "INVITATION_INVALID")
    problem(await accept(client, expired, "not-a-real-invitation"), 400, "INVITATION_INVALID")

    for person in people:
        assert await role_in(app, team["id"], person.id) is None
    listed = await client.get(f"{API}/workspaces/{team['id']}/invitations", headers=owner.headers)
    state = {row["id"]: row for row in listed.json()["items"]}
    assert state[ids[revoked.id]]["revoked_at"] is not None
    assert state[ids[revoked.id]]["accepted_at"] is None


async def test_members_cannot_be_invited_again(
    app: FastAPI, client: httpx.AsyncClient, mailbox: MailBox
) -> None:
    team, owner, members = await team_with(app, client, viewer="viewer")
    problem(
        await invite(client, owner, team["id"], members["viewer"].email.upper(), "engineer"),
        409,
        "ALREADY_MEMBER",
    )

    # Invited, then added by other means before accepting.
    late = await register(client)
    assert (await invite(client, owner, team["id"], late.email, "engineer")).status_code == 201
    token = token_in(await invitation_mail(mailbox, late.email, team))
    await add_member(app, team["id"], late.id, "viewer")
    problem(await accept(client, late, token), 409, "ALREADY_MEMBER")
    assert await role_in(app, team["id"], late.id) == "viewer"


# Roles ------------------------------------------------------------------------------------


async def test_an_admin_cannot_grant_owner_or_change_an_owner(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team, owner, members = await team_with(app, client, admin="admin", engineer="engineer")
    admin = members["admin"]
    engineer = members["engineer"]
    base = f"{API}/workspaces/{team['id']}"

    problem(await invite(client, admin, team["id"], unique_email(), "owner"), 403, "ROLE_TOO_HIGH")
    problem(
        await client.patch(
            f"{base}/members/{engineer.id}", json={"role": "owner"}, headers=admin.headers
        ),
        403,
        "ROLE_TOO_HIGH",
    )
    problem(
        await client.patch(
            f"{base}/members/{owner.id}", json={"role": "viewer"}, headers=admin.headers
        ),
        403,
        "ROLE_TOO_HIGH",
    )
    problem(
        await client.delete(f"{base}/members/{owner.id}", headers=admin.headers),
        403,
        "ROLE_TOO_HIGH",
    )
    assert await role_in(app, team["id"], owner.id) == "owner"
    assert await role_in(app, team["id"], engineer.id) == "engineer"

    # Up to their own rank is allowed.
    assert (await invite(client, admin, team["id"], unique_email(), "admin")).status_code == 201
    promoted = await client.patch(
        f"{base}/members/{engineer.id}", json={"role": "admin"}, headers=admin.headers
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "admin"
    problem(
        await client.patch(
            f"{base}/members/{uuid.uuid4()}", json={"role": "viewer"}, headers=admin.headers
        ),
        404,
        "MEMBER_NOT_FOUND",
    )


async def test_the_last_owner_stays_until_another_owner_exists(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team, owner, members = await team_with(app, client, partner="admin")
    partner = members["partner"]
    base = f"{API}/workspaces/{team['id']}/members"

    problem(
        await client.patch(f"{base}/{owner.id}", json={"role": "admin"}, headers=owner.headers),
        409,
        "LAST_OWNER",
    )
    problem(await client.delete(f"{base}/{owner.id}", headers=owner.headers), 409, "LAST_OWNER")
    assert await role_in(app, team["id"], owner.id) == "owner"

    promoted = await client.patch(
        f"{base}/{partner.id}", json={"role": "owner"}, headers=owner.headers
    )
    assert promoted.json()["role"] == "owner"
    demoted = await client.patch(
        f"{base}/{owner.id}", json={"role": "admin"}, headers=owner.headers
    )
    assert demoted.status_code == 200, demoted.text
    assert await role_in(app, team["id"], owner.id) == "admin"
    # Now the partner is the last owner; the former owner (an admin) may leave.
    problem(
        await client.patch(f"{base}/{partner.id}", json={"role": "admin"}, headers=partner.headers),
        409,
        "LAST_OWNER",
    )
    assert (await client.delete(f"{base}/{owner.id}", headers=owner.headers)).status_code == 204
    assert await role_in(app, team["id"], owner.id) is None

    # With two owners, an owner may leave too.
    await add_member(app, team["id"], owner.id, "owner")
    assert (await client.delete(f"{base}/{partner.id}", headers=partner.headers)).status_code == 204
    assert await role_in(app, team["id"], partner.id) is None


async def test_a_viewer_can_leave_but_not_remove_others(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team, _, members = await team_with(app, client, viewer="viewer", operator="operator")
    viewer = members["viewer"]
    base = f"{API}/workspaces/{team['id']}"

    problem(
        await client.delete(f"{base}/members/{members['operator'].id}", headers=viewer.headers),
        403,
        "MISSING_PERMISSION",
    )
    assert await role_in(app, team["id"], members["operator"].id) == "operator"

    assert (
        await client.delete(f"{base}/members/{viewer.id}", headers=viewer.headers)
    ).status_code == 204
    assert await role_in(app, team["id"], viewer.id) is None
    problem(await client.get(base, headers=viewer.headers), 404, "WORKSPACE_NOT_FOUND")
    events = await db_scalars(
        app,
        select(AuditEvent).where(
            AuditEvent.workspace_id == uuid.UUID(team["id"]), AuditEvent.event == "member.left"
        ),
    )
    assert [(e.actor_user_id, e.subject_user_id) for e in events] == [
        (uuid.UUID(viewer.id), uuid.UUID(viewer.id))
    ]


async def test_a_removed_member_loses_access_at_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team, owner, members = await team_with(app, client, engineer="engineer")
    engineer = members["engineer"]
    base = f"{API}/workspaces/{team['id']}"
    assert (await client.get(f"{base}/members", headers=engineer.headers)).status_code == 200

    removed = await client.delete(f"{base}/members/{engineer.id}", headers=owner.headers)
    assert removed.status_code == 204

    # The same access token, the very next request.
    problem(await client.get(base, headers=engineer.headers), 404, "WORKSPACE_NOT_FOUND")
    problem(
        await client.get(f"{base}/members", headers=engineer.headers), 404, "WORKSPACE_NOT_FOUND"
    )
    listed = (await client.get(f"{API}/workspaces", headers=engineer.headers)).json()["items"]
    assert team["id"] not in [w["id"] for w in listed]
    events = await db_scalars(
        app,
        select(AuditEvent).where(
            AuditEvent.workspace_id == uuid.UUID(team["id"]),
            AuditEvent.event == "member.removed",
        ),
    )
    assert [(e.actor_user_id, e.subject_user_id) for e in events] == [
        (uuid.UUID(owner.id), uuid.UUID(engineer.id))
    ]


async def test_the_member_list_shows_who_has_which_role(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team, owner, members = await team_with(app, client, operator="operator", viewer="viewer")
    response = await client.get(
        f"{API}/workspaces/{team['id']}/members", headers=members["viewer"].headers
    )
    assert response.status_code == 200
    items = response.json()["items"]
    assert [(m["user_id"], m["email"], m["display_name"], m["role"]) for m in items] == [
        (owner.id, owner.email, "Owner", "owner"),
        (members["operator"].id, members["operator"].email, "Operator", "operator"),
        (members["viewer"].id, members["viewer"].email, "Viewer", "viewer"),
    ]
    assert all(m["joined_at"] for m in items)
    assert set(items[0]) == {"user_id", "email", "display_name", "role", "joined_at"}


async def test_a_role_change_applies_to_the_next_request(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    team, owner, members = await team_with(app, client, operator="operator")
    operator = members["operator"]
    base = f"{API}/workspaces/{team['id']}"
    problem(
        await client.get(f"{base}/invitations", headers=operator.headers), 403, "MISSING_PERMISSION"
    )

    promoted = await client.patch(
        f"{base}/members/{operator.id}", json={"role": "admin"}, headers=owner.headers
    )
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "admin"
    listed = await client.get(f"{base}/invitations", headers=operator.headers)
    assert listed.status_code == 200, listed.text
    assert (await client.get(base, headers=operator.headers)).json()["role"] == "admin"

    demoted = await client.patch(
        f"{base}/members/{operator.id}", json={"role": "viewer"}, headers=owner.headers
    )
    assert demoted.json()["role"] == "viewer"
    problem(
        await client.get(f"{base}/invitations", headers=operator.headers), 403, "MISSING_PERMISSION"
    )
    events = await db_scalars(
        app,
        select(AuditEvent)
        .where(
            AuditEvent.workspace_id == uuid.UUID(team["id"]),
            AuditEvent.event == "member.role_changed",
        )
        .order_by(AuditEvent.occurred_at),
    )
    assert [(e.details["previous_role"], e.details["role"]) for e in events] == [
        ("operator", "admin"),
        ("admin", "viewer"),
    ]


@pytest.mark.parametrize("role", ["viewer", "owner"])
async def test_invited_role_is_the_role_granted(
    app: FastAPI, client: httpx.AsyncClient, mailbox: MailBox, role: str
) -> None:
    team, owner, _ = await team_with(app, client)
    person = await register(client)
    assert (await invite(client, owner, team["id"], person.email, role)).status_code == 201
    response = await accept(
        client, person, token_in(await invitation_mail(mailbox, person.email, team))
    )
    assert response.json()["role"] == role
    assert await role_in(app, team["id"], person.id) == role
