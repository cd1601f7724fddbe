"""The authorization matrix: every operation of the API, every kind of caller, one expected
status each.

The operations come from the app's own OpenAPI schema, so a route added later without a row
here fails ``test_every_operation_is_in_the_matrix``. Each (operation, caller) pair runs
against a freshly built world (written straight to the database, so it is cheap): a team
workspace with one member of each role, a member to act on, an outsider with a workspace of their
own, a superuser who belongs to nothing, API keys with and without machine scopes, a pending
invitation and an API key to revoke; and for the design hub: a private team design with two
versions (files and thumbnails in the blob store), a public team design reviewed by the outsider,
a team design in the trash, a public design of the outsider's, a share link, a signed download
link, a finished upload and a category.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.auth.conftest import PASSWORD

from tezgah.auth import service
from tezgah.auth.kit import AuthKit
from tezgah.auth.models import ApiKey, Invitation, Membership, RefreshToken, User, Workspace
from tezgah.auth.permissions import API_KEY_SCOPES
from tezgah.auth.repository import email_key
from tezgah.auth.tokens import new_api_key
from tezgah.core.db import utcnow
from tezgah.core.storage import BlobStore, iterate_bytes
from tezgah.designs import sharing, versions
from tezgah.designs.models import Category, Design, DesignVersion, Review, ShareLink
from tezgah.uploads.models import Upload

ROLES = ("viewer", "operator", "engineer", "admin", "owner")
PEOPLE = (*ROLES, "outsider", "superuser")
KEYS = ("key_full", "key_min")
CALLERS = ("anonymous", *PEOPLE, *KEYS)


@dataclass
class DesignHub:
    own_workspace_id: str
    design_id: str  # private, in the team workspace, two versions
    version_id: str  # its first version (not the current one)
    version2_id: str  # its second, current version
    public_design_id: str  # public, in the team workspace, reviewed by the outsider
    review_id: str
    deleted_design_id: str  # the team's, in the trash (public before it went there)
    outsider_design_id: str  # public, in the outsider's workspace
    share_link_id: str  # of the private design, download allowed
    share_token: str
    download_token: str  # signed download link of the private design's first version
    finished_upload_id: str  # of the team workspace, ready to become a version
    category_id: str  # a leaf


@dataclass
class World:
    workspace_id: str
    target_user_id: str
    invitation_id: str
    key_id: str
    outsider_invitation_token: str
    refresh_token: str
    owner_email: str
    upload_id: str
    credentials: dict[str, dict[str, str]]
    emails: dict[str, str]
    hub: DesignHub


STL_PART = (
    b"solid part\n facet normal 0 0 1\n  outer loop\n   vertex 0 0 0\n   vertex 1 0 0\n"
    b"   vertex 0 1 0\n  endloop\n endfacet\nendsolid part\n"
)
STL_PART_2 = STL_PART.replace(b"vertex 0 1 0", b"vertex 0 2 0")
THUMBNAIL = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24  # only served back, never decoded


async def _stored(blobs: BlobStore, data: bytes) -> str:
    """The blob's SHA-256, storing it on first use (the same bytes serve every world)."""
    sha256 = hashlib.sha256(data).hexdigest()
    if await blobs.size(sha256) is None:
        await blobs.put(iterate_bytes(data))
    return sha256


async def _user(session: Any, password_hash: str, name: str, **flags: Any) -> User:
    address = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    user = User(
        email=address,
        email_key=email_key(address),
        display_name=name,
        password_hash=password_hash,
        email_verified_at=utcnow(),
        tokens_valid_after=utcnow(),
        **flags,
    )
    session.add(user)
    await session.flush()
    return user


