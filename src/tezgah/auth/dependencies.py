"""Who is calling, and what may they do: the dependencies every protected route uses.

A caller is resolved from, in this order: an API key (``X-API-Key``, or a bearer token that looks
like one), a bearer access token (JWT), or the browser session cookie (with a CSRF check on
unsafe methods). ``require(permission)`` then resolves the workspace named in the path and the
caller's permissions in it; a workspace the caller does not belong to is a 404, never a 403, so
its existence is not revealed.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth import repository
from tezgah.auth.audit import RequestMeta
from tezgah.auth.exceptions import (
    AccountInactive,
    APIKeyNotAllowed,
    CSRFFailed,
    InvalidToken,
    MissingPermission,
    SuperuserRequired,
    WorkspaceNotFound,
)
from tezgah.auth.kit import AuthKit, get_auth_kit
from tezgah.auth.models import ApiKey, User, Workspace
from tezgah.auth.permissions import Permission, permissions_for
from tezgah.auth.tokens import API_KEY_PREFIX, TokenError, split_api_key
from tezgah.core import context
from tezgah.core.cache import Cache
from tezgah.core.db import SessionDep, utcnow
from tezgah.core.errors import Unauthorized
from tezgah.core.i18n import set_language
from tezgah.core.pagination import PageParams, page_params
from tezgah.core.ratelimit import client_ip

ACCESS_COOKIE = "tezgah_access"
REFRESH_COOKIE = "tezgah_refresh"
CSRF_COOKIE = "tezgah_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LAST_USED_RESOLUTION = timedelta(minutes=1)  # at most one write per key per minute

# Dependencies are coroutines, even when they only read app state: FastAPI runs a plain
# function in the thread pool, a hand-off that costs more than the function.


async def auth_kit(request: Request) -> AuthKit:
    return get_auth_kit(request)


KitDep = Annotated[AuthKit, Depends(auth_kit)]


async def request_meta(request: Request) -> RequestMeta:
    return RequestMeta.from_request(request)


async def request_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.resources.cache
    return cache


MetaDep = Annotated[RequestMeta, Depends(request_meta)]
CacheDep = Annotated[Cache, Depends(request_cache)]
PageDep = Annotated[PageParams, Depends(page_params)]

# Documented security schemes (Swagger's Authorize button); resolution is done below.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)


@dataclass
class Principal:
    user: User
    via: Literal["token", "session", "api_key"]
    api_key: ApiKey | None = None
    claims: dict[str, object] = field(default_factory=dict)

    @property
    def is_api_key(self) -> bool:
        return self.api_key is not None


@dataclass
class WorkspaceAccess:
    principal: Principal
    workspace: Workspace
    role: str
    permissions: frozenset[str]

    @property
    def user(self) -> User:
        return self.principal.user


def _bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None without one or for another
    scheme."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _bearer(request: Request) -> str | None:
    """Like :func:`_bearer_token`, but an Authorization header that is not a usable bearer
    token is refused rather than ignored."""
    token = _bearer_token(request)
    if token is None and request.headers.get("authorization"):
        raise InvalidToken(headers={"WWW-Authenticate": "Bearer"})
    return token


def _presented_api_key(request: Request) -> str | None:
    """An API key from ``X-API-Key``, or a bearer token that looks like one."""
    raw_key = request.headers.get("x-api-key", "").strip()
    if raw_key:
        return raw_key
    token = _bearer_token(request)
    return token if token is not None and token.startswith(API_KEY_PREFIX + "_") else None


async def _from_api_key(session: AsyncSession, kit: AuthKit, raw: str) -> Principal:
    parts = split_api_key(raw)
    if parts is None:
        raise InvalidToken(headers={"WWW-Authenticate": "Bearer"})
    prefix, secret = parts
    key = await repository.api_key_by_prefix(session, prefix)
    now = utcnow()
    if (
        key is None
        or not kit.tokens_match(kit.tokens.hash_secret(secret), key.key_hash)
        or key.revoked_at is not None
        or (key.expires_at is not None and key.expires_at <= now)
    ):
        raise InvalidToken(headers={"WWW-Authenticate": "Bearer"})
    user = await repository.user_by_id(session, key.created_by_id)
    if user is None or not user.is_active:
        raise InvalidToken(headers={"WWW-Authenticate": "Bearer"})
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        key.last_used_at = now
    return Principal(user=user, via="api_key", api_key=key)


def access_claims(request: Request, kit: AuthKit, token: str) -> dict[str, Any]:
    """The verified claims of an access token, decoded once per request (the rate limit's
    caller key and the principal both need them)."""
    cached: tuple[str, dict[str, Any]] | None = getattr(request.state, "access_claims", None)
    if cached is not None and cached[0] == token:
        return cached[1]
    claims = kit.tokens.decode(token, "access")
    request.state.access_claims = (token, claims)
    return claims


async def _from_access_token(
    request: Request,
    session: AsyncSession,
    kit: AuthKit,
    token: str,
    via: Literal["token", "session"],
) -> Principal:
    try:
        claims = access_claims(request, kit, token)
        user_id = uuid.UUID(str(claims["sub"]))
    except (TokenError, ValueError) as exc:
        raise InvalidToken(headers={"WWW-Authenticate": "Bearer"}) from exc
    user = await repository.user_by_id(session, user_id)
    if user is None:
        raise InvalidToken(headers={"WWW-Authenticate": "Bearer"})
    if not user.is_active:
        raise AccountInactive()
    # Logging out everywhere or changing the password moves the user's token version.
    if claims.get("ver") != int(user.tokens_valid_after.timestamp() * 1000):
        raise InvalidToken(headers={"WWW-Authenticate": "Bearer"})
    if await kit.family_ended(str(claims.get("fam", ""))):
        raise InvalidToken(headers={"WWW-Authenticate": "Bearer"})
    return Principal(user=user, via=via, claims=claims)


def csrf_token_for(kit: AuthKit, family_id: str) -> str:
    """The CSRF token of one login: derived from it, so nobody can plant a valid one."""
    return kit.tokens.sign("csrf:" + family_id)


def check_csrf(request: Request, kit: AuthKit, family_id: str | None) -> None:
    """Double submit, bound to the login: the header must equal the cookie, and, when the
    login (``family_id``) is known, be the token issued for it (a cookie planted by a sibling
    domain is not). ``None``: the login is unknown, and its credential is refused next."""
    header = request.headers.get(CSRF_HEADER, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not header or not kit.tokens_match(header, cookie):
        raise CSRFFailed()
    if family_id is not None and not (
        family_id and kit.tokens_match(header, csrf_token_for(kit, family_id))
    ):
        raise CSRFFailed()


def _check_csrf(request: Request, kit: AuthKit, principal: Principal) -> None:
    if request.method not in SAFE_METHODS:
        check_csrf(request, kit, str(principal.claims.get("fam", "")))


async def optional_principal(
    request: Request,
    session: SessionDep,
    kit: KitDep,
    _bearer_doc: Annotated[str | None, Depends(oauth2_scheme)] = None,
    _key_doc: Annotated[str | None, Depends(api_key_scheme)] = None,
) -> Principal | None:
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    principal = await _resolve(request, session, kit)
    if principal is not None:
        request.state.principal = principal
        # Idempotency keys are private to their caller (an API key is its own caller).
        request.state.principal_id = (
            f"key:{principal.api_key.id}" if principal.api_key else f"user:{principal.user.id}"
        )
        context.set_user_id(str(principal.user.id))
        if "accept-language" not in request.headers:
            set_language(principal.user.language)
    return principal


async def _resolve(request: Request, session: AsyncSession, kit: AuthKit) -> Principal | None:
    api_key = _presented_api_key(request)
    if api_key is not None:
        return await _from_api_key(session, kit, api_key)
    bearer = _bearer(request)
    if bearer is not None:
        return await _from_access_token(request, session, kit, bearer, "token")
    cookie = request.cookies.get(ACCESS_COOKIE)
    if cookie:
        principal = await _from_access_token(request, session, kit, cookie, "session")
        _check_csrf(request, kit, principal)
        return principal
    return None


def caller_key(request: Request) -> str:
    """Whom the general API rate limit counts: the API key, the signed-in user (signature
    checked, so nobody can spend someone else's budget), or else the client address."""
    api_key = _presented_api_key(request)
    if api_key is not None:
        parts = split_api_key(api_key)
        if parts is not None:
            # The prefix is public (key lists, the audit trail): the bucket depends on the
            # secret too, so a made-up key with someone's prefix spends its own budget.
            secret_tag = get_auth_kit(request).tokens.hash_secret(parts[1])[:16]
            return f"key:{parts[0]}:{secret_tag}"
    token = _bearer_token(request) or request.cookies.get(ACCESS_COOKIE, "")
    if token:
        try:
            return "user:" + str(access_claims(request, get_auth_kit(request), token)["sub"])
        except TokenError:
            pass
    return "ip:" + client_ip(request)


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


async def current_principal(principal: OptionalPrincipal) -> Principal:
    if principal is None:
        raise Unauthorized(headers={"WWW-Authenticate": "Bearer"})
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def current_user(principal: CurrentPrincipal) -> User:
    """A person (token or session): account routes refuse API keys."""
    if principal.is_api_key:
        raise APIKeyNotAllowed()
    return principal.user


CurrentUser = Annotated[User, Depends(current_user)]


async def current_superuser(user: CurrentUser) -> User:
    if not user.is_superuser:
        raise SuperuserRequired()
    return user


Superuser = Annotated[User, Depends(current_superuser)]


async def resolve_workspace_access(
    session: AsyncSession, principal: Principal, workspace_id: uuid.UUID
) -> WorkspaceAccess:
    found = await repository.workspace_with_role(session, workspace_id, principal.user.id)
    if found is None:
        raise WorkspaceNotFound()
    workspace, role = found
    granted: frozenset[str] = frozenset(permissions_for(role))
    key = principal.api_key
    if key is not None:
        if key.workspace_id != workspace.id:
            raise WorkspaceNotFound()
        # A key never exceeds its creator's current role.
        granted = granted & frozenset(key.scopes)
    return WorkspaceAccess(principal, workspace, role, granted)


def require(permission: Permission) -> Callable[..., Awaitable[WorkspaceAccess]]:
    """Dependency: the caller may do ``permission`` in the workspace of the path's
    ``workspace_id``."""

    async def dependency(
        workspace_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
    ) -> WorkspaceAccess:
        access = await resolve_workspace_access(session, principal, workspace_id)
        if permission not in access.permissions:
            raise MissingPermission(params={"permission": permission.value})
        return access

    dependency.__name__ = f"require_{permission.name}"
    return dependency


def require_person(permission: Permission) -> Callable[..., Awaitable[WorkspaceAccess]]:
    """Like :func:`require`, for actions only a signed-in person may take (never an API key)."""
    inner = require(permission)

    async def dependency(
        workspace_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
    ) -> WorkspaceAccess:
        if principal.is_api_key:
            raise APIKeyNotAllowed()
        return await inner(workspace_id, principal, session)

    dependency.__name__ = f"require_person_{permission.name}"
    return dependency
