"""Accounts and sessions: registration, login (with MFA), rotating refresh tokens, logout,
passwords, profile. The rules live here; routers only translate HTTP.

Services never commit: the request's unit of work does. Events that must be kept although the
request fails (a failed login, a reused refresh token) are written in their own short
transaction through :func:`tezgah.auth.audit.record_failure_apart`.
"""

from __future__ import annotations

import math
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth import audit, mfa, repository
from tezgah.auth.audit import RequestMeta
from tezgah.auth.exceptions import (
    AccountInactive,
    AccountLocked,
    EmailNotVerified,
    EmailTaken,
    InvalidCredentials,
    InvalidMFACode,
    InvalidToken,
    RefreshTokenReused,
    SlugTaken,
    WeakPassword,
    WrongPassword,
)
from tezgah.auth.kit import AuthKit
from tezgah.auth.models import ActionToken, Membership, RefreshToken, User, Workspace
from tezgah.auth.passwords import MAX_PASSWORD_LENGTH, policy_violations
from tezgah.auth.permissions import Role
from tezgah.auth.schemas import MFAChallenge, ProfileUpdate, RegisterIn, TokenPair
from tezgah.auth.tokens import TokenError
from tezgah.core import mail
from tezgah.core.cache import Cache
from tezgah.core.db import utcnow
from tezgah.core.i18n import N_, translate

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose name, not a password
SLUG_SAFE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class LoginResult:
    user: User
    tokens: TokenPair | None = None
    challenge: MFAChallenge | None = None
    family_id: uuid.UUID | None = None


# Helpers ----------------------------------------------------------------------------------------


def token_version(user: User) -> int:
    """Access tokens carry this; changing ``tokens_valid_after`` invalidates every one issued."""
    return int(user.tokens_valid_after.timestamp() * 1000)


def end_all_sessions(user: User, now: datetime) -> None:
    user.tokens_valid_after = now


def check_password_policy(password: str, email: str, kit: AuthKit, field: str) -> None:
    problems = policy_violations(password, email=email, min_length=kit.settings.password_min_length)
    if problems:
        messages = [
            translate(
                message,
                None,
                min_length=kit.settings.password_min_length,
                max_length=MAX_PASSWORD_LENGTH,
            )
            for message in problems
        ]
        raise WeakPassword(field_errors={field: messages})


def _slug_base(text: str) -> str:
    # "Atölye Işık" -> "atolye-isik": decompose accents; the dotless ı has no decomposition.
    decomposed = unicodedata.normalize("NFKD", text.replace("ı", "i").replace("İ", "I"))
    ascii_text = decomposed.encode("ascii", "ignore").decode().lower()
    return SLUG_SAFE.sub("-", ascii_text).strip("-")[:40] or "workspace"


async def unique_slug(session: AsyncSession, text: str) -> str:
    base = _slug_base(text)
    if not await repository.slug_taken(session, base):
        return base
    while True:
        candidate = f"{base}-{secrets.token_hex(3)}"
        if not await repository.slug_taken(session, candidate):
            return candidate


async def create_workspace(
    session: AsyncSession, owner: User, name: str, *, personal: bool, slug: str | None = None
) -> Workspace:
    workspace = Workspace(
        slug=slug or await unique_slug(session, name),
        name=name,
        is_personal=personal,
        created_by_id=owner.id,
    )
    session.add(workspace)
    try:
        await session.flush()
    except IntegrityError as exc:
        if slug is None:
            raise  # a generated slug lost a race: the generic 409 asks to try again
        raise SlugTaken(params={"slug": slug}) from exc
    session.add(Membership(workspace_id=workspace.id, user_id=owner.id, role=Role.owner.value))
    return workspace


# Email tokens -------------------------------------------------------------------------------


async def issue_action_token(
    session: AsyncSession, kit: AuthKit, user: User, purpose: str, ttl_seconds: int
) -> str:
    now = utcnow()
    await repository.expire_action_tokens(session, user.id, purpose, now)
    secret, token_hash = kit.tokens.new_secret()
    session.add(
        ActionToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=token_hash,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
    )
    return secret