async def _design_hub(
    app: FastAPI,
    session: Any,
    team: Workspace,
    own: Workspace,
    users: dict[str, User],
) -> DesignHub:
    """The design hub's part of the world."""
    blobs: BlobStore = app.state.resources.blobs
    files = {data: await _stored(blobs, data) for data in (STL_PART, STL_PART_2)}
    thumbnail = await _stored(blobs, THUMBNAIL)
    now = utcnow()
    owner, outsider = users["owner"], users["outsider"]

    def design(
        workspace: Workspace,
        creator: User,
        visibility: str,
        *,
        versions: int = 0,
        rating: int | None = None,
        deleted_at: datetime | None = None,
    ) -> Design:
        # Every row sets the same columns: the four go in one INSERT.
        return Design(
            id=uuid.uuid4(),
            workspace_id=workspace.id,
            slug=f"{visibility}-{uuid.uuid4().hex[:8]}",
            name=f"Matrix part ({visibility})",
            visibility=visibility,
            material_hints=[],
            created_by_id=creator.id,
            version_count=versions,
            rating_count=0 if rating is None else 1,
            rating_sum=rating or 0,
            rating_avg=float(rating or 0),
            deleted_at=deleted_at,
        )

    private = design(team, owner, "private", versions=2)
    public = design(team, owner, "public", rating=4)  # the outsider's review below
    deleted = design(team, owner, "public", deleted_at=now - timedelta(days=1))
    theirs = design(own, outsider, "public")
    session.add_all([private, public, deleted, theirs])
    await session.flush()
    first, second = (
        DesignVersion(
            id=uuid.uuid4(),
            design_id=private.id,
            number=number,
            author_id=users["engineer"].id,
            filename="part.stl",
            size=len(data),
            sha256=files[data],
            media_type="model/stl",
            format="stl",
            thumbnail_sha256=thumbnail,
        )
        for number, data in ((1, STL_PART), (2, STL_PART_2))
    )
    share_token = sharing.TOKEN_PREFIX + secrets.token_urlsafe(24)
    share_link = ShareLink(
        id=uuid.uuid4(),
        design_id=private.id,
        created_by_id=owner.id,
        label="customer",
        token_hash=sharing.token_hash(share_token),
        prefix=share_token[:12],
        can_download=True,
    )
    review = Review(
        id=uuid.uuid4(), design_id=public.id, user_id=outsider.id, rating=4, body="Fits well."
    )
    finished = Upload(
        id=uuid.uuid4(),
        workspace_id=team.id,
        created_by_id=users["engineer"].id,
        length=len(STL_PART),
        offset=len(STL_PART),
        filename="part-v3.stl",
        upload_metadata={"workspace_id": str(team.id)},
        expires_at=now + timedelta(days=1),
        finished_at=now,
        sha256=files[STL_PART],
        size=len(STL_PART),
    )
    category = Category(
        id=uuid.uuid4(), slug=f"jigs-{uuid.uuid4().hex[:8]}", name_en="Jigs", name_tr="Fikstürler"
    )
    session.add_all([first, second, share_link, review, finished, category])
    await session.flush()
    private.current_version_id = second.id
    link = versions.download_link(app.state.resources.settings, first, 300)
    return DesignHub(
        own_workspace_id=str(own.id),
        design_id=str(private.id),
        version_id=str(first.id),
        version2_id=str(second.id),
        public_design_id=str(public.id),
        review_id=str(review.id),
        deleted_design_id=str(deleted.id),
        outsider_design_id=str(theirs.id),
        share_link_id=str(share_link.id),
        share_token=share_token,
        download_token=link.url.rsplit("/", 1)[1],
        finished_upload_id=str(finished.id),
        category_id=str(category.id),
    )


