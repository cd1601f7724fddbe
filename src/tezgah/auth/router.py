"""HTTP layer of accounts, tokens, browser sessions and MFA: parse, call the service, answer."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth import mfa, repository, service
from tezgah.auth.dependencies import (
    ACCESS_COOKIE,
    CSRF_COOKIE,
    REFRESH_COOKIE,
    CacheDep,
    CurrentPrincipal,
    CurrentUser,
    KitDep,
    MetaDep,
    check_csrf,
    csrf_token_for,
)
from tezgah.auth.exceptions import InvalidToken
from tezgah.auth.kit import AuthKit
from tezgah.auth.models import User
from tezgah.auth.schemas import (
    Accepted,
    EmailIn,
    MFAChallenge,
    MFACodeIn,
    MFAReauthIn,
    MFASetupOut,
    MFAVerifyIn,
    PasswordChangeIn,
    PasswordResetIn,
    ProfileUpdate,
    ReauthIn,
    RecoveryCodesOut,
    RefreshIn,
    RegisterIn,
    SessionLoginIn,
    SessionOut,
    TokenIn,
    TokenPair,
    UserOut,
)
from tezgah.core.db import SessionDep
from tezgah.core.ratelimit import enforce, get_rate_limiter, limit_from_settings, rate_limit
from tezgah.core.routing import AUTH_PROBLEM_RESPONSES, make_router

router = make_router(prefix="/auth", tags=["auth"], responses=AUTH_PROBLEM_RESPONSES)
SESSION_REFRESH_PATH = "/api/v1/auth/session"


login_ip_limit = Depends(rate_limit(limit_from_settings("rate_limit_login_ip"), scope="login"))
register_limit = Depends(
    rate_limit(limit_from_settings("rate_limit_register_ip"), scope="register")
)
refresh_limit = Depends(rate_limit(limit_from_settings("rate_limit_refresh"), scope="refresh"))
reset_limit = Depends(rate_limit(limit_from_settings("rate_limit_password_reset"), scope="reset"))
mfa_limit = Depends(rate_limit(limit_from_settings("rate_limit_mfa"), scope="mfa"))


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        language=user.language,
        is_active=user.is_active,
        is_superuser=user.is_superuser,
        email_verified=user.email_verified_at is not None,
        mfa_enabled=user.mfa_enabled,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


async def _limit_account(request: Request, email: str) -> None:
    limiter = get_rate_limiter(request)
    expression: str = request.app.state.settings.rate_limit_login_account
    await enforce(limiter, expression, "login-account", repository.email_key(email))


# Registration and email verification --------------------------------------------------------


@router.post(
    "/register",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[register_limit],
    summary="Create an account (and its personal workspace)",
)
async def register(
    data: RegisterIn, session: SessionDep, kit: KitDep, meta: MetaDep, tasks: BackgroundTasks
) -> UserOut:
    user = await service.register(session, kit, meta, data)
    tasks.add_task(kit.mail.wake)
    return user_out(user)


@router.post("/verify-email", response_model=UserOut, summary="Confirm an email address")
async def verify_email(data: TokenIn, session: SessionDep, kit: KitDep, meta: MetaDep) -> UserOut:
    return user_out(await service.verify_email(session, kit, meta, data.token))


@router.post(
    "/verify-email/resend",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[reset_limit],
    summary="Send the verification mail again (the answer is the same for any address)",
)
async def resend_verification(data: EmailIn, kit: KitDep, tasks: BackgroundTasks) -> Accepted:
    tasks.add_task(_in_own_session, kit, service.resend_verification, str(data.email))
    return Accepted()


EmailAction = Callable[[AsyncSession, AuthKit, str], Awaitable[None]]


async def _in_own_session(kit: AuthKit, action: EmailAction, email: str) -> None:
    """After the response: its timing never tells whether the address has an account."""
    async with kit.database.sessionmaker() as session, session.begin():
        await action(session, kit, email)
    kit.mail.wake()


# Tokens -------------------------------------------------------------------------------------


@router.post(
    "/token",
    response_model=TokenPair | MFAChallenge,
    dependencies=[login_ip_limit],
    summary="OAuth2 password flow: email as username; answers tokens or an MFA challenge",
)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    session: SessionDep,
    kit: KitDep,
    cache: CacheDep,
    meta: MetaDep,
) -> TokenPair | MFAChallenge:
    await _limit_account(request, form.username)
    result = await service.authenticate(session, kit, cache, meta, form.username, form.password)
    if result.challenge is not None:
        return result.challenge
    assert result.tokens is not None
    return result.tokens


@router.post(
    "/mfa/verify",
    response_model=TokenPair,
    dependencies=[mfa_limit],
    summary="Second step of a login with MFA",
)
async def mfa_verify(
    data: MFAVerifyIn, session: SessionDep, kit: KitDep, cache: CacheDep, meta: MetaDep
) -> TokenPair:
    result = await service.verify_mfa_challenge(
        session, kit, cache, meta, data.mfa_token, data.code
    )
    assert result.tokens is not None
    return result.tokens


@router.post(
    "/refresh",
    response_model=TokenPair,
    dependencies=[refresh_limit],
    summary="Trade a refresh token for a new pair (the old one is spent)",
)
async def refresh(data: RefreshIn, session: SessionDep, kit: KitDep, meta: MetaDep) -> TokenPair:
    result = await service.rotate_refresh_token(session, kit, meta, data.refresh_token)
    assert result.tokens is not None
    return result.tokens


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End the login this refresh token belongs to",
)
async def logout(data: RefreshIn, session: SessionDep, kit: KitDep, meta: MetaDep) -> Response:
    await service.logout(session, kit, meta, data.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End every session of this account, on every device",
)
async def logout_all(user: CurrentUser, session: SessionDep, meta: MetaDep) -> Response:
    await service.logout_everywhere(session, meta, user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Browser sessions (cookies + CSRF) ----------------------------------------------------------


def _set_session_cookies(
    response: Response, kit: AuthKit, result: service.LoginResult
) -> SessionOut:
    assert result.tokens is not None
    assert result.family_id is not None
    secure = kit.settings.secure_cookies
    csrf = csrf_token_for(kit, str(result.family_id))
    refresh_age = kit.settings.refresh_token_ttl_seconds
    response.set_cookie(
        ACCESS_COOKIE,
        result.tokens.access_token,
        max_age=kit.settings.access_token_ttl_seconds,
        httponly=True,
        secure=secure,
        samesite="lax",
        path="/",
    )
    response.set_cookie(
        REFRESH_COOKIE,
        result.tokens.refresh_token,
        max_age=refresh_age,
        httponly=True,
        secure=secure,
        samesite="strict",
        path=SESSION_REFRESH_PATH,
    )
    # Readable by the page's script, which echoes it in X-CSRF-Token.
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=refresh_age, httponly=False, secure=secure, samesite="strict"
    )
    return SessionOut(csrf_token=csrf, user=user_out(result.user))


def _clear_session_cookies(response: Response, kit: AuthKit) -> None:
    secure = kit.settings.secure_cookies
    response.delete_cookie(ACCESS_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")
    response.delete_cookie(
        REFRESH_COOKIE, path=SESSION_REFRESH_PATH, secure=secure, httponly=True, samesite="strict"
    )
    response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, samesite="strict")


@router.post(
    "/session",
    response_model=SessionOut | MFAChallenge,
    dependencies=[login_ip_limit],
    summary="Browser sign-in: sets HttpOnly session cookies and answers the CSRF token",
)
async def session_login(
    data: SessionLoginIn,
    request: Request,
    response: Response,
    session: SessionDep,
    kit: KitDep,
    cache: CacheDep,
    meta: MetaDep,
) -> SessionOut | MFAChallenge:
    await _limit_account(request, str(data.email))
    result = await service.authenticate(
        session, kit, cache, meta, str(data.email), data.password, method="session"
    )
    if result.challenge is not None:
        return result.challenge
    return _set_session_cookies(response, kit, result)


@router.post(
    "/session/mfa",
    response_model=SessionOut,
    dependencies=[mfa_limit],
    summary="Second step of a browser sign-in with MFA",
)
async def session_mfa(
    data: MFAVerifyIn,
    response: Response,
    session: SessionDep,
    kit: KitDep,
    cache: CacheDep,
    meta: MetaDep,
) -> SessionOut:
    result = await service.verify_mfa_challenge(
        session, kit, cache, meta, data.mfa_token, data.code
    )
    return _set_session_cookies(response, kit, result)


@router.post(
    "/session/refresh",
    response_model=SessionOut,
    dependencies=[refresh_limit],
    summary="Renew the browser session's cookies (needs X-CSRF-Token)",
)
async def session_refresh(
    request: Request, response: Response, session: SessionDep, kit: KitDep, meta: MetaDep
) -> SessionOut:
    token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise InvalidToken()
    row = await repository.refresh_token_by_hash(session, kit.tokens.hash_secret(token))
    check_csrf(request, kit, str(row.family_id) if row is not None else None)
    result = await service.rotate_refresh_token(session, kit, meta, token)
    return _set_session_cookies(response, kit, result)


@router.delete(
    "/session",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Browser sign-out: ends the session and clears its cookies",
)
async def session_logout(
    user: CurrentUser,
    principal: CurrentPrincipal,
    session: SessionDep,
    kit: KitDep,
    meta: MetaDep,
) -> Response:
    family = principal.claims.get("fam")
    if family:
        await service.logout_family(session, kit, meta, user, uuid.UUID(str(family)))
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    _clear_session_cookies(response, kit)
    return response


# Passwords ----------------------------------------------------------------------------------


@router.post(
    "/password/forgot",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[reset_limit],
    summary="Mail a reset link (the answer is the same whether the address exists or not)",
)
async def forgot_password(data: EmailIn, kit: KitDep, tasks: BackgroundTasks) -> Accepted:
    tasks.add_task(_in_own_session, kit, service.request_password_reset, str(data.email))
    return Accepted()


@router.post(
    "/password/reset",
    response_model=Accepted,
    dependencies=[reset_limit],
    summary="Set a new password with the emailed token (single use)",
)
async def reset_password(
    data: PasswordResetIn, session: SessionDep, kit: KitDep, cache: CacheDep, meta: MetaDep
) -> Accepted:
    await service.reset_password(session, kit, cache, meta, data.token, data.new_password)
    return Accepted()


@router.post(
    "/password/change",
    dependencies=[login_ip_limit],
    response_model=TokenPair,
    summary="Change the password; other sessions end, this caller gets new tokens",
)
async def change_password(
    data: PasswordChangeIn, user: CurrentUser, session: SessionDep, kit: KitDep, meta: MetaDep
) -> TokenPair:
    return await service.change_password(
        session, kit, meta, user, data.current_password, data.new_password
    )


# Profile ------------------------------------------------------------------------------------


@router.get("/me", response_model=UserOut, summary="The signed-in account")
async def me(user: CurrentUser) -> UserOut:
    return user_out(user)


@router.patch("/me", response_model=UserOut, summary="Update display name or language")
async def update_me(data: ProfileUpdate, user: CurrentUser) -> UserOut:
    return user_out(service.update_profile(user, data))


@router.post(
    "/me/deactivate",
    dependencies=[login_ip_limit],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Deactivate this account (needs the password)",
)
async def deactivate_me(
    data: ReauthIn, user: CurrentUser, session: SessionDep, kit: KitDep, meta: MetaDep
) -> Response:
    await service.deactivate(session, kit, meta, user, data.password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# MFA ----------------------------------------------------------------------------------------


@router.post(
    "/mfa/totp/setup",
    response_model=MFASetupOut,
    dependencies=[login_ip_limit],
    summary="Start TOTP enrolment (needs the password)",
)
async def mfa_setup(data: ReauthIn, user: CurrentUser, kit: KitDep) -> MFASetupOut:
    await service.require_password(kit, user, data.password)
    return mfa.start_enrolment(kit, user)


@router.post(
    "/mfa/totp/confirm",
    response_model=RecoveryCodesOut,
    dependencies=[mfa_limit],
    summary="Confirm enrolment with a code; answers ten recovery codes, once",
)
async def mfa_confirm(
    data: MFACodeIn, user: CurrentUser, session: SessionDep, kit: KitDep, meta: MetaDep
) -> RecoveryCodesOut:
    codes = await mfa.confirm_enrolment(session, kit, meta, user, data.code)
    return RecoveryCodesOut(recovery_codes=codes)


@router.post(
    "/mfa/disable",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[mfa_limit],
    summary="Turn MFA off (needs the password and a code)",
)
async def mfa_disable(
    data: MFAReauthIn, user: CurrentUser, session: SessionDep, kit: KitDep, meta: MetaDep
) -> Response:
    await service.require_password(kit, user, data.password)
    await mfa.disable(session, kit, meta, user, data.code)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/mfa/recovery-codes",
    response_model=RecoveryCodesOut,
    dependencies=[mfa_limit],
    summary="Replace the recovery codes (needs the password and a code)",
)
async def mfa_recovery_codes(
    data: MFAReauthIn, user: CurrentUser, session: SessionDep, kit: KitDep
) -> RecoveryCodesOut:
    await service.require_password(kit, user, data.password)
    await mfa.require_code(session, kit, user, data.code)
    return RecoveryCodesOut(recovery_codes=await mfa.replace_recovery_codes(session, kit, user))
