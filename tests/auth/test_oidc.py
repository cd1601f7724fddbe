"""Sign-in with OpenID Connect against a real provider (tests/auth/oidc_provider.py, served over
HTTP): the browser is played by hand, following tezgah's redirect to the provider and the
provider's redirect back to tezgah's callback.

Covered: new accounts, linking by verified email only, returning subjects, refusals (unverified
email, deactivated, unverified local account), state/nonce/PKCE/ID-token checks, open redirects,
MFA, browser sessions, plain OAuth2 (GitHub-style) providers, and a flow started on one API
process and finished on another.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from tests.auth.conftest import (
    PASSWORD,
    MailBox,
    StartApp,
    db_scalars,
    db_user,
    register,
    set_user_flags,
    token_in,
    unique_email,
)
from tests.auth.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    OIDCTestProvider,
    ProviderUser,
    s256,
)

from tezgah.auth.dependencies import ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE
from tezgah.auth.models import AuditEvent, ExternalIdentity, Membership, RefreshToken, User
from tezgah.auth.models import Workspace as WorkspaceRow
from tezgah.core.config import Settings
from tezgah.core.db import utcnow

BASE_URL = "http://testserver"
OIDC = "/api/v1/auth/oidc"


# Fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def oidc_server() -> Iterator[OIDCTestProvider]:
    server = OIDCTestProvider(redirect_uri_prefix=f"{BASE_URL}{OIDC}/")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def idp(oidc_server: OIDCTestProvider) -> Iterator[OIDCTestProvider]:
    """The provider, with default behaviour and nobody signed in yet."""
    oidc_server.reset()
    yield oidc_server
    oidc_server.reset()


def providers_config(idp: OIDCTestProvider, **test_overrides: object) -> list[dict[str, object]]:
    return [
        {
            "name": "test",
            "display_name": "Test IdP",
            "issuer": idp.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            **test_overrides,
        },
        {
            # GitHub's shape: plain OAuth2, explicit endpoints, verified addresses apart.
            "name": "hub",
            "issuer": idp.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scopes": "read:user user:email",
            "authorize_url": f"{idp.issuer}/authorize",
            "token_url": f"{idp.issuer}/token",
            "userinfo_url": f"{idp.issuer}/user",
            "emails_url": f"{idp.issuer}/user/emails",
        },
    ]


@pytest.fixture
def settings(auth_settings: Callable[..., Settings], idp: OIDCTestProvider) -> Settings:
    return auth_settings(base_url=BASE_URL, oidc_providers=providers_config(idp))


# The browser --------------------------------------------------------------------------------


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def replace_query(url: str, **values: str) -> str:
    parts = urlsplit(url)
    return parts._replace(query=urlencode({**query(url), **values})).geturl()


async def begin(client: httpx.AsyncClient, name: str = "test", **params: str) -> str:
    """Ask tezgah to start a sign-in; the provider URL it redirects to."""
    response = await client.get(f"{OIDC}/{name}/login", params=params)
    assert response.status_code == 302, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.headers["location"]


async def at_provider(location: str) -> str:
    """Open the provider's page (it approves at once); where it sends the browser back."""
    async with httpx.AsyncClient() as browser:
        response = await browser.get(location)
    assert response.status_code == 302, response.text
    back: str = response.headers["location"]
    assert back.startswith(f"{BASE_URL}{OIDC}/")
    return back


async def oidc_login(
    client: httpx.AsyncClient, name: str = "test", **params: str
) -> httpx.Response:
    """The whole round trip; the callback's response."""
    return await client.get(await at_provider(await begin(client, name, **params)))


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["error_code"] == code, body
    return body


def new_person(idp: OIDCTestProvider, **fields: Any) -> ProviderUser:
    values: dict[str, Any] = {"sub": uuid.uuid4().hex, "email": unique_email("oidc"), **fields}
    idp.user = ProviderUser(**values)
    return idp.user


async def me(client: httpx.AsyncClient, access_token: str) -> dict[str, Any]:
    response = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def identities(app: FastAPI, user_id: str) -> list[ExternalIdentity]:
    return await db_scalars(
        app, select(ExternalIdentity).where(ExternalIdentity.user_id == uuid.UUID(user_id))
    )


async def events(app: FastAPI, event: str, user_id: str) -> list[AuditEvent]:
    return await db_scalars(
        app,
        select(AuditEvent).where(
            AuditEvent.event == event, AuditEvent.subject_user_id == uuid.UUID(user_id)
        ),
    )