async def build_world(app: FastAPI, password_hash: str) -> World:
    kit: AuthKit = app.state.auth
    tokens = kit.tokens
    now = utcnow()
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        users = {name: await _user(session, password_hash, name) for name in (*ROLES, "outsider")}
        users["superuser"] = await _user(session, password_hash, "superuser", is_superuser=True)
        target = await _user(session, password_hash, "target")
        workspace = Workspace(slug=f"team-{uuid.uuid4().hex[:8]}", name="Team", is_personal=False)
        own = Workspace(slug=f"own-{uuid.uuid4().hex[:8]}", name="Own", is_personal=True)
        session.add_all([workspace, own])
        await session.flush()
        for role in ROLES:
            session.add(Membership(workspace_id=workspace.id, user_id=users[role].id, role=role))
        session.add(Membership(workspace_id=workspace.id, user_id=target.id, role="viewer"))
        session.add(Membership(workspace_id=own.id, user_id=users["outsider"].id, role="owner"))
        keys: dict[str, str] = {}
        key_rows: dict[str, ApiKey] = {}
        for name, scopes in (
            ("key_full", sorted(API_KEY_SCOPES)),
            ("key_min", ["designs:read"]),
            ("key_target", ["designs:read"]),
        ):
            full, prefix, secret = new_api_key()
            row = ApiKey(
                workspace_id=workspace.id,
                created_by_id=users["owner"].id,
                name=name,
                prefix=prefix,
                key_hash=tokens.hash_secret(secret),
                scopes=scopes,
            )
            session.add(row)
            keys[name], key_rows[name] = full, row
        _, invitation_hash = tokens.new_secret()
        invitation = Invitation(
            workspace_id=workspace.id,
            email="pending@example.com",
            email_key="pending@example.com",
            role="viewer",
            token_hash=invitation_hash,
            expires_at=now + timedelta(days=1),
        )
        outsider_token, outsider_hash = tokens.new_secret()
        outsider_invitation = Invitation(
            workspace_id=workspace.id,
            email=users["outsider"].email,
            email_key=users["outsider"].email_key,
            role="viewer",
            token_hash=outsider_hash,
            expires_at=now + timedelta(days=1),
        )
        refresh_secret, refresh_hash = tokens.new_secret()
        upload = Upload(
            workspace_id=workspace.id,
            created_by_id=users["owner"].id,
            length=10,
            offset=0,
            upload_metadata={"workspace_id": str(workspace.id)},
            expires_at=now + timedelta(days=1),
        )
        session.add_all(
            [
                invitation,
                outsider_invitation,
                upload,
                RefreshToken(
                    user_id=users["owner"].id,
                    family_id=uuid.uuid4(),
                    token_hash=refresh_hash,
                    expires_at=now + timedelta(days=1),
                ),
            ]
        )
        await session.flush()
        hub = await _design_hub(app, session, workspace, own, users)
        credentials: dict[str, dict[str, str]] = {"anonymous": {}}
        for name, user in users.items():
            token = service.access_token(kit, user, uuid.uuid4())
            credentials[name] = {"Authorization": f"Bearer {token}"}
        credentials["key_full"] = {"X-API-Key": keys["key_full"]}
        credentials["key_min"] = {"Authorization": f"Bearer {keys['key_min']}"}
        return World(
            workspace_id=str(workspace.id),
            target_user_id=str(target.id),
            invitation_id=str(invitation.id),
            key_id=str(key_rows["key_target"].id),
            outsider_invitation_token=outsider_token,
            refresh_token=refresh_secret,
            owner_email=users["owner"].email,
            upload_id=str(upload.id),
            credentials=credentials,
            emails={name: user.email for name, user in users.items()},
            hub=hub,
        )


# Expected statuses -----------------------------------------------------------------------------

Expectation = dict[str, int]


def public(status: int) -> Expectation:
    return dict.fromkeys(CALLERS, status)


def person(status: int) -> Expectation:
    """Any signed-in person; API keys are refused (403), nobody is 401."""
    return {"anonymous": 401, **dict.fromkeys(PEOPLE, status), **dict.fromkeys(KEYS, 403)}


def in_workspace(
    allowed: tuple[str, ...], status: int, *, key_full: int = 403, key_min: int = 403
) -> Expectation:
    """Members with one of ``allowed`` roles get ``status``, other members 403, people outside
    the workspace 404 (they may not learn it exists), API keys as given."""
    expected: Expectation = {"anonymous": 401, "outsider": 404, "superuser": 404}
    for role in ROLES:
        expected[role] = status if role in allowed else 403
    expected["key_full"], expected["key_min"] = key_full, key_min
    return expected


def superuser_only(status: int) -> Expectation:
    return {
        "anonymous": 401,
        **dict.fromkeys(PEOPLE, 403),
        "superuser": status,
        **dict.fromkeys(KEYS, 403),
    }


MANAGERS = ("admin", "owner")
WRITERS = ("engineer", "admin", "owner")  # designs:write
TUS = {"Tus-Resumable": "1.0.0"}
EVERY_ROLE = ROLES


def design_readers(status: int) -> Expectation:
    """Reading the team's private design: its members and the team's keys with designs:read get
    ``status``; anybody else, signed in or not, 404 (the design's existence stays hidden)."""
    return {**in_workspace(EVERY_ROLE, status, key_full=status, key_min=status), "anonymous": 404}