def link(kit: AuthKit, path: str, token: str) -> str:
    return f"{kit.settings.base_url.rstrip('/')}{path}#token={token}"


def mail_user(
    session: AsyncSession, user: User, *, kind: str, subject: str, body: str, **params: object
) -> None:
    """Queue a mail to ``user`` with ``subject`` and ``body`` (message ids) in their language."""
    language = user.language
    mail.enqueue(
        session,
        to=user.email,
        subject=translate(subject, language),
        body=translate(body, language, name=user.display_name, **params),
        language=language,
        kind=kind,
    )


async def send_verification_mail(session: AsyncSession, kit: AuthKit, user: User) -> None:
    token = await issue_action_token(
        session, kit, user, VERIFY_EMAIL, kit.settings.email_token_ttl_seconds
    )
    mail_user(
        session,
        user,
        kind=VERIFY_EMAIL,
        subject=N_("Confirm your email address"),
        body=N_(
            "Hello {name},\n\nconfirm your email address for tezgah with this link:\n{link}\n\n"
            "Or send this code to the API: {token}\n\nIf you did not create an account, ignore "
            "this mail."
        ),
        link=link(kit, "/verify-email", token),
        token=token,
    )


async def consume_action_token(
    session: AsyncSession, kit: AuthKit, token: str, purpose: str
) -> User:
    row = await repository.action_token_by_hash(session, kit.tokens.hash_secret(token), purpose)
    now = utcnow()
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise InvalidToken()
    if not await repository.claim_action_token(session, row.id, now):
        raise InvalidToken()  # spent by a request running at the same time
    user = await repository.user_by_id(session, row.user_id)
    if user is None or not user.is_active:
        raise InvalidToken()
    return user


# Registration -------------------------------------------------------------------------------


