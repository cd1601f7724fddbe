"""HTTP layer of sign-in with OpenID Connect / OAuth2 providers (rules in :mod:`oidc`).

``GET .../{provider}/login`` sends the browser to the provider; the provider sends it back to
``GET .../{provider}/callback``, which answers a token pair (or an MFA challenge) as JSON, or, for
a login started with ``mode=session``, sets the browser session cookies and redirects to the
``redirect_to`` path. A session login that needs a second factor is redirected with the MFA
challenge in the URL fragment (``#mfa_token=...&expires_in=...``): the page sends it with a code
to ``POST /api/v1/auth/session/mfa``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from tezgah.auth import oidc
from tezgah.auth import router as auth_router
from tezgah.auth.dependencies import CacheDep, KitDep, MetaDep
from tezgah.auth.exceptions import OIDCStateInvalid
from tezgah.auth.schemas import MFAChallenge, TokenPair
from tezgah.core.db import SessionDep
from tezgah.core.ratelimit import limit_from_settings, rate_limit
from tezgah.core.routing import AUTH_PROBLEM_RESPONSES, make_router

router = make_router(prefix="/auth/oidc", tags=["auth"], responses=AUTH_PROBLEM_RESPONSES)
NO_STORE = "no-store"


oidc_limit = Depends(rate_limit(limit_from_settings("rate_limit_login_ip"), scope="oidc"))


class OIDCProviderOut(BaseModel):
    name: str
    display_name: str


class OIDCProviderList(BaseModel):
    items: list[OIDCProviderOut]


@router.get(
    "/providers",
    response_model=OIDCProviderList,
    summary="The sign-in providers configured on this server",
)
async def providers(kit: KitDep) -> OIDCProviderList:
    return OIDCProviderList(
        items=[
            OIDCProviderOut(name=p.name, display_name=p.display_name or p.name)
            for p in kit.settings.oidc_providers
        ]
    )


@router.get(
    "/{provider}/login",
    status_code=302,
    response_class=RedirectResponse,
    dependencies=[oidc_limit],
    responses={302: {"description": "Redirect to the provider's sign-in page"}},
    summary="Start signing in with a provider (authorization code flow with PKCE)",
)
async def login(
    provider: str,
    kit: KitDep,
    cache: CacheDep,
    redirect_to: Annotated[
        str,
        Query(
            max_length=oidc.MAX_REDIRECT_LENGTH,
            description="A path on this site to land on after a session sign-in.",
        ),
    ] = "/",
    mode: Annotated[
        Literal["token", "session"],
        Query(description="token: the callback answers JSON; session: it sets cookies."),
    ] = "token",
) -> RedirectResponse:
    config = oidc.get_provider(kit.settings, provider)
    start = await oidc.start_login(kit, cache, config, redirect_to, mode)
    response = RedirectResponse(start.url, status_code=302, headers={"Cache-Control": NO_STORE})
    response.set_cookie(
        start.cookie_name,
        start.cookie_value,
        max_age=start.max_age,
        path=start.cookie_path,
        httponly=True,
        secure=kit.settings.secure_cookies,
        # Lax, not Strict: the callback is a top-level navigation coming from the provider.
        samesite="lax",
    )
    return response


@router.get(
    "/{provider}/callback",
    response_model=TokenPair | MFAChallenge,
    dependencies=[oidc_limit],
    responses={302: {"description": "Session sign-in: cookies set, redirect to redirect_to"}},
    summary="Where the provider sends the browser back: answers tokens or sets the session",
)
async def callback(
    provider: str,
    request: Request,
    response: Response,
    session: SessionDep,
    kit: KitDep,
    cache: CacheDep,
    meta: MetaDep,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[str | None, Query(max_length=oidc.MAX_STATE_LENGTH)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> TokenPair | MFAChallenge | Response:
    config = oidc.get_provider(kit.settings, provider)
    if error is not None:
        raise oidc.provider_error(error)
    flow = oidc.read_flow(kit, config, state, request.cookies)
    if not code:
        raise OIDCStateInvalid()
    result = await oidc.finish_login(session, kit, cache, meta, config, flow, code)
    cookie_name = oidc.flow_cookie_name(flow.state)
    cookie_path = oidc.callback_path(config)
    secure = kit.settings.secure_cookies
    if flow.mode == "session":
        target = flow.redirect_to
        if result.challenge is not None:
            target = oidc.with_fragment(
                target,
                {
                    "mfa_token": result.challenge.mfa_token,
                    "expires_in": str(result.challenge.expires_in),
                },
            )
        redirect = RedirectResponse(target, status_code=302, headers={"Cache-Control": NO_STORE})
        if result.challenge is None:
            auth_router._set_session_cookies(redirect, kit, result)
        redirect.delete_cookie(cookie_name, path=cookie_path, secure=secure, httponly=True)
        return redirect
    response.headers["Cache-Control"] = NO_STORE
    response.delete_cookie(cookie_name, path=cookie_path, secure=secure, httponly=True)
    if result.challenge is not None:
        return result.challenge
    assert result.tokens is not None
    return result.tokens