def design_writers(status: int) -> Expectation:
    """designs:write in the team workspace (engineer and up, key_full) gets ``status``, the other
    members and key_min 403, people outside it 404, anonymous 401."""
    return in_workspace(WRITERS, status, key_full=status)


Body = Callable[[World, str], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    expected: Expectation
    json: Body | None = None
    form: Body | None = None
    headers: Callable[[World, str], dict[str, str]] | None = None
    content: bytes | None = None
    params: Callable[[World], dict[str, str]] | None = None
    # Path parameters that differ from fill_path's defaults (another design, another token).
    ids: Callable[[World], dict[str, str]] | None = None


def _register_body(world: World, caller: str) -> dict[str, Any]:
    return {
        "email": f"new-{uuid.uuid4().hex[:8]}@example.com",
        "password": PASSWORD,
        "display_name": "New",
    }


def _tus_create(world: World, caller: str) -> dict[str, str]:
    encoded = base64.b64encode(world.workspace_id.encode()).decode()
    return {**TUS, "Upload-Length": "10", "Upload-Metadata": f"workspace_id {encoded}"}


def _tus_patch(world: World, caller: str) -> dict[str, str]:
    return {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}


def _owner_login(world: World, caller: str) -> dict[str, Any]:
    return {"username": world.owner_email, "password": PASSWORD}


def _category_body(world: World, caller: str) -> dict[str, Any]:
    return {"slug": f"cat-{uuid.uuid4().hex[:8]}", "name_en": "Clamps", "name_tr": "Kıskaçlar"}


def _remix_body(world: World, caller: str) -> dict[str, Any]:
    """Into the caller's own workspace: the outsider is stopped by the design's visibility,
    not by a workspace they could not write to anyway."""
    own = world.hub.own_workspace_id if caller == "outsider" else world.workspace_id
    return {"workspace_id": own, "name": "Remix"}


def _on_public_design(world: World) -> dict[str, str]:
    return {"design_id": world.hub.public_design_id}


MATRIX: dict[tuple[str, str], Case] = {
    ("GET", "/health"): Case(public(200)),
    ("GET", "/ready"): Case(public(200)),
    ("GET", "/metrics"): Case(public(200)),
    ("GET", "/api/v1/meta"): Case(public(200)),
    ("POST", "/api/v1/auth/register"): Case(public(201), json=_register_body),
    ("POST", "/api/v1/auth/verify-email"): Case(public(401), json=lambda w, c: {"token": "x"}),
    ("POST", "/api/v1/auth/verify-email/resend"): Case(
        public(202), json=lambda w, c: {"email": "nobody@example.com"}
    ),
    ("POST", "/api/v1/auth/token"): Case(public(200), form=_owner_login),
    ("POST", "/api/v1/auth/mfa/verify"): Case(
        public(401), json=lambda w, c: {"mfa_token": "not-a-token", "code": "123456"}
    ),
    ("POST", "/api/v1/auth/refresh"): Case(
        public(200), json=lambda w, c: {"refresh_token": w.refresh_token}
    ),
    ("POST", "/api/v1/auth/logout"): Case(
        public(204), json=lambda w, c: {"refresh_token": w.refresh_token}
    ),
    ("POST", "/api/v1/auth/logout-all"): Case(person(204)),
    ("POST", "/api/v1/auth/session"): Case(
        public(200), json=lambda w, c: {"email": w.owner_email, "password": PASSWORD}
    ),
    ("DELETE", "/api/v1/auth/session"): Case(person(204)),
    ("POST", "/api/v1/auth/session/mfa"): Case(
        public(401), json=lambda w, c: {"mfa_token": "not-a-token", "code": "123456"}
    ),
    ("POST", "/api/v1/auth/session/refresh"): Case(public(401)),
    ("POST", "/api/v1/auth/password/forgot"): Case(
        public(202), json=lambda w, c: {"email": "nobody@example.com"}
    ),
    ("POST", "/api/v1/auth/password/reset"): Case(
        public(401), json=lambda w, c: {"token": "x", "new_password": PASSWORD + "2"}
    ),
    ("POST", "/api/v1/auth/password/change"): Case(
        person(200),
        json=lambda w, c: {"current_password": PASSWORD, "new_password": PASSWORD + "-new"},
    ),
    # No sign-in provider is configured here: any name is unknown (tests/auth/test_oidc.py).
    ("GET", "/api/v1/auth/oidc/providers"): Case(public(200)),
    ("GET", "/api/v1/auth/oidc/{provider}/login"): Case(public(404)),
    ("GET", "/api/v1/auth/oidc/{provider}/callback"): Case(public(404)),
    ("GET", "/api/v1/auth/me"): Case(person(200)),
    ("PATCH", "/api/v1/auth/me"): Case(person(200), json=lambda w, c: {"language": "tr"}),
    ("POST", "/api/v1/auth/me/deactivate"): Case(
        person(204), json=lambda w, c: {"password": PASSWORD}
    ),
    ("POST", "/api/v1/auth/mfa/totp/setup"): Case(
        person(200), json=lambda w, c: {"password": PASSWORD}
    ),
    # Nobody in the world is enrolled: a person gets past authorization to the 409.
    ("POST", "/api/v1/auth/mfa/totp/confirm"): Case(
        person(409), json=lambda w, c: {"code": "123456"}
    ),
    ("POST", "/api/v1/auth/mfa/disable"): Case(
        person(409), json=lambda w, c: {"password": PASSWORD, "code": "123456"}
    ),
    ("POST", "/api/v1/auth/mfa/recovery-codes"): Case(
        person(409), json=lambda w, c: {"password": PASSWORD, "code": "123456"}
    ),
    ("GET", "/api/v1/workspaces"): Case(person(200)),
    ("POST", "/api/v1/workspaces"): Case(person(201), json=lambda w, c: {"name": "Atölye"}),
    ("GET", "/api/v1/workspaces/{workspace_id}"): Case(in_workspace(EVERY_ROLE, 200, key_full=200)),
    ("PATCH", "/api/v1/workspaces/{workspace_id}"): Case(
        in_workspace(MANAGERS, 200), json=lambda w, c: {"name": "Renamed"}
    ),
    ("DELETE", "/api/v1/workspaces/{workspace_id}"): Case(in_workspace(("owner",), 204)),
    ("GET", "/api/v1/workspaces/{workspace_id}/members"): Case(in_workspace(EVERY_ROLE, 200)),
    ("PATCH", "/api/v1/workspaces/{workspace_id}/members/{user_id}"): Case(
        in_workspace(MANAGERS, 200), json=lambda w, c: {"role": "operator"}
    ),
    ("DELETE", "/api/v1/workspaces/{workspace_id}/members/{user_id}"): Case(
        in_workspace(MANAGERS, 204)
    ),
    ("POST", "/api/v1/workspaces/{workspace_id}/invitations"): Case(
        in_workspace(MANAGERS, 201),
        json=lambda w, c: {"email": f"inv-{uuid.uuid4().hex[:6]}@example.com", "role": "viewer"},
    ),
    ("GET", "/api/v1/workspaces/{workspace_id}/invitations"): Case(in_workspace(MANAGERS, 200)),
    ("DELETE", "/api/v1/workspaces/{workspace_id}/invitations/{invitation_id}"): Case(
        in_workspace(MANAGERS, 204)
    ),
    ("POST", "/api/v1/invitations/accept"): Case(
        {**person(403), "outsider": 200},
        json=lambda w, c: {"token": w.outsider_invitation_token},
    ),
    ("GET", "/api/v1/workspaces/{workspace_id}/api-keys"): Case(in_workspace(MANAGERS, 200)),
    ("POST", "/api/v1/workspaces/{workspace_id}/api-keys"): Case(
        in_workspace(MANAGERS, 201), json=lambda w, c: {"name": "cnc", "scopes": ["cam:run"]}
    ),
    ("DELETE", "/api/v1/workspaces/{workspace_id}/api-keys/{key_id}"): Case(
        in_workspace(MANAGERS, 204)
    ),
    ("GET", "/api/v1/workspaces/{workspace_id}/audit-events"): Case(in_workspace(("owner",), 200)),
    ("GET", "/api/v1/admin/users"): Case(superuser_only(200)),
    ("PATCH", "/api/v1/admin/users/{user_id}"): Case(
        superuser_only(200), json=lambda w, c: {"is_active": False}
    ),
    ("GET", "/api/v1/admin/audit-events"): Case(superuser_only(200)),
    # Uploads (tus): the workspace comes from Upload-Metadata, designs:write is needed there.
    ("OPTIONS", "/api/v1/uploads"): Case(public(204)),
    ("POST", "/api/v1/uploads"): Case(
        in_workspace(WRITERS, 201, key_full=201), headers=_tus_create
    ),
    ("HEAD", "/api/v1/uploads/{upload_id}"): Case(
        in_workspace(WRITERS, 200, key_full=200), headers=lambda w, c: TUS
    ),
    ("PATCH", "/api/v1/uploads/{upload_id}"): Case(
        in_workspace(WRITERS, 204, key_full=204), headers=_tus_patch, content=b"0123456789"
    ),
    ("DELETE", "/api/v1/uploads/{upload_id}"): Case(
        in_workspace(WRITERS, 204, key_full=204), headers=lambda w, c: TUS
    ),
    ("GET", "/api/v1/uploads/{upload_id}"): Case(in_workspace(WRITERS, 200, key_full=200)),
    # Categories: everyone reads the tree, superusers shape it.
    ("GET", "/api/v1/categories"): Case(public(200)),
    ("POST", "/api/v1/categories"): Case(superuser_only(201), json=_category_body),
    ("PATCH", "/api/v1/categories/{category_id}"): Case(
        superuser_only(200), json=lambda w, c: {"name_en": "Fixtures"}
    ),
    ("DELETE", "/api/v1/categories/{category_id}"): Case(superuser_only(204)),
    # Designs. Unless a row says otherwise, {design_id} is the team's private design: it does
    # not exist for anybody who may not see it, signed in or not.
    ("GET", "/api/v1/designs"): Case(public(200)),
    ("POST", "/api/v1/designs"): Case(
        design_writers(201), json=lambda w, c: {"name": "Fikstür", "workspace_id": w.workspace_id}
    ),
    ("GET", "/api/v1/designs/{design_id}"): Case(design_readers(200)),
    ("PATCH", "/api/v1/designs/{design_id}"): Case(
        design_writers(200), json=lambda w, c: {"name": "Renamed"}
    ),
    ("DELETE", "/api/v1/designs/{design_id}"): Case(design_writers(204)),
    # A design in the trash is hidden from everyone outside its workspace, even a public one.
    ("POST", "/api/v1/designs/{design_id}/restore"): Case(
        design_writers(200), ids=lambda w: {"design_id": w.hub.deleted_design_id}
    ),
    ("GET", "/api/v1/workspaces/{workspace_id}/trash"): Case(design_writers(200)),
    # Seeing the source comes first (anonymous: 404), then designs:write where the copy goes.
    ("POST", "/api/v1/designs/{design_id}/remix"): Case(
        {**design_writers(201), "anonymous": 404}, json=_remix_body
    ),
    ("GET", "/api/v1/designs/{design_id}/thumbnail"): Case(design_readers(200)),
    ("GET", "/api/v1/designs/{design_id}/versions"): Case(design_readers(200)),
    ("POST", "/api/v1/designs/{design_id}/versions"): Case(
        design_writers(201), json=lambda w, c: {"upload_id": w.hub.finished_upload_id}
    ),
    ("GET", "/api/v1/designs/{design_id}/versions/{version_id}"): Case(design_readers(200)),
    ("POST", "/api/v1/designs/{design_id}/versions/{version_id}/current"): Case(
        design_writers(200)
    ),
    ("GET", "/api/v1/designs/{design_id}/versions/{version_id}/file"): Case(design_readers(200)),
    ("GET", "/api/v1/designs/{design_id}/versions/{version_id}/thumbnail"): Case(
        design_readers(200)
    ),
    ("POST", "/api/v1/designs/{design_id}/versions/{version_id}/download-link"): Case(
        design_readers(200), json=lambda w, c: {"expires_in": 60}
    ),
    ("GET", "/api/v1/designs/{design_id}/compare"): Case(
        design_readers(200), params=lambda w: {"a": w.hub.version_id, "b": w.hub.version2_id}
    ),
    # A signed link is the permission itself: whoever holds it downloads, signed in or not.
    ("GET", "/api/v1/downloads/{token}"): Case(
        public(200), ids=lambda w: {"token": w.hub.download_token}
    ),
    # Reviews. People only (API keys: 403), never of their own workspace's design.
    ("GET", "/api/v1/designs/{design_id}/reviews"): Case(design_readers(200)),
    # The outsider's public design: every team member may review it, its owner may not.
    ("POST", "/api/v1/designs/{design_id}/reviews"): Case(
        {**person(201), "outsider": 403},
        json=lambda w, c: {"rating": 5, "title": "Sağlam", "body": "Printed fine."},
        ids=lambda w: {"design_id": w.hub.outsider_design_id},
    ),
    # The outsider's review of the team's public design: its author or a superuser deletes it.
    ("DELETE", "/api/v1/designs/{design_id}/reviews/{review_id}"): Case(
        {**person(403), "outsider": 204, "superuser": 204}, ids=_on_public_design
    ),
    # The design's workspace answers (designs:write); a public design is no 404 to anybody.
    ("POST", "/api/v1/designs/{design_id}/reviews/{review_id}/reply"): Case(
        {**design_writers(200), "outsider": 403, "superuser": 403, "key_full": 403},
        json=lambda w, c: {"body": "Teşekkürler!"},
        ids=_on_public_design,
    ),
    ("POST", "/api/v1/designs/{design_id}/reviews/{review_id}/report"): Case(
        person(202), json=lambda w, c: {"reason": "spam"}, ids=_on_public_design
    ),
    # Share links: the workspace manages them (creating one takes a person), anyone uses one.
    ("GET", "/api/v1/designs/{design_id}/share-links"): Case(design_writers(200)),
    ("POST", "/api/v1/designs/{design_id}/share-links"): Case(
        {**design_writers(201), "key_full": 403},
        json=lambda w, c: {"label": "müşteri", "can_download": True},
    ),
    ("DELETE", "/api/v1/designs/{design_id}/share-links/{link_id}"): Case(design_writers(204)),
    ("GET", "/api/v1/shared/{token}"): Case(public(200)),
    ("GET", "/api/v1/shared/{token}/file"): Case(public(200)),
}


def schema_operations(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }


def test_every_operation_is_in_the_matrix() -> None:
    from tezgah.main import create_app

    operations = schema_operations(create_app())
    assert operations - MATRIX.keys() == set(), "add these operations to MATRIX"
    assert MATRIX.keys() - operations == set(), "these MATRIX rows name no operation"


def fill_path(path: str, world: World, ids: dict[str, str] | None = None) -> str:
    hub = world.hub
    values = {
        "workspace_id": world.workspace_id,
        "user_id": world.target_user_id,
        "invitation_id": world.invitation_id,
        "key_id": world.key_id,
        "upload_id": world.upload_id,
        "provider": "unconfigured",
        "design_id": hub.design_id,
        "version_id": hub.version_id,
        "review_id": hub.review_id,
        "link_id": hub.share_link_id,
        "category_id": hub.category_id,
        "token": hub.share_token,
    }
    return path.format(**{**values, **(ids or {})})


@pytest.fixture
async def password_hash(app: FastAPI) -> str:
    kit: AuthKit = app.state.auth
    return await kit.passwords.hash(PASSWORD)


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX), ids=lambda v: str(v))
async def test_each_caller_gets_the_expected_status(
    method: str, path: str, app: FastAPI, client: httpx.AsyncClient, password_hash: str
) -> None:
    case = MATRIX[(method, path)]
    got: dict[str, int] = {}
    for caller in CALLERS:
        world = await build_world(app, password_hash)
        response = await client.request(
            method,
            fill_path(path, world, case.ids(world) if case.ids else None),
            params=case.params(world) if case.params else None,
            headers={
                **world.credentials[caller],
                **(case.headers(world, caller) if case.headers else {}),
            },
            content=case.content,
            json=case.json(world, caller) if case.json else None,
            data=case.form(world, caller) if case.form else None,
        )
        got[caller] = response.status_code
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")
    assert got == case.expected