async def register(
    session: AsyncSession, kit: AuthKit, meta: RequestMeta, data: RegisterIn
) -> User:
    email = str(data.email)
    check_password_policy(data.password, email, kit, "password")
    if await repository.user_by_email(session, email) is not None:
        raise EmailTaken()
    user = User(
        email=email,
        email_key=repository.email_key(email),
        display_name=data.display_name.strip(),
        language=data.language,
        password_hash=await kit.passwords.hash(data.password),
        tokens_valid_after=utcnow(),
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Another registration with this address committed since the check above.
        raise EmailTaken() from exc
    await create_workspace(session, user, data.display_name.strip(), personal=True)
    await send_verification_mail(session, kit, user)
    audit.record(session, "user.registered", meta, actor_user_id=user.id)
    return user


async def verify_email(session: AsyncSession, kit: AuthKit, meta: RequestMeta, token: str) -> User:
    user = await consume_action_token(session, kit, token, VERIFY_EMAIL)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    audit.record(session, "user.email_verified", meta, actor_user_id=user.id)
    return user


# Lockout (by email, stored in the cache: the same for accounts that exist and that do not) ---


def _lock_keys(email: str) -> tuple[str, str]:
    key = repository.email_key(email)
    return f"auth:fail:{key}", f"auth:lock:{key}"


async def _check_lock(cache: Cache, email: str) -> None:
    _, lock_key = _lock_keys(email)
    until = await cache.get(lock_key)
    if until is None:
        return
    remaining = float(until.decode()) - utcnow().timestamp()
    if remaining > 0:
        retry_after = max(1, math.ceil(remaining))
        raise AccountLocked(
            params={"retry_after": retry_after}, headers={"Retry-After": str(retry_after)}
        )


async def _count_failure(cache: Cache, kit: AuthKit, email: str) -> None:
    fail_key, lock_key = _lock_keys(email)
    failures = await cache.backend.incr(fail_key)
    settings = kit.settings
    await cache.set(fail_key, str(failures).encode(), ttl=settings.lockout_max_seconds)
    over = failures - settings.lockout_threshold
    if over >= 0:
        seconds = min(settings.lockout_max_seconds, settings.lockout_base_seconds * 2**over)
        until = utcnow().timestamp() + seconds
        await cache.set(lock_key, str(until).encode(), ttl=seconds)


async def _clear_failures(cache: Cache, email: str) -> None:
    await cache.delete(*_lock_keys(email))


# Login --------------------------------------------------------------------------------------


async def authenticate(
    session: AsyncSession,
    kit: AuthKit,
    cache: Cache,
    meta: RequestMeta,
    email: str,
    password: str,
    *,
    method: str = "password",
) -> LoginResult:
    await _check_lock(cache, email)
    user = await repository.user_by_email(session, email)
    if user is None or user.password_hash is None:
        await kit.passwords.burn(password[:MAX_PASSWORD_LENGTH])
        await _count_failure(cache, kit, email)
        await audit.record_failure_apart(
            kit.database, "login.failed", meta, reason="unknown_account"
        )
        raise InvalidCredentials()
    valid, new_hash = await kit.passwords.verify(password[:MAX_PASSWORD_LENGTH], user.password_hash)
    if not valid:
        await _count_failure(cache, kit, email)
        await audit.record_failure_apart(
            kit.database, "login.failed", meta, subject_user_id=user.id
        )
        raise InvalidCredentials()
    await _clear_failures(cache, email)
    if not user.is_active:
        raise AccountInactive()
    if kit.settings.email_verification_required and user.email_verified_at is None:
        raise EmailNotVerified()
    if new_hash is not None:
        user.password_hash = new_hash  # parameters changed since it was made
    if user.mfa_enabled:
        return start_mfa_challenge(session, kit, meta, user, method=method)
    return await complete_login(session, kit, meta, user, method=method)


def start_mfa_challenge(
    session: AsyncSession, kit: AuthKit, meta: RequestMeta, user: User, *, method: str
) -> LoginResult:
    """The first factor passed (password, or an identity provider): the account's own second
    factor is still asked for, with a short-lived token naming the user and the method."""
    ttl = kit.settings.mfa_challenge_ttl_seconds
    challenge = MFAChallenge(
        mfa_token=kit.tokens.issue(str(user.id), "mfa", ttl, method=method), expires_in=ttl
    )
    audit.record(session, "login.mfa_challenge", meta, actor_user_id=user.id, method=method)
    return LoginResult(user=user, challenge=challenge)


async def complete_login(
    session: AsyncSession, kit: AuthKit, meta: RequestMeta, user: User, *, method: str
) -> LoginResult:
    user.last_login_at = utcnow()
    family_id = uuid.uuid4()
    tokens = await issue_token_pair(session, kit, meta, user, family_id, method=method)
    audit.record(session, "login.succeeded", meta, actor_user_id=user.id, method=method)
    return LoginResult(user=user, tokens=tokens, family_id=family_id)


async def verify_mfa_challenge(
    session: AsyncSession,
    kit: AuthKit,
    cache: Cache,
    meta: RequestMeta,
    mfa_token: str,
    code: str,
) -> LoginResult:
    """The second step. Wrong codes count towards the account's lockout like wrong passwords:
    a stolen password plus a challenge token must not allow guessing codes for minutes."""
    try:
        claims = kit.tokens.decode(mfa_token, "mfa")
        user_id = uuid.UUID(str(claims["sub"]))
    except (TokenError, ValueError) as exc:
        raise InvalidToken() from exc
    user = await repository.user_by_id(session, user_id)
    if user is None or not user.is_active or not user.mfa_enabled:
        raise InvalidToken()
    await _check_lock(cache, user.email)
    if not await mfa.check_code(session, kit, user, code):
        user_id, email = user.id, user.email
        await _count_failure(cache, kit, email)
        # The request fails; end its transaction first: on SQLite a lost claim of the code
        # holds the write lock, and the audit write below would wait for it.
        await session.rollback()
        await audit.record_failure_apart(
            kit.database, "login.mfa_failed", meta, subject_user_id=user_id
        )
        raise InvalidMFACode()
    await _clear_failures(cache, user.email)
    return await complete_login(session, kit, meta, user, method=str(claims.get("method", "mfa")))


# Tokens -------------------------------------------------------------------------------------


def access_token(kit: AuthKit, user: User, family_id: uuid.UUID) -> str:
    return kit.tokens.issue(
        str(user.id),
        "access",
        kit.settings.access_token_ttl_seconds,
        ver=token_version(user),
        fam=str(family_id),
    )


async def issue_token_pair(
    session: AsyncSession,
    kit: AuthKit,
    meta: RequestMeta,
    user: User,
    family_id: uuid.UUID,
    *,
    method: str,
    expires_at: datetime | None = None,
) -> TokenPair:
    """``expires_at``: a rotation keeps its login's end, so a refresh chain cannot live
    forever by being used."""
    secret, token_hash = kit.tokens.new_secret()
    now = utcnow()
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=token_hash,
            issued_at=now,
            expires_at=expires_at
            or now + timedelta(seconds=kit.settings.refresh_token_ttl_seconds),
            method=method,
            ip=meta.ip,
            user_agent=meta.user_agent,
        )
    )
    return TokenPair(
        access_token=access_token(kit, user, family_id),
        refresh_token=secret,
        expires_in=kit.settings.access_token_ttl_seconds,
    )


