"""Sign-in with OpenID Connect providers (Keycloak, Google, ...) and plain OAuth2 ones (GitHub).

The flow is the authorization code flow with PKCE (S256), a ``state`` and, for OpenID Connect, a
``nonce``, all three generated per login. The HTTP side is Authlib's ``AsyncOAuth2Client``; the
ID token's signature is checked against the provider's JWKS with joserfc (the JOSE library Authlib
itself builds on) and its claims (issuer, audience, expiry, nonce, ...) with Authlib's
:class:`~authlib.oidc.core.CodeIDToken`. No cryptography is written here.

Where the flow lives between the two requests
    In a signed, short-lived (10 minutes), HttpOnly cookie scoped to the provider's callback path,
    not in process memory and not in a server-side table. Signed with the server's JWT key ring
    (type ``oidc_flow``), it works unchanged on any number of API processes and in both run
    modes, and it binds the flow to the browser that started it: a callback URL carrying somebody
    else's code and state (login CSRF, a leaked redirect) finds no matching cookie and is refused.
    The cookie's name carries a hash of the state, so two sign-ins in two tabs do not overwrite
    each other. The cookie holds the PKCE verifier too: only the browser that started the login
    ever has it, which is the point of PKCE. Replaying a callback is stopped by the provider, for
    which a code is single-use.

Linking accounts
    A returning (provider, subject) pair signs in its user, whatever the provider now says the
    email is. A new pair is linked only through an email address the provider marks verified: to
    the tezgah account with that address, or to a new account (no password, address verified,
    personal workspace). An existing account whose own address was never confirmed is not linked:
    whoever registered it never proved they own the address, and linking would hand the real
    owner an account somebody else may hold the password of (account pre-hijacking).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

# Imported first: it installs Authlib's own "always show" warning filter, which the block below
# must come after to silence one warning.
import authlib.deprecate  # type: ignore[import-untyped]  # noqa: F401
import httpx
from email_validator import EmailNotValidError, validate_email
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth import audit, repository, service
from tezgah.auth.audit import RequestMeta
from tezgah.auth.exceptions import (
    AccountInactive,
    OIDCAccountUnverified,
    OIDCEmailNotVerified,
    OIDCIDTokenInvalid,
    OIDCProfileInvalid,
    OIDCProviderError,
    OIDCProviderNotFound,
    OIDCProviderUnavailable,
    OIDCRedirectInvalid,
    OIDCStateInvalid,
    OIDCTokenExchangeFailed,
)
from tezgah.auth.kit import AuthKit
from tezgah.auth.models import ExternalIdentity, User
from tezgah.auth.tokens import TokenError
from tezgah.core.cache import Cache
from tezgah.core.config import OIDCProvider, Settings
from tezgah.core.db import utcnow
from tezgah.core.errors import AppError
from tezgah.core.logging import get_logger

with warnings.catch_warnings():
    # Authlib 1.9 would rather import "httpx2" and warns when it falls back to httpx, which is
    # what this project uses: noise for every operator, nothing to act on.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import (  # type: ignore[import-untyped]
        AsyncOAuth2Client,
        OAuthError,
    )
from authlib.oidc.core import CodeIDToken  # type: ignore[import-untyped]

log = get_logger("tezgah.auth.oidc")

Mode = Literal["token", "session"]
CALLBACK_PATH = "/api/v1/auth/oidc/{provider}/callback"
FLOW_TOKEN_TYPE = "oidc_flow"  # noqa: S105 - a token type, not a secret
FLOW_COOKIE_PREFIX = "tezgah_oidc_"
FLOW_TTL_SECONDS = 600
METADATA_TTL_SECONDS = 3600
HTTP_TIMEOUT_SECONDS = 10.0
ID_TOKEN_LEEWAY_SECONDS = 60
# Asymmetric algorithms only: an ID token is verified with the provider's public keys.
SIGNING_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
PROVIDER_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_STATE_LENGTH = 256
MAX_REDIRECT_LENGTH = 2000


# Configuration ------------------------------------------------------------------------------


def get_provider(settings: Settings, name: str) -> OIDCProvider:
    for provider in settings.oidc_providers:
        if provider.name == name:
            return provider
    raise OIDCProviderNotFound(params={"provider": name[:40]})


def callback_path(provider: OIDCProvider) -> str:
    return CALLBACK_PATH.format(provider=provider.name)


def redirect_uri(settings: Settings, provider: OIDCProvider) -> str:
    """The callback URL registered at the provider."""
    return settings.base_url.rstrip("/") + callback_path(provider)


def method_of(provider: OIDCProvider) -> str:
    return f"oidc:{provider.name}"


def uses_openid(provider: OIDCProvider) -> bool:
    return "openid" in provider.scopes.split()


def safe_redirect_target(value: str) -> str:
    """A path on this site, or refused: never an absolute or protocol-relative URL (an open
    redirect would lend the sign-in page's trust to any site). Browsers read a backslash as a
    slash and drop tabs and newlines, so ``/\\evil.example`` and ``/\\t/evil.example`` are
    refused too."""
    if (
        not value
        or len(value) > MAX_REDIRECT_LENGTH
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(char) < 0x21 or ord(char) == 0x7F for char in value)
    ):
        raise OIDCRedirectInvalid()
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        raise OIDCRedirectInvalid()
    return value


def with_fragment(path: str, values: Mapping[str, str]) -> str:
    """``path`` with ``values`` in its fragment (never sent to a server, never logged)."""
    return urlsplit(path)._replace(fragment=urlencode(values)).geturl()


# Provider metadata (discovery and JWKS), cached in the shared cache ------------------------


@dataclass(frozen=True)
class Endpoints:
    authorize_url: str
    token_url: str
    userinfo_url: str
    # Set when ID tokens are expected (scope "openid"): the issuer they must name.
    issuer: str | None
    jwks_uri: str
    algorithms: tuple[str, ...]
    token_auth_method: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _unavailable(provider: OIDCProvider, reason: str, **fields: object) -> OIDCProviderUnavailable:
    log.warning("oidc.provider_unavailable", provider=provider.name, reason=reason, **fields)
    return OIDCProviderUnavailable(headers={"Retry-After": "30"})


async def _get_json(client: AsyncOAuth2Client, provider: OIDCProvider, url: str) -> Any:
    try:
        response = await client.request("GET", url, withhold_token=True)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise _unavailable(provider, "metadata_fetch_failed", url=url, error=str(exc)) from exc


async def _discovery(cache: Cache, client: AsyncOAuth2Client, provider: OIDCProvider) -> Any:
    issuer = provider.issuer.rstrip("/")
    key = f"oidc:meta:{_digest(issuer)}"
    cached = await cache.get_json(key)
    if isinstance(cached, dict):
        return cached
    document = await _get_json(client, provider, f"{issuer}/.well-known/openid-configuration")
    if not isinstance(document, dict):
        raise _unavailable(provider, "discovery_not_an_object")
    # OpenID Connect Discovery 1.0, section 4.3: the document must name the issuer it was
    # fetched for, or an attacker-controlled document could vouch for another issuer's tokens.
    if document.get("issuer") not in (provider.issuer, issuer):
        raise _unavailable(provider, "discovery_issuer_mismatch", issuer=document.get("issuer"))
    await cache.set_json(key, document, METADATA_TTL_SECONDS)
    return document


def _token_auth_method(provider: OIDCProvider, metadata: Mapping[str, Any]) -> str:
    if not provider.client_secret.get_secret_value():
        return "none"  # a public client: PKCE is its only proof
    supported = metadata.get("token_endpoint_auth_methods_supported")
    if (
        isinstance(supported, list)
        and "client_secret_basic" not in supported
        and "client_secret_post" in supported
    ):
        return "client_secret_post"
    return "client_secret_basic"


async def resolve_endpoints(
    cache: Cache, client: AsyncOAuth2Client, provider: OIDCProvider
) -> Endpoints:
    """Endpoints given in the settings win; the rest come from discovery. ID tokens need
    discovery (issuer and JWKS); a plain OAuth2 provider with explicit URLs needs none."""
    openid = uses_openid(provider)
    metadata: Mapping[str, Any] = {}
    if openid or not (provider.authorize_url and provider.token_url and provider.userinfo_url):
        metadata = await _discovery(cache, client, provider)
    authorize_url = provider.authorize_url or metadata.get("authorization_endpoint")
    token_url = provider.token_url or metadata.get("token_endpoint")
    userinfo_url = provider.userinfo_url or metadata.get("userinfo_endpoint") or ""
    jwks_uri = metadata.get("jwks_uri") if openid else ""
    if not _is_http_url(authorize_url) or not _is_http_url(token_url):
        raise _unavailable(provider, "endpoints_missing")
    if openid and not _is_http_url(jwks_uri):
        raise _unavailable(provider, "jwks_uri_missing")
    if not openid and not _is_http_url(userinfo_url):
        raise _unavailable(provider, "userinfo_url_missing")
    advertised = metadata.get("id_token_signing_alg_values_supported")
    algorithms = tuple(
        alg
        for alg in (advertised if isinstance(advertised, list) else [])
        if alg in SIGNING_ALGORITHMS
    )
    return Endpoints(
        authorize_url=str(authorize_url),
        token_url=str(token_url),
        userinfo_url=str(userinfo_url) if _is_http_url(userinfo_url) else "",
        issuer=str(metadata["issuer"]) if openid else None,
        jwks_uri=str(jwks_uri) if openid else "",
        algorithms=algorithms or ("RS256",),
        token_auth_method=_token_auth_method(provider, metadata),
    )


async def _key_set(
    cache: Cache,
    client: AsyncOAuth2Client,
    provider: OIDCProvider,
    uri: str,
    *,
    refresh: bool = False,
) -> KeySet:
    key = f"oidc:jwks:{_digest(uri)}"
    data = None if refresh else await cache.get_json(key)
    if data is None:
        data = await _get_json(client, provider, uri)
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise _unavailable(provider, "jwks_not_a_key_set")
        await cache.set_json(key, data, METADATA_TTL_SECONDS)
    try:
        return KeySet.import_key_set(data)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise _unavailable(provider, "jwks_unreadable", error=str(exc)) from exc


def _client(settings: Settings, provider: OIDCProvider) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=provider.client_id,
        client_secret=provider.client_secret.get_secret_value() or None,
        scope=provider.scopes,
        redirect_uri=redirect_uri(settings, provider),
        code_challenge_method="S256",
        timeout=HTTP_TIMEOUT_SECONDS,
        follow_redirects=False,
    )


# Step 1: send the browser to the provider --------------------------------------------------


@dataclass(frozen=True)
class LoginRedirect:
    url: str
    cookie_name: str
    cookie_value: str
    cookie_path: str
    max_age: int


@dataclass(frozen=True)
class Flow:
    state: str
    nonce: str
    code_verifier: str
    redirect_to: str
    mode: Mode


def flow_cookie_name(state: str) -> str:
    return FLOW_COOKIE_PREFIX + hashlib.sha256(state.encode()).hexdigest()[:16]


async def start_login(
    kit: AuthKit, cache: Cache, provider: OIDCProvider, redirect_to: str, mode: Mode
) -> LoginRedirect:
    target = safe_redirect_target(redirect_to)
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    code_verifier = secrets.token_urlsafe(64)  # 86 characters (RFC 7636: 43 to 128)
    async with _client(kit.settings, provider) as client:
        endpoints = await resolve_endpoints(cache, client, provider)
        extra = {"nonce": nonce} if endpoints.issuer is not None else {}
        url, _ = client.create_authorization_url(
            endpoints.authorize_url, state=state, code_verifier=code_verifier, **extra
        )
    cookie = kit.tokens.issue(
        provider.name,
        FLOW_TOKEN_TYPE,
        FLOW_TTL_SECONDS,
        st=state,
        nonce=nonce,
        cv=code_verifier,
        rt=target,
        mode=mode,
    )
    return LoginRedirect(
        url=str(url),
        cookie_name=flow_cookie_name(state),
        cookie_value=cookie,
        cookie_path=callback_path(provider),
        max_age=FLOW_TTL_SECONDS,
    )


# Step 2: the provider sends the browser back -----------------------------------------------


def provider_error(error: str) -> OIDCProviderError:
    """The provider's ``?error=``; only a well-formed code is repeated in the message."""
    code = error if PROVIDER_ERROR_CODE.match(error) else "unknown_error"
    return OIDCProviderError(params={"error": code})


def read_flow(
    kit: AuthKit, provider: OIDCProvider, state: str | None, cookies: Mapping[str, str]
) -> Flow:
    """The flow this browser started for ``state``, or :class:`OIDCStateInvalid`."""
    if not state or len(state) > MAX_STATE_LENGTH:
        raise OIDCStateInvalid()
    raw = cookies.get(flow_cookie_name(state))
    if not raw:
        raise OIDCStateInvalid()
    try:
        claims = kit.tokens.decode(raw, FLOW_TOKEN_TYPE)
    except TokenError as exc:
        raise OIDCStateInvalid() from exc
    mode = claims.get("mode")
    values = [claims.get(name) for name in ("st", "nonce", "cv", "rt")]
    if (
        claims.get("sub") != provider.name
        or mode not in ("token", "session")
        or not all(isinstance(value, str) for value in values)
        or not kit.tokens_match(str(claims["st"]), state)
    ):
        raise OIDCStateInvalid()
    return Flow(
        state=state,
        nonce=str(claims["nonce"]),
        code_verifier=str(claims["cv"]),
        redirect_to=safe_redirect_target(str(claims["rt"])),
        mode="session" if mode == "session" else "token",
    )


@dataclass(frozen=True)
class ExternalProfile:
    """Who the provider says signed in."""

    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    locale: str | None


async def _exchange_code(
    client: AsyncOAuth2Client, provider: OIDCProvider, endpoints: Endpoints, flow: Flow, code: str
) -> dict[str, Any]:
    client.token_endpoint_auth_method = endpoints.token_auth_method
    try:
        token = await client.fetch_token(
            endpoints.token_url,
            grant_type="authorization_code",
            code=code,
            code_verifier=flow.code_verifier,
        )
    except OAuthError as exc:
        log.info("oidc.token_refused", provider=provider.name, error=str(exc.error))
        raise OIDCTokenExchangeFailed() from exc
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code >= 500:
            raise _unavailable(provider, "token_endpoint_error") from exc
        log.info("oidc.token_refused", provider=provider.name, status=exc.response.status_code)
        raise OIDCTokenExchangeFailed() from exc
    except httpx.HTTPError as exc:
        raise _unavailable(provider, "token_endpoint_unreachable", error=str(exc)) from exc
    except ValueError as exc:
        log.info("oidc.token_unreadable", provider=provider.name, error=str(exc))
        raise OIDCTokenExchangeFailed() from exc
    if not isinstance(token.get("access_token"), str):
        raise OIDCTokenExchangeFailed()
    return dict(token)


async def _validate_id_token(
    cache: Cache,
    client: AsyncOAuth2Client,
    provider: OIDCProvider,
    endpoints: Endpoints,
    token: Mapping[str, Any],
    nonce: str,
) -> dict[str, Any]:
    """Signature (the provider's JWKS), then iss, aud, exp, iat, nonce, azp and at_hash."""
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        log.info("oidc.id_token_missing", provider=provider.name)
        raise OIDCIDTokenInvalid()
    registry = JWSRegistry(algorithms=list(endpoints.algorithms), strict_check_header=False)
    try:
        key_set = await _key_set(cache, client, provider, endpoints.jwks_uri)
        try:
            decoded = jwt.decode(id_token, key_set, registry=registry)
        except InvalidKeyIdError:
            # The provider may have rotated its keys since the set was cached: fetch it once.
            key_set = await _key_set(cache, client, provider, endpoints.jwks_uri, refresh=True)
            decoded = jwt.decode(id_token, key_set, registry=registry)
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            {
                "iss": {"essential": True, "value": endpoints.issuer},
                "aud": {"essential": True, "values": [provider.client_id]},
                "sub": {"essential": True},
                "exp": {"essential": True},
                "iat": {"essential": True},
                "nonce": {"essential": True, "value": nonce},
            },
            {
                "nonce": nonce,
                "client_id": provider.client_id,
                "access_token": token.get("access_token"),
            },
        )
        claims.validate(leeway=ID_TOKEN_LEEWAY_SECONDS)
    except (JoseError, ValueError) as exc:
        log.info("oidc.id_token_invalid", provider=provider.name, error=repr(exc))
        raise OIDCIDTokenInvalid() from exc
    return dict(claims)


