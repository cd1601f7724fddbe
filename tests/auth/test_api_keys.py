"""API keys: the recognisable, checksummed format, shown once and stored as a keyed hash; both
ways of sending one; every way a key stops working (tampered, revoked, expired, its creator
demoted, removed or deactivated, another workspace); scopes; ``last_used_at`` written at most
once a minute; account routes refusing keys; the general rate limit counting per key and per
user."""

from __future__ import annotations

import hashlib
import re
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import select, update
from tests.auth.conftest import Account, StartApp, db_scalars, register, set_user_flags

from tezgah.auth.dependencies import WorkspaceAccess, require
from tezgah.auth.models import ApiKey, AuditEvent, Membership, User
from tezgah.auth.permissions import Permission
from tezgah.core.config import Settings
from tezgah.core.db import utcnow

API = "/api/v1"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_FORMAT = re.compile(r"tzk_([0-9A-Za-z]{10})_([0-9A-Za-z]{32})([0-9A-Za-z]{6})")


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["error_code"] == code, body
    return body


def crc(body: str) -> str:
    """The key's checksum, computed here independently: CRC-32 of the body in 6 base62 digits
    (least significant first)."""
    number = zlib.crc32(body.encode())
    digits = []
    for _ in range(6):
        number, remainder = divmod(number, 62)
        digits.append(BASE62[remainder])
    return "".join(digits)


def other_char(char: str) -> str:
    return "A" if char != "A" else "B"