async def rotate_refresh_token(
    session: AsyncSession, kit: AuthKit, meta: RequestMeta, refresh_token: str
) -> LoginResult:
    """Trade a refresh token for a new pair. A token presented twice means it was copied:
    the whole family (this login on every device it reached) is revoked."""
    row = await repository.refresh_token_by_hash(session, kit.tokens.hash_secret(refresh_token))
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise InvalidToken()
    if row.used_at is not None or not await repository.claim_refresh_token(session, row.id, now):
        family_id, user_id = row.family_id, row.user_id
        # The request fails; end its transaction first: on SQLite the lost claim's UPDATE holds
        # the write lock, and the revocation below would wait for it until the busy timeout.
        await session.rollback()
        await _revoke_family_apart(kit, meta, family_id, user_id)
        raise RefreshTokenReused()
    user = await repository.user_by_id(session, row.user_id)
    if user is None or not user.is_active:
        raise InvalidToken()
    tokens = await issue_token_pair(
        session, kit, meta, user, row.family_id, method=row.method, expires_at=row.expires_at
    )
    return LoginResult(user=user, tokens=tokens, family_id=row.family_id)


async def _revoke_family_apart(
    kit: AuthKit, meta: RequestMeta, family_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    await kit.end_family_access(str(family_id))
    async with kit.database.sessionmaker() as session, session.begin():
        await repository.revoke_family(session, family_id, "reuse_detected", utcnow())
        audit.record(
            session,
            "refresh_token.reuse_detected",
            meta,
            outcome="failure",
            subject_user_id=user_id,
            target_type="token_family",
            target_id=family_id,
        )


async def logout(
    session: AsyncSession, kit: AuthKit, meta: RequestMeta, refresh_token: str
) -> uuid.UUID | None:
    """Revoke the login the refresh token belongs to; an unknown token is not an error (the
    client wants to be logged out, and is)."""
    row = await repository.refresh_token_by_hash(session, kit.tokens.hash_secret(refresh_token))
    if row is None:
        return None
    await repository.revoke_family(session, row.family_id, "logout", utcnow())
    await kit.end_family_access(str(row.family_id))
    audit.record(session, "logout", meta, actor_user_id=row.user_id)
    return row.family_id


async def logout_family(
    session: AsyncSession, kit: AuthKit, meta: RequestMeta, user: User, family_id: uuid.UUID
) -> None:
    await repository.revoke_family(session, family_id, "logout", utcnow())
    await kit.end_family_access(str(family_id))
    audit.record(session, "logout", meta, actor_user_id=user.id)


async def logout_everywhere(session: AsyncSession, meta: RequestMeta, user: User) -> None:
    now = utcnow()
    await repository.revoke_user_refresh_tokens(session, user.id, "logout_all", now)
    end_all_sessions(user, now)
    audit.record(session, "logout.everywhere", meta, actor_user_id=user.id)


# Passwords ----------------------------------------------------------------------------------


async def require_password(kit: AuthKit, user: User, password: str) -> None:
    valid, _ = await kit.passwords.verify(password[:MAX_PASSWORD_LENGTH], user.password_hash)
    if not valid:
        raise WrongPassword()


async def change_password(
    session: AsyncSession,
    kit: AuthKit,
    meta: RequestMeta,
    user: User,
    current: str,
    new: str,
) -> TokenPair:
    """Every other session ends; the caller gets a fresh pair so it stays signed in."""
    await require_password(kit, user, current)
    check_password_policy(new, user.email, kit, "new_password")
    now = utcnow()
    user.password_hash = await kit.passwords.hash(new)
    await repository.revoke_user_refresh_tokens(session, user.id, "password_changed", now)
    end_all_sessions(user, now)
    audit.record(session, "password.changed", meta, actor_user_id=user.id)
    return await issue_token_pair(session, kit, meta, user, uuid.uuid4(), method="password")


async def request_password_reset(session: AsyncSession, kit: AuthKit, email: str) -> None:
    """Runs after the response is sent, so the answer never depends on whether it exists."""
    user = await repository.user_by_email(session, email)
    if user is None or not user.is_active:
        return
    token = await issue_action_token(
        session, kit, user, RESET_PASSWORD, kit.settings.password_reset_ttl_seconds
    )
    mail_user(
        session,
        user,
        kind=RESET_PASSWORD,
        subject=N_("Reset your tezgah password"),
        body=N_(
            "Hello {name},\n\nsomebody asked to reset your tezgah password. Use this link "
            "within {minutes} minutes:\n{link}\n\nOr send this code to the API: {token}\n\n"
            "If it was not you, ignore this mail; your password stays as it is."
        ),
        minutes=kit.settings.password_reset_ttl_seconds // 60,
        link=link(kit, "/reset-password", token),
        token=token,
    )


async def reset_password(
    session: AsyncSession,
    kit: AuthKit,
    cache: Cache,
    meta: RequestMeta,
    token: str,
    new_password: str,
) -> User:
    user = await consume_action_token(session, kit, token, RESET_PASSWORD)
    check_password_policy(new_password, user.email, kit, "new_password")
    now = utcnow()
    user.password_hash = await kit.passwords.hash(new_password)
    if user.email_verified_at is None:
        user.email_verified_at = now  # the mail reached its owner
    await repository.revoke_user_refresh_tokens(session, user.id, "password_reset", now)
    end_all_sessions(user, now)
    audit.record(session, "password.reset", meta, actor_user_id=user.id)
    await _clear_failures(cache, user.email)  # the owner proved themselves: lift a lockout
    return user


async def resend_verification(session: AsyncSession, kit: AuthKit, email: str) -> None:
    user = await repository.user_by_email(session, email)
    if user is None or not user.is_active or user.email_verified_at is not None:
        return
    await send_verification_mail(session, kit, user)


# Profile ------------------------------------------------------------------------------------


def update_profile(user: User, data: ProfileUpdate) -> User:
    if data.display_name is not None:
        user.display_name = data.display_name.strip()
    if data.language is not None:
        user.language = data.language
    return user


async def deactivate(
    session: AsyncSession, kit: AuthKit, meta: RequestMeta, user: User, password: str
) -> None:
    if user.password_hash is not None:
        await require_password(kit, user, password)
    now = utcnow()
    user.is_active = False
    user.deactivated_at = now
    await repository.revoke_user_refresh_tokens(session, user.id, "deactivated", now)
    end_all_sessions(user, now)
    audit.record(session, "user.deactivated", meta, actor_user_id=user.id)