async def _fetch_with_token(client: AsyncOAuth2Client, provider: OIDCProvider, url: str) -> Any:
    try:
        response = await client.request("GET", url)
        response.raise_for_status()
        return response.json()
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code >= 500:
            raise _unavailable(provider, "userinfo_error") from exc
        log.info("oidc.userinfo_refused", provider=provider.name, url=url)
        raise OIDCProfileInvalid() from exc
    except httpx.HTTPError as exc:
        raise _unavailable(provider, "userinfo_unreachable", error=str(exc)) from exc
    except (OAuthError, ValueError) as exc:
        raise OIDCProfileInvalid() from exc


def _is_true(value: object) -> bool:
    # Some providers send the JSON string "true" instead of the boolean.
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _email(value: object) -> str | None:
    if not isinstance(value, str) or len(value) > 320:
        return None
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return None
    return value


def _primary_verified_email(emails: object) -> tuple[str | None, bool]:
    """GitHub's ``/user/emails``: the primary address, and whether it is verified."""
    if not isinstance(emails, list):
        return None, False
    for item in emails:
        if isinstance(item, dict) and item.get("primary") is True:
            return _email(item.get("email")), item.get("verified") is True
    return None, False


def _text(*values: object) -> str | None:
    for value in values:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _subject(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    subject = str(value)
    return subject if 0 < len(subject) <= 255 else None


async def fetch_profile(
    kit: AuthKit, cache: Cache, provider: OIDCProvider, flow: Flow, code: str
) -> ExternalProfile:
    """Trade the code for tokens, validate the ID token, read the user info if needed."""
    async with _client(kit.settings, provider) as client:
        endpoints = await resolve_endpoints(cache, client, provider)
        token = await _exchange_code(client, provider, endpoints, flow, code)
        claims: dict[str, Any] = {}
        if endpoints.issuer is not None:
            claims = await _validate_id_token(cache, client, provider, endpoints, token, flow.nonce)
        userinfo: dict[str, Any] = {}
        if endpoints.userinfo_url and ("email" not in claims or "email_verified" not in claims):
            fetched = await _fetch_with_token(client, provider, endpoints.userinfo_url)
            if not isinstance(fetched, dict):
                raise OIDCProfileInvalid()
            userinfo = fetched
        emails: object = None
        if provider.emails_url:
            emails = await _fetch_with_token(client, provider, provider.emails_url)
    if claims:
        subject = _subject(claims.get("sub"))
        # OpenID Connect Core, 5.3.2: user info about another subject must not be used.
        if userinfo and userinfo.get("sub") != claims.get("sub"):
            log.info("oidc.userinfo_subject_mismatch", provider=provider.name)
            raise OIDCProfileInvalid()
    else:
        subject = _subject(userinfo.get("sub", userinfo.get("id")))
    if subject is None:
        raise OIDCProfileInvalid()
    # Address and its "verified" flag come from the same statement, never one from each.
    complete = "email" in claims and "email_verified" in claims
    source = claims if complete or "email" not in userinfo else userinfo
    email, verified = _email(source.get("email")), _is_true(source.get("email_verified"))
    if provider.emails_url:
        email, verified = _primary_verified_email(emails)
    return ExternalProfile(
        subject=subject,
        email=email,
        email_verified=email is not None and verified,
        name=_text(
            claims.get("name"),
            userinfo.get("name"),
            claims.get("preferred_username"),
            userinfo.get("preferred_username"),
            userinfo.get("login"),
        ),
        locale=_text(claims.get("locale"), userinfo.get("locale")),
    )


# Step 3: whose account is it? ---------------------------------------------------------------


async def identity_by_subject(
    session: AsyncSession, provider: str, subject: str
) -> ExternalIdentity | None:
    result = await session.scalars(
        select(ExternalIdentity).where(
            ExternalIdentity.provider == provider, ExternalIdentity.subject == subject
        )
    )
    return result.first()


def _display_name(profile: ExternalProfile) -> str:
    name = profile.name or (profile.email or "").split("@", 1)[0] or "tezgah user"
    return name[:100].strip() or "tezgah user"


async def _create_user(
    session: AsyncSession, meta: RequestMeta, profile: ExternalProfile, method: str
) -> User:
    assert profile.email is not None
    now = utcnow()
    display_name = _display_name(profile)
    user = User(
        email=profile.email,
        email_key=repository.email_key(profile.email),
        display_name=display_name,
        language="tr" if (profile.locale or "").lower().startswith("tr") else "en",
        password_hash=None,
        email_verified_at=now,  # the provider vouched for it
        tokens_valid_after=now,
    )
    session.add(user)
    await session.flush()
    await service.create_workspace(session, user, display_name, personal=True)
    audit.record(session, "user.registered", meta, actor_user_id=user.id, method=method)
    return user


async def _refuse(
    kit: AuthKit, meta: RequestMeta, error: AppError, method: str, reason: str, **fields: Any
) -> AppError:
    await audit.record_failure_apart(
        kit.database, "login.failed", meta, method=method, reason=reason, **fields
    )
    return error


async def sign_in(
    session: AsyncSession,
    kit: AuthKit,
    meta: RequestMeta,
    provider: OIDCProvider,
    profile: ExternalProfile,
) -> service.LoginResult:
    """Find or link (or create) the account, then log it in, or answer the MFA challenge."""
    method = method_of(provider)
    now = utcnow()
    identity = await identity_by_subject(session, provider.name, profile.subject)
    user: User | None
    if identity is not None:
        user = await repository.user_by_id(session, identity.user_id)
        assert user is not None  # the identity row is deleted with its user
        if not user.is_active:
            raise await _refuse(
                kit, meta, AccountInactive(), method, "inactive", subject_user_id=user.id
            )
        identity.email = profile.email
        identity.last_login_at = now
    else:
        if profile.email is None or not profile.email_verified:
            raise await _refuse(kit, meta, OIDCEmailNotVerified(), method, "email_not_verified")
        user = await repository.user_by_email(session, profile.email)
        if user is None:
            user = await _create_user(session, meta, profile, method)
        elif not user.is_active:
            raise await _refuse(
                kit, meta, AccountInactive(), method, "inactive", subject_user_id=user.id
            )
        elif user.email_verified_at is None:
            raise await _refuse(
                kit,
                meta,
                OIDCAccountUnverified(),
                method,
                "account_unverified",
                subject_user_id=user.id,
            )
        identity = ExternalIdentity(
            user_id=user.id,
            provider=provider.name,
            subject=profile.subject,
            email=profile.email,
            created_at=now,
            last_login_at=now,
        )
        session.add(identity)
        await session.flush()
        audit.record(
            session,
            "oidc.linked",
            meta,
            actor_user_id=user.id,
            target_type="external_identity",
            target_id=identity.id,
            provider=provider.name,
        )
    if user.mfa_enabled:
        # The provider's sign-in is one factor; the account's own second factor still applies.
        return service.start_mfa_challenge(session, kit, meta, user, method=method)
    return await service.complete_login(session, kit, meta, user, method=method)


async def finish_login(
    session: AsyncSession,
    kit: AuthKit,
    cache: Cache,
    meta: RequestMeta,
    provider: OIDCProvider,
    flow: Flow,
    code: str,
) -> service.LoginResult:
    try:
        profile = await fetch_profile(kit, cache, provider, flow, code)
    except (OIDCTokenExchangeFailed, OIDCIDTokenInvalid, OIDCProfileInvalid) as exc:
        raise await _refuse(kit, meta, exc, method_of(provider), exc.error_code.lower()) from None
    return await sign_in(session, kit, meta, provider, profile)