async def login_methods(app: FastAPI, user_id: str) -> list[str]:
    return [str(e.details.get("method")) for e in await events(app, "login.succeeded", user_id)]


async def failures_since(app: FastAPI, since: datetime) -> list[dict[str, Any]]:
    """Details of the OIDC sign-in failures recorded since ``since``."""
    rows = await db_scalars(
        app,
        select(AuditEvent)
        .where(AuditEvent.event == "login.failed", AuditEvent.occurred_at >= since)
        .order_by(AuditEvent.occurred_at),
    )
    return [row.details for row in rows if str(row.details.get("method", "")).startswith("oidc:")]


async def verified_account(client: httpx.AsyncClient, mailbox: MailBox, address: str) -> str:
    """Register with a password and confirm the address through the mailed link; the user id."""
    account = await register(client, address)
    token = token_in(await mailbox.wait_for(address))
    response = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert response.status_code == 200, response.text
    assert response.json()["email_verified"] is True
    return account.id


# Providers list and unknown providers -------------------------------------------------------


async def test_providers_are_listed(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{OIDC}/providers")
    assert response.status_code == 200
    assert response.json() == {
        "items": [
            {"name": "test", "display_name": "Test IdP"},
            {"name": "hub", "display_name": "hub"},
        ]
    }


async def test_unknown_provider_is_a_404_problem(client: httpx.AsyncClient) -> None:
    problem(await client.get(f"{OIDC}/nope/login"), 404, "OIDC_PROVIDER_NOT_FOUND")
    body = problem(
        await client.get(f"{OIDC}/nope/callback", params={"code": "x", "state": "y"}),
        404,
        "OIDC_PROVIDER_NOT_FOUND",
    )
    assert "nope" in body["detail"]


# The happy paths ----------------------------------------------------------------------------


async def test_new_person_gets_an_account_and_tokens(
    client: httpx.AsyncClient, app: FastAPI, idp: OIDCTestProvider
) -> None:
    person = new_person(idp, locale="tr-TR")
    response = await oidc_login(client)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    profile = await me(client, tokens["access_token"])
    assert profile["email"] == person.email
    assert profile["email_verified"] is True
    assert profile["display_name"] == "Ada Lovelace"
    assert profile["language"] == "tr"

    user = await db_user(app, profile["id"])
    assert user.password_hash is None
    [identity] = await identities(app, profile["id"])
    assert (identity.provider, identity.subject, identity.email) == (
        "test",
        person.sub,
        person.email,
    )
    workspaces = await db_scalars(
        app,
        select(WorkspaceRow)
        .join(Membership, Membership.workspace_id == WorkspaceRow.id)
        .where(Membership.user_id == user.id, Membership.role == "owner"),
    )
    assert [w.is_personal for w in workspaces] == [True]
    [refresh] = await db_scalars(app, select(RefreshToken).where(RefreshToken.user_id == user.id))
    assert refresh.method == "oidc:test"
    [succeeded] = await events(app, "login.succeeded", profile["id"])
    assert succeeded.details == {"method": "oidc:test"}
    [linked] = await events(app, "oidc.linked", profile["id"])
    assert linked.details == {"provider": "test"}
    assert len(await events(app, "user.registered", profile["id"])) == 1

    # The refresh token works like any other.
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text


async def test_pkce_state_and_nonce_are_sent_fresh_for_every_login(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    new_person(idp)
    first = query(await begin(client))
    second = query(await begin(client))

    for params in (first, second):
        assert params["client_id"] == CLIENT_ID
        assert params["response_type"] == "code"
        assert params["redirect_uri"] == f"{BASE_URL}{OIDC}/test/callback"
        assert params["scope"] == "openid email profile"
        assert params["code_challenge_method"] == "S256"
        assert len(params["code_challenge"]) == 43  # base64url of a SHA-256 digest
        assert len(params["state"]) >= 32
        assert len(params["nonce"]) >= 32
    for name in ("state", "nonce", "code_challenge"):
        assert first[name] != second[name]

    # The verifier reaches the token endpoint and matches the challenge sent to /authorize.
    response = await oidc_login(client)
    assert response.status_code == 200, response.text
    authorize, token = idp.recorded.authorize[-1], idp.recorded.token[-1]
    assert 43 <= len(token["code_verifier"]) <= 128
    assert s256(token["code_verifier"]) == authorize["code_challenge"]
    assert "client_secret" not in token  # client_secret_basic: the secret travels in a header


async def test_two_sign_ins_in_parallel_do_not_disturb_each_other(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    new_person(idp)
    first = await at_provider(await begin(client))
    second = await at_provider(await begin(client))
    for back in (second, first):
        response = await client.get(back)
        assert response.status_code == 200, response.text


async def test_existing_user_is_linked_by_verified_email(
    client: httpx.AsyncClient, app: FastAPI, idp: OIDCTestProvider, mailbox: MailBox
) -> None:
    address = unique_email("linked")
    user_id = await verified_account(client, mailbox, address)
    # The provider writes the address with capitals: still the same account.
    local, domain = address.split("@")
    new_person(idp, email=f"{local.upper()}@{domain}")

    response = await oidc_login(client)

    assert response.status_code == 200, response.text
    assert (await me(client, response.json()["access_token"]))["id"] == user_id
    [identity] = await identities(app, user_id)
    assert identity.provider == "test"
    assert len(await events(app, "oidc.linked", user_id)) == 1
    assert len(await events(app, "user.registered", user_id)) == 1  # no second account
    # The password still works.
    password_login = await client.post(
        "/api/v1/auth/token", data={"username": address, "password": PASSWORD}
    )
    assert password_login.status_code == 200, password_login.text


async def test_returning_subject_signs_in_even_after_the_email_changed(
    client: httpx.AsyncClient, app: FastAPI, idp: OIDCTestProvider
) -> None:
    person = new_person(idp)
    first = await oidc_login(client)
    user_id = (await me(client, first.json()["access_token"]))["id"]

    # At the provider the person now has another address, not even verified.
    idp.user = ProviderUser(sub=person.sub, email=unique_email("moved"), email_verified=False)
    second = await oidc_login(client)

    assert second.status_code == 200, second.text
    profile = await me(client, second.json()["access_token"])
    assert profile["id"] == user_id
    assert profile["email"] == person.email  # tezgah's address is tezgah's business
    [identity] = await identities(app, user_id)
    assert identity.email == idp.user.email
    assert identity.last_login_at is not None
    assert len(await events(app, "oidc.linked", user_id)) == 1
    assert len(await events(app, "login.succeeded", user_id)) == 2


async def test_email_from_userinfo_when_the_id_token_has_none(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    person = new_person(idp)
    idp.behaviour.email_in_id_token = False
    response = await oidc_login(client)
    assert response.status_code == 200, response.text
    assert (await me(client, response.json()["access_token"]))["email"] == person.email
    assert idp.recorded.userinfo == 1


async def test_userinfo_about_another_subject_is_refused(
    client: httpx.AsyncClient, app: FastAPI, idp: OIDCTestProvider
) -> None:
    person = new_person(idp)
    idp.behaviour.email_in_id_token = False
    idp.behaviour.userinfo_sub = "somebody-else"
    problem(await oidc_login(client), 401, "OIDC_PROFILE_INVALID")
    assert not await db_scalars(app, select(User).where(User.email == person.email))


async def test_github_style_plain_oauth2_provider(
    client: httpx.AsyncClient, app: FastAPI, idp: OIDCTestProvider
) -> None:
    person = new_person(idp, sub="583231")
    location = await begin(client, "hub")
    params = query(location)
    assert "nonce" not in params  # no ID token, no nonce
    assert params["scope"] == "read:user user:email"
    assert params["code_challenge_method"] == "S256"

    response = await client.get(await at_provider(location))

    assert response.status_code == 200, response.text
    profile = await me(client, response.json()["access_token"])
    assert profile["email"] == person.email  # the primary verified one, from /user/emails
    assert profile["display_name"] == "Ada Lovelace"
    [identity] = await identities(app, profile["id"])
    assert (identity.provider, identity.subject) == ("hub", "583231")
    [succeeded] = await events(app, "login.succeeded", profile["id"])
    assert succeeded.details == {"method": "oidc:hub"}


async def test_github_style_unverified_primary_email_is_refused(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    new_person(idp, sub="583232", email_verified=False)
    problem(await oidc_login(client, "hub"), 403, "OIDC_EMAIL_NOT_VERIFIED")


async def test_flow_started_on_one_process_finishes_on_another(
    start_app: StartApp, settings: Settings, idp: OIDCTestProvider
) -> None:
    """No process memory: the second app (own memory cache, own everything) finishes it."""
    _, first = await start_app(settings)
    _, second = await start_app(settings)
    new_person(idp)
    back = await at_provider(await begin(first))
    second.cookies = first.cookies
    response = await second.get(back)
    assert response.status_code == 200, response.text


# Refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", [False, "false", None], ids=["false", "string-false", "missing"])
async def test_unverified_email_is_refused(
    client: httpx.AsyncClient, app: FastAPI, idp: OIDCTestProvider, flag: object
) -> None:
    person = new_person(idp, email_verified=flag)
    since = utcnow()
    body = problem(await oidc_login(client), 403, "OIDC_EMAIL_NOT_VERIFIED")
    assert "confirmed" in body["detail"]
    assert not await db_scalars(app, select(User).where(User.email == person.email))
    assert not await db_scalars(
        app, select(ExternalIdentity).where(ExternalIdentity.subject == person.sub)
    )
    assert await failures_since(app, since) == [
        {"method": "oidc:test", "reason": "email_not_verified"}
    ]


async def test_unverified_email_is_refused_in_turkish_too(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    new_person(idp, email_verified=False)
    back = await at_provider(await begin(client))
    response = await client.get(back, headers={"Accept-Language": "tr"})
    body = problem(response, 403, "OIDC_EMAIL_NOT_VERIFIED")
    assert "e-posta" in body["detail"]


async def test_existing_account_with_unconfirmed_address_is_not_linked(
    client: httpx.AsyncClient, app: FastAPI, idp: OIDCTestProvider
) -> None:
    """Somebody registered the address without proving it: linking would give the real owner
    an account whose password the other person knows (pre-hijacking)."""
    squatter = await register(client)
    new_person(idp, email=squatter.email)
    problem(await oidc_login(client), 409, "OIDC_ACCOUNT_UNVERIFIED")
    assert await identities(app, squatter.id) == []


async def test_deactivated_user_is_refused(
    client: httpx.AsyncClient, app: FastAPI, idp: OIDCTestProvider, mailbox: MailBox
) -> None:
    # Returning subject.
    new_person(idp)
    first = await oidc_login(client)
    user_id = (await me(client, first.json()["access_token"]))["id"]
    await set_user_flags(app, user_id, is_active=False, deactivated_at=utcnow())
    problem(await oidc_login(client), 401, "ACCOUNT_INACTIVE")

    # Linking by email.
    address = unique_email("gone")
    other_id = await verified_account(client, mailbox, address)
    await set_user_flags(app, other_id, is_active=False, deactivated_at=utcnow())
    new_person(idp, email=address)
    problem(await oidc_login(client), 401, "ACCOUNT_INACTIVE")
    assert await identities(app, other_id) == []


async def test_provider_error_is_a_problem(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    new_person(idp)
    idp.behaviour.deny = True
    back = await at_provider(await begin(client))
    assert query(back)["error"] == "access_denied"
    body = problem(await client.get(back), 400, "OIDC_PROVIDER_ERROR")
    assert "access_denied" in body["detail"]
    # Whatever the query says, only a well-formed error code is repeated.
    hostile = replace_query(back, error="<script>alert(1)</script>")
    body = problem(await client.get(hostile), 400, "OIDC_PROVIDER_ERROR")
    assert "<script>" not in body["detail"]


async def test_tampered_state_is_refused(client: httpx.AsyncClient, idp: OIDCTestProvider) -> None:
    new_person(idp)
    back = await at_provider(await begin(client))
    problem(
        await client.get(replace_query(back, state="forged-" + query(back)["state"])),
        400,
        "OIDC_STATE_INVALID",
    )
    without_state = urlsplit(back)._replace(query=urlencode({"code": query(back)["code"]}))
    problem(await client.get(without_state.geturl()), 400, "OIDC_STATE_INVALID")
    assert idp.recorded.token == []  # refused before the code was ever used


async def test_callback_in_another_browser_is_refused(
    client: httpx.AsyncClient, app: FastAPI, idp: OIDCTestProvider
) -> None:
    """Login CSRF: an attacker's code and state, planted in the victim's browser, match no
    flow cookie there."""
    new_person(idp)
    back = await at_provider(await begin(client))
    transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 51000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as victim:
        problem(await victim.get(back), 400, "OIDC_STATE_INVALID")


async def test_tampered_flow_cookie_is_refused(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    new_person(idp)
    back = await at_provider(await begin(client))
    [cookie] = [c for c in client.cookies.jar if c.name.startswith("tezgah_oidc_")]
    assert cookie.path == f"{OIDC}/test/callback"
    assert cookie.has_nonstandard_attr("HttpOnly")
    value = cookie.value
    assert value is not None
    cookie.value = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
    problem(await client.get(back), 400, "OIDC_STATE_INVALID")


async def test_flow_cookie_of_another_sign_in_is_refused(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    """A genuine flow cookie planted under another state's name (a sibling site can set
    cookies) does not stand for that state."""
    new_person(idp)
    first = await at_provider(await begin(client))
    second = await at_provider(await begin(client))
    cookies = {c.name: c for c in client.cookies.jar if c.name.startswith("tezgah_oidc_")}
    assert len(cookies) == 2
    one, other = cookies.values()
    one.value, other.value = other.value, one.value
    for back in (first, second):
        problem(await client.get(back), 400, "OIDC_STATE_INVALID")


async def test_replayed_callback_is_refused(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    new_person(idp)
    back = await at_provider(await begin(client))
    assert (await client.get(back)).status_code == 200
    # The flow cookie was removed by the first callback.
    problem(await client.get(back), 400, "OIDC_STATE_INVALID")


async def test_nonce_mismatch_is_refused(
    client: httpx.AsyncClient, app: FastAPI, idp: OIDCTestProvider
) -> None:
    person = new_person(idp)
    idp.behaviour.nonce = "a-nonce-from-another-login"
    problem(await oidc_login(client), 401, "OIDC_ID_TOKEN_INVALID")
    assert not await db_scalars(app, select(User).where(User.email == person.email))


async def test_wrong_pkce_verifier_is_refused_by_the_provider(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    """The challenge reaching the provider belongs to another verifier (as if swapped by an
    attacker): the provider refuses tezgah's verifier, and tezgah refuses the sign-in."""
    new_person(idp)
    location = await begin(client)
    swapped = replace_query(location, code_challenge=s256("another-verifier-" + "x" * 40))
    back = await at_provider(swapped)
    problem(await client.get(back), 401, "OIDC_TOKEN_EXCHANGE_FAILED")
    [token_request] = idp.recorded.token
    assert token_request["code_verifier"]  # sent, and refused


async def test_expired_id_token_is_refused(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    new_person(idp)
    idp.behaviour.exp_offset = -600
    problem(await oidc_login(client), 401, "OIDC_ID_TOKEN_INVALID")


async def test_id_token_for_another_audience_is_refused(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    new_person(idp)
    idp.behaviour.audience = "another-client"
    problem(await oidc_login(client), 401, "OIDC_ID_TOKEN_INVALID")


async def test_id_token_from_another_issuer_is_refused(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    new_person(idp)
    idp.behaviour.issuer = "https://issuer.example"
    problem(await oidc_login(client), 401, "OIDC_ID_TOKEN_INVALID")


async def test_id_token_signed_with_an_unknown_key_is_refused(
    client: httpx.AsyncClient, app: FastAPI, idp: OIDCTestProvider
) -> None:
    new_person(idp)
    idp.behaviour.sign_with_unknown_key = True
    since = utcnow()
    problem(await oidc_login(client), 401, "OIDC_ID_TOKEN_INVALID")
    assert idp.recorded.jwks == 2  # the cached set, then one fresh fetch for the unknown kid
    assert await failures_since(app, since) == [
        {"method": "oidc:test", "reason": "oidc_id_token_invalid"}
    ]


async def test_discovery_naming_another_issuer_makes_the_provider_unavailable(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    new_person(idp)
    idp.behaviour.discovery_issuer = "https://issuer.example"
    problem(await client.get(f"{OIDC}/test/login"), 503, "OIDC_PROVIDER_UNAVAILABLE")


async def test_wrong_client_secret_fails_the_token_exchange(
    start_app: StartApp,
    auth_settings: Callable[..., Settings],
    idp: OIDCTestProvider,
) -> None:
    config = providers_config(idp, client_secret="not-the-secret")
    _, client = await start_app(auth_settings(base_url=BASE_URL, oidc_providers=config))
    new_person(idp)
    problem(await oidc_login(client), 401, "OIDC_TOKEN_EXCHANGE_FAILED")


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/path",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "",
    ],
)
async def test_open_redirect_is_refused(
    client: httpx.AsyncClient, idp: OIDCTestProvider, target: str
) -> None:
    new_person(idp)
    response = await client.get(
        f"{OIDC}/test/login", params={"redirect_to": target, "mode": "session"}
    )
    problem(response, 400, "OIDC_REDIRECT_INVALID")
    assert "location" not in response.headers
    assert idp.recorded.authorize == []


# MFA and browser sessions -------------------------------------------------------------------


async def mfa_account(client: httpx.AsyncClient, mailbox: MailBox) -> tuple[str, str, list[str]]:
    """A verified account with TOTP on: (address, user id, recovery codes)."""
    address = unique_email("mfa")
    user_id = await verified_account(client, mailbox, address)
    tokens = (
        await client.post("/api/v1/auth/token", data={"username": address, "password": PASSWORD})
    ).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    setup = await client.post(
        "/api/v1/auth/mfa/totp/setup", headers=headers, json={"password": PASSWORD}
    )
    assert setup.status_code == 200, setup.text
    code = pyotp.TOTP(setup.json()["secret"]).now()
    confirm = await client.post(
        "/api/v1/auth/mfa/totp/confirm", headers=headers, json={"code": code}
    )
    assert confirm.status_code == 200, confirm.text
    return address, user_id, confirm.json()["recovery_codes"]


async def test_mfa_user_gets_a_challenge(
    client: httpx.AsyncClient, app: FastAPI, idp: OIDCTestProvider, mailbox: MailBox
) -> None:
    address, user_id, recovery = await mfa_account(client, mailbox)
    new_person(idp, email=address)

    response = await oidc_login(client)

    assert response.status_code == 200, response.text
    challenge = response.json()
    assert challenge["mfa_required"] is True
    assert "access_token" not in challenge
    assert "oidc:test" not in await login_methods(app, user_id)
    wrong = await client.post(
        "/api/v1/auth/mfa/verify", json={"mfa_token": challenge["mfa_token"], "code": "000000"}
    )
    problem(wrong, 401, "INVALID_MFA_CODE")
    verified = await client.post(
        "/api/v1/auth/mfa/verify",
        json={"mfa_token": challenge["mfa_token"], "code": recovery[0]},
    )
    assert verified.status_code == 200, verified.text
    assert (await me(client, verified.json()["access_token"]))["id"] == user_id
    assert (await login_methods(app, user_id)).count("oidc:test") == 1
    assert len(await events(app, "login.mfa_challenge", user_id)) == 1


async def test_session_mode_sets_cookies_and_redirects(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    person = new_person(idp)
    back = await at_provider(await begin(client, mode="session", redirect_to="/designs?tab=mine"))

    response = await client.get(back)

    assert response.status_code == 302, response.text
    assert response.headers["location"] == "/designs?tab=mine"
    assert response.headers["cache-control"] == "no-store"
    set_cookies = response.headers.get_list("set-cookie")
    for name in (ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE):
        assert any(header.startswith(f"{name}=") for header in set_cookies), set_cookies
    access = next(h for h in set_cookies if h.startswith(f"{ACCESS_COOKIE}="))
    assert "HttpOnly" in access
    # The flow cookie is spent.
    assert not [c for c in client.cookies.jar if c.name.startswith("tezgah_oidc_")]
    # The browser is signed in by its cookies alone.
    signed_in = await client.get("/api/v1/auth/me")
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["email"] == person.email


async def test_session_mode_with_mfa_redirects_with_the_challenge_in_the_fragment(
    client: httpx.AsyncClient, idp: OIDCTestProvider, mailbox: MailBox
) -> None:
    address, user_id, recovery = await mfa_account(client, mailbox)
    new_person(idp, email=address)
    back = await at_provider(await begin(client, mode="session", redirect_to="/welcome"))

    response = await client.get(back)

    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert location.path == "/welcome"
    assert not location.query
    fragment = parse_qs(location.fragment)
    assert int(fragment["expires_in"][0]) > 0
    assert not any(
        h.startswith(f"{ACCESS_COOKIE}=") for h in response.headers.get_list("set-cookie")
    )
    assert (await client.get("/api/v1/auth/me")).status_code == 401

    second_step = await client.post(
        "/api/v1/auth/session/mfa",
        json={"mfa_token": fragment["mfa_token"][0], "code": recovery[0]},
    )
    assert second_step.status_code == 200, second_step.text
    signed_in = await client.get("/api/v1/auth/me")
    assert signed_in.status_code == 200
    assert signed_in.json()["id"] == user_id


async def test_token_mode_accepts_a_safe_redirect_target(
    client: httpx.AsyncClient, idp: OIDCTestProvider
) -> None:
    """A safe redirect_to is accepted in token mode too; the callback still answers JSON."""
    new_person(idp)
    response = await oidc_login(client, redirect_to="/somewhere")
    assert response.status_code == 200, response.text
    assert "access_token" in response.json()
