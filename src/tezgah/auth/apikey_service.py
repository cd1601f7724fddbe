"""API keys for scripts and CNC machines: scoped to one workspace, shown once, stored hashed."""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth import audit
from tezgah.auth.audit import RequestMeta
from tezgah.auth.dependencies import WorkspaceAccess
from tezgah.auth.exceptions import ApiKeyNotFound, InvalidScopes
from tezgah.auth.kit import AuthKit
from tezgah.auth.models import ApiKey
from tezgah.auth.permissions import API_KEY_SCOPES
from tezgah.auth.schemas import ApiKeyCreated, ApiKeyIn, ApiKeyOut
from tezgah.auth.tokens import new_api_key
from tezgah.core.db import utcnow
from tezgah.core.errors import ValidationFailed
from tezgah.core.i18n import N_, translate
from tezgah.core.pagination import Sorting


def api_key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        workspace_id=key.workspace_id,
        name=key.name,
        prefix=key.prefix,
        scopes=list(key.scopes),
        created_by_id=key.created_by_id,
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


def _check_scopes(access: WorkspaceAccess, scopes: list[str]) -> list[str]:
    """A key may carry only machine scopes, and only what its creator may do today."""
    wanted = sorted(set(scopes))
    refused = [scope for scope in wanted if scope not in API_KEY_SCOPES]
    refused += [s for s in wanted if s in API_KEY_SCOPES and s not in access.permissions]
    if refused:
        raise InvalidScopes(params={"scopes": ", ".join(sorted(set(refused)))})
    return wanted


async def create(
    session: AsyncSession, kit: AuthKit, meta: RequestMeta, access: WorkspaceAccess, data: ApiKeyIn
) -> ApiKeyCreated:
    scopes = _check_scopes(access, data.scopes)
    expires_at = data.expires_at
    if expires_at is not None and expires_at.tzinfo is None:
        # Documented as UTC; a naive value would not compare with (or store as) an aware one.
        expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationFailed(
            field_errors={"expires_at": [translate(N_("The expiry must be in the future."))]}
        )
    full_key, prefix, secret = new_api_key()
    key = ApiKey(
        workspace_id=access.workspace.id,
        created_by_id=access.user.id,
        name=data.name.strip(),
        prefix=prefix,
        key_hash=kit.tokens.hash_secret(secret),
        scopes=scopes,
        expires_at=expires_at,
        created_at=utcnow(),
    )
    session.add(key)
    await session.flush()
    audit.record(
        session,
        "api_key.created",
        meta,
        actor_user_id=access.user.id,
        workspace_id=access.workspace.id,
        target_type="api_key",
        target_id=key.id,
        scopes=scopes,
        prefix=prefix,
    )
    return ApiKeyCreated(**api_key_out(key).model_dump(), key=full_key)


API_KEY_SORTING = Sorting(
    {"created_at": ApiKey.created_at, "name": ApiKey.name},
    default="-created_at",
    tiebreaker=ApiKey.id,
)


def keys_query(workspace_id: uuid.UUID) -> Select[Any]:
    return select(ApiKey).where(ApiKey.workspace_id == workspace_id)


async def revoke(
    session: AsyncSession, meta: RequestMeta, access: WorkspaceAccess, key_id: uuid.UUID
) -> None:
    key = await session.get(ApiKey, key_id)
    if key is None or key.workspace_id != access.workspace.id:
        raise ApiKeyNotFound()
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit.record(
            session,
            "api_key.revoked",
            meta,
            actor_user_id=access.user.id,
            workspace_id=access.workspace.id,
            target_type="api_key",
            target_id=key.id,
            prefix=key.prefix,
        )