def key_headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def create_key(
    client: httpx.AsyncClient,
    who: Account,
    workspace_id: str,
    scopes: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    response = await client.post(
        f"{API}/workspaces/{workspace_id}/api-keys",
        json={"name": "cnc-1", "scopes": scopes or ["workspace:read"], **extra},
        headers=who.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_team(client: httpx.AsyncClient, owner: Account) -> str:
    response = await client.post(
        f"{API}/workspaces", json={"name": f"Shop {uuid.uuid4().hex[:6]}"}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def add_member(app: FastAPI, workspace_id: str, user_id: str, role: str) -> None:
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        session.add(
            Membership(workspace_id=uuid.UUID(workspace_id), user_id=uuid.UUID(user_id), role=role)
        )


async def key_row(app: FastAPI, key_id: str) -> ApiKey:
    rows = await db_scalars(app, select(ApiKey).where(ApiKey.id == uuid.UUID(key_id)))
    assert len(rows) == 1
    row: ApiKey = rows[0]
    return row


async def set_key(app: FastAPI, key_id: str, **values: object) -> None:
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        await session.execute(update(ApiKey).where(ApiKey.id == uuid.UUID(key_id)).values(**values))


def add_probes(app: FastAPI) -> None:
    """Routes guarded like the design and CAM routes that will use keys (``require``), which
    answer what the caller was granted."""

    def probe(permission: Permission) -> Callable[..., Any]:
        dependency = Depends(require(permission))

        async def endpoint(access: WorkspaceAccess = dependency) -> dict[str, Any]:
            return {"role": access.role, "permissions": sorted(access.permissions)}

        return endpoint

    for permission in (Permission.designs_write, Permission.cam_run):
        app.add_api_route(
            f"/probe/{{workspace_id}}/{permission.value}", probe(permission), methods=["GET"]
        )


# Format, storage, transport -------------------------------------------------------------------


async def test_a_new_key_is_shown_once_in_its_checksummed_format(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    workspace_id = account.personal_workspace_id
    created = await create_key(
        client, account, workspace_id, ["designs:read", "cam:run", "designs:read"]
    )
    key = created["key"]
    match = KEY_FORMAT.fullmatch(key)
    assert match, key
    prefix, secret, checksum = match.groups()
    assert checksum == crc(key[:-6])
    assert created["prefix"] == prefix
    assert created["scopes"] == ["cam:run", "designs:read"]  # sorted, without repeats
    assert created["created_by_id"] == account.id
    assert created["workspace_id"] == workspace_id
    assert created["last_used_at"] is None
    assert created["revoked_at"] is None

    listed = await client.get(f"{API}/workspaces/{workspace_id}/api-keys", headers=account.headers)
    assert listed.status_code == 200
    (item,) = listed.json()["items"]
    assert item["id"] == created["id"]
    assert item["prefix"] == prefix
    assert set(item) == set(created) - {"key"}
    assert secret not in listed.text
    row = await key_row(app, created["id"])
    assert row.key_hash not in listed.text
    assert "hash" not in listed.text


async def test_only_a_keyed_hash_of_the_secret_is_stored(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    created = await create_key(client, account, account.personal_workspace_id)
    match = KEY_FORMAT.fullmatch(created["key"])
    assert match
    secret = match.group(2)

    row = await key_row(app, created["id"])
    assert row.key_hash == app.state.auth.tokens.hash_secret(secret)
    assert row.key_hash != hashlib.sha256(secret.encode()).hexdigest()  # keyed, not a bare hash
    stored = " ".join(str(getattr(row, column.key)) for column in ApiKey.__table__.columns)
    assert secret not in stored
    assert created["key"] not in stored
    assert secret[:16] not in stored


async def test_a_key_works_as_x_api_key_and_as_a_bearer_token(
    client: httpx.AsyncClient, account: Account
) -> None:
    created = await create_key(client, account, account.personal_workspace_id)
    url = f"{API}/workspaces/{account.personal_workspace_id}"

    for headers in (
        {"X-API-Key": created["key"]},
        {"Authorization": f"Bearer {created['key']}"},
    ):
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, (headers, response.text)
        assert response.json()["id"] == account.personal_workspace_id
        assert response.json()["role"] == "owner"  # its creator's role


async def test_tampered_and_made_up_keys_are_refused(
    client: httpx.AsyncClient, account: Account
) -> None:
    key = (await create_key(client, account, account.personal_workspace_id))["key"]
    other = (await create_key(client, account, account.personal_workspace_id))["key"]
    url = f"{API}/workspaces/{account.personal_workspace_id}"
    assert (await client.get(url, headers=key_headers(key))).status_code == 200

    one_char = key[:20] + other_char(key[20]) + key[21:]  # checksum no longer matches
    body = key[:20] + other_char(key[20]) + key[21:-6]
    rechecked = body + crc(body)  # well-formed, right prefix, wrong secret
    swapped = key[:15] + other[15:-6]
    swapped += crc(swapped)  # another key's secret under this prefix
    bad_crc = key[:-1] + other_char(key[-1])
    for bad in (one_char, rechecked, swapped, bad_crc, key[:-1], key + "x", "tzk_nothing"):
        for headers in (key_headers(bad), {"Authorization": f"Bearer {bad}"}):
            response = await client.get(url, headers=headers)
            problem(response, 401, "INVALID_TOKEN")
            assert response.headers["www-authenticate"] == "Bearer"


# When a key stops working -------------------------------------------------------------------


async def test_a_revoked_key_stops_working(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    workspace_id = account.personal_workspace_id
    created = await create_key(client, account, workspace_id)
    url = f"{API}/workspaces/{workspace_id}"
    assert (await client.get(url, headers=key_headers(created["key"]))).status_code == 200

    for _ in range(2):  # revoking twice is harmless
        revoked = await client.delete(f"{url}/api-keys/{created['id']}", headers=account.headers)
        assert revoked.status_code == 204
    problem(await client.get(url, headers=key_headers(created["key"])), 401, "INVALID_TOKEN")
    (item,) = (await client.get(f"{url}/api-keys", headers=account.headers)).json()["items"]
    assert item["revoked_at"] is not None
    events = await db_scalars(
        app,
        select(AuditEvent.event).where(
            AuditEvent.target_id == created["id"], AuditEvent.event.like("api_key.%")
        ),
    )
    assert sorted(events) == ["api_key.created", "api_key.revoked"]
    problem(
        await client.delete(f"{url}/api-keys/{uuid.uuid4()}", headers=account.headers),
        404,
        "API_KEY_NOT_FOUND",
    )


async def test_an_expired_key_stops_working(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    url = f"{API}/workspaces/{account.personal_workspace_id}"
    soon = (utcnow() + timedelta(hours=1)).isoformat()
    created = await create_key(client, account, account.personal_workspace_id, expires_at=soon)
    assert datetime.fromisoformat(created["expires_at"]) == datetime.fromisoformat(soon)
    assert (await client.get(url, headers=key_headers(created["key"]))).status_code == 200

    await set_key(app, created["id"], expires_at=utcnow() - timedelta(seconds=1))
    problem(await client.get(url, headers=key_headers(created["key"])), 401, "INVALID_TOKEN")


async def test_an_expiry_in_the_past_is_refused_at_creation(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    url = f"{API}/workspaces/{account.personal_workspace_id}/api-keys"
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    for expiry in (past, "2020-01-01T00:00:00"):  # with and without a zone
        body = problem(
            await client.post(
                url,
                json={"name": "late", "scopes": ["workspace:read"], "expires_at": expiry},
                headers=account.headers,
            ),
            422,
            "VALIDATION_ERROR",
        )
        assert list(body["field_errors"]) == ["expires_at"]
    assert (await client.get(url, headers=account.headers)).json()["items"] == []

    # An expiry without a zone is UTC, as documented.
    naive = (datetime.now(UTC) + timedelta(days=2)).replace(tzinfo=None, microsecond=0)
    created = await create_key(
        client, account, account.personal_workspace_id, expires_at=naive.isoformat()
    )
    assert datetime.fromisoformat(created["expires_at"]) == naive.replace(tzinfo=UTC)
    row = await key_row(app, created["id"])
    assert row.expires_at == naive.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "scopes",
    [
        ["members:manage"],
        ["keys:manage"],
        ["workspace:read", "audit:read"],
        ["designs:read", "workspace:delete"],
        ["root"],
    ],
)
async def test_keys_carry_only_machine_scopes(
    client: httpx.AsyncClient, account: Account, scopes: list[str]
) -> None:
    url = f"{API}/workspaces/{account.personal_workspace_id}/api-keys"
    body = problem(
        await client.post(url, json={"name": "k", "scopes": scopes}, headers=account.headers),
        422,
        "INVALID_SCOPES",
    )
    refused = [scope for scope in scopes if scope not in {"workspace:read", "designs:read"}]
    for scope in refused:
        assert scope in body["detail"]
    assert "designs:read" not in body["detail"]
    assert (await client.get(url, headers=account.headers)).json()["items"] == []


async def test_a_key_never_exceeds_its_creators_current_role(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    add_probes(app)
    owner = await register(client)
    admin = await register(client)
    workspace_id = await create_team(client, owner)
    await add_member(app, workspace_id, admin.id, "admin")
    key = (
        await create_key(
            client, admin, workspace_id, ["workspace:read", "designs:write", "cam:run"]
        )
    )["key"]
    narrow = (await create_key(client, admin, workspace_id, ["workspace:read"]))["key"]
    write_probe = f"/probe/{workspace_id}/designs:write"
    cam_probe = f"/probe/{workspace_id}/cam:run"
    members_url = f"{API}/workspaces/{workspace_id}/members/{admin.id}"

    allowed = await client.get(write_probe, headers=key_headers(key))
    assert allowed.status_code == 200, allowed.text
    assert allowed.json() == {
        "role": "admin",
        "permissions": ["cam:run", "designs:write", "workspace:read"],
    }
    # The key's own scopes bound it, whatever its creator may do.
    problem(await client.get(write_probe, headers=key_headers(narrow)), 403, "MISSING_PERMISSION")

    demoted = await client.patch(members_url, json={"role": "operator"}, headers=owner.headers)
    assert demoted.status_code == 200
    problem(await client.get(write_probe, headers=key_headers(key)), 403, "MISSING_PERMISSION")
    still = await client.get(cam_probe, headers=key_headers(key))
    assert still.json() == {"role": "operator", "permissions": ["cam:run", "workspace:read"]}

    await client.patch(members_url, json={"role": "viewer"}, headers=owner.headers)
    problem(await client.get(cam_probe, headers=key_headers(key)), 403, "MISSING_PERMISSION")

    await client.patch(members_url, json={"role": "engineer"}, headers=owner.headers)
    assert (await client.get(write_probe, headers=key_headers(key))).status_code == 200


async def test_a_key_stops_with_its_creators_membership_or_account(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    owner = await register(client)
    leaver = await register(client)
    sleeper = await register(client)
    workspace_id = await create_team(client, owner)
    await add_member(app, workspace_id, leaver.id, "admin")
    await add_member(app, workspace_id, sleeper.id, "admin")
    leaver_key = (await create_key(client, leaver, workspace_id))["key"]
    sleeper_key = (await create_key(client, sleeper, workspace_id))["key"]
    owner_key = (await create_key(client, owner, workspace_id))["key"]
    url = f"{API}/workspaces/{workspace_id}"
    for key in (leaver_key, sleeper_key, owner_key):
        assert (await client.get(url, headers=key_headers(key))).status_code == 200

    removed = await client.delete(f"{url}/members/{leaver.id}", headers=owner.headers)
    assert removed.status_code == 204
    problem(await client.get(url, headers=key_headers(leaver_key)), 404, "WORKSPACE_NOT_FOUND")

    await set_user_flags(app, sleeper.id, is_active=False)
    problem(await client.get(url, headers=key_headers(sleeper_key)), 401, "INVALID_TOKEN")

    assert (await client.get(url, headers=key_headers(owner_key))).status_code == 200


async def test_a_key_belongs_to_one_workspace(client: httpx.AsyncClient, account: Account) -> None:
    team_id = await create_team(client, account)
    key = (await create_key(client, account, team_id))["key"]
    assert (
        await client.get(f"{API}/workspaces/{team_id}", headers=key_headers(key))
    ).status_code == 200
    # Its creator owns the personal workspace too; the key does not reach it.
    problem(
        await client.get(
            f"{API}/workspaces/{account.personal_workspace_id}", headers=key_headers(key)
        ),
        404,
        "WORKSPACE_NOT_FOUND",
    )


async def test_last_used_at_is_written_at_most_once_a_minute(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    created = await create_key(client, account, account.personal_workspace_id)
    url = f"{API}/workspaces/{account.personal_workspace_id}"
    before = utcnow()

    assert (await client.get(url, headers=key_headers(created["key"]))).status_code == 200
    first = (await key_row(app, created["id"])).last_used_at
    assert first is not None
    assert before <= first <= utcnow()

    assert (await client.get(url, headers=key_headers(created["key"]))).status_code == 200
    assert (await key_row(app, created["id"])).last_used_at == first

    long_ago = utcnow() - timedelta(minutes=2)
    await set_key(app, created["id"], last_used_at=long_ago)
    assert (await client.get(url, headers=key_headers(created["key"]))).status_code == 200
    renewed = (await key_row(app, created["id"])).last_used_at
    assert renewed is not None
    assert renewed > long_ago + timedelta(minutes=1)
    listed = await client.get(f"{url}/api-keys", headers=account.headers)
    assert datetime.fromisoformat(listed.json()["items"][0]["last_used_at"]) == renewed


async def test_account_routes_refuse_api_keys(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    await set_user_flags(app, account.id, is_superuser=True)
    workspace_id = account.personal_workspace_id
    key = (await create_key(client, account, workspace_id))["key"]
    before = (await db_scalars(app, select(User).where(User.id == uuid.UUID(account.id))))[0]

    for method, path, payload in [
        ("GET", "/auth/me", None),
        ("POST", "/auth/logout-all", None),
        ("GET", "/workspaces", None),
        ("POST", "/workspaces", {"name": "By key"}),
        ("POST", f"/workspaces/{workspace_id}/api-keys", {"name": "k", "scopes": ["cam:run"]}),
        ("GET", "/admin/users", None),
    ]:
        for headers in (key_headers(key), {"Authorization": f"Bearer {key}"}):
            response = await client.request(method, API + path, json=payload, headers=headers)
            problem(response, 403, "API_KEY_NOT_ALLOWED")

    after = (await db_scalars(app, select(User).where(User.id == uuid.UUID(account.id))))[0]
    assert after.tokens_valid_after == before.tokens_valid_after  # logout-all did nothing
    assert (await client.get(f"{API}/auth/me", headers=account.headers)).status_code == 200
    keys = await client.get(f"{API}/workspaces/{workspace_id}/api-keys", headers=account.headers)
    assert len(keys.json()["items"]) == 1


async def test_the_general_rate_limit_counts_per_key_and_per_user(
    client: httpx.AsyncClient,
    start_app: StartApp,
    auth_settings: Callable[..., Settings],
) -> None:
    # Set up through the ordinary app; count through an app with a budget of 3 (same database).
    first_user = await register(client)
    second_user = await register(client)
    first_key = (await create_key(client, first_user, first_user.personal_workspace_id))["key"]
    second_key = (await create_key(client, first_user, first_user.personal_workspace_id))["key"]
    _, limited = await start_app(auth_settings(rate_limit_default="3/minute"))
    url = f"{API}/workspaces/{first_user.personal_workspace_id}"

    async def statuses(headers: dict[str, str], count: int) -> list[int]:
        return [(await limited.get(url, headers=headers)).status_code for _ in range(count)]

    # A made-up key carrying the first key's public prefix does not spend that key's budget.
    forged_body = first_key[:15] + "A" * 32
    forged = forged_body + crc(forged_body)
    assert await statuses(key_headers(forged), 3) == [401, 401, 401]

    assert await statuses(key_headers(first_key), 4) == [200, 200, 200, 429]
    # Same address, another key: its own budget (also when sent as a bearer token).
    assert await statuses({"Authorization": f"Bearer {second_key}"}, 3) == [200, 200, 200]
    assert await statuses(key_headers(second_key), 1) == [429]

    assert await statuses(first_user.headers, 4) == [200, 200, 200, 429]
    refused = await limited.get(url, headers=first_user.headers)
    problem(refused, 429, "RATE_LIMITED")
    assert int(refused.headers["retry-after"]) >= 1
    # Another person from the same address still has a budget.
    response = await limited.get(
        f"{API}/workspaces/{second_user.personal_workspace_id}", headers=second_user.headers
    )
    assert response.status_code == 200
