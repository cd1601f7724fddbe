"""Tokens: the OAuth2 password flow, every kind of forged or misused token, signing-key rotation,
rotating refresh tokens with reuse detection, logout, logout everywhere, deactivation."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import select, update
from tests.auth.conftest import (
    PASSWORD,
    Account,
    StartApp,
    db_scalars,
    login,
    register,
    set_user_flags,
)

from tezgah.auth.models import AuditEvent, RefreshToken
from tezgah.auth.tokens import TokenService
from tezgah.core.config import Settings
from tezgah.core.db import utcnow

ME = "/api/v1/auth/me"
REFRESH = "/api/v1/auth/refresh"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(response: httpx.Response, code: str = "INVALID_TOKEN") -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["error_code"] == code, response.json()


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(REFRESH, json={"refresh_token": token})


async def family_rows(app: FastAPI, refresh_token: str) -> list[RefreshToken]:
    token_hash = app.state.auth.tokens.hash_secret(refresh_token)
    (row,) = await db_scalars(
        app, select(RefreshToken).where(RefreshToken.token_hash == token_hash)
    )
    return await db_scalars(
        app, select(RefreshToken).where(RefreshToken.family_id == row.family_id)
    )


# The OAuth2 password flow ---------------------------------------------------------------------


async def test_the_token_endpoint_answers_an_oauth2_token_pair(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    account = await register(client)
    response = await client.post(
        "/api/v1/auth/token", data={"username": account.email, "password": PASSWORD}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.access_token_ttl_seconds
    assert body["refresh_token"] != body["access_token"]
    header = jwt.get_unverified_header(body["access_token"])
    assert (header["alg"], header["kid"]) == ("HS256", "k1")
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == account.id
    assert (claims["typ"], claims["iss"], claims["aud"]) == ("access", "tezgah", "tezgah-api")
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl_seconds

    me = await client.get(ME, headers=bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == account.id
    unauthenticated = await client.get(ME)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error_code"] == "UNAUTHORIZED"


# Forged and misused tokens ------------------------------------------------------------------


def forge(
    app: FastAPI,
    genuine: str,
    *,
    set_claims: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    secret: bytes | None = None,
    kid: str | None = None,
    algorithm: str = "HS256",
) -> str:
    """Re-sign the claims of a genuine access token with the changes asked for; with no change
    the result is accepted (the control case)."""
    signing = app.state.auth.tokens.keys[0]
    claims = jwt.decode(genuine, options={"verify_signature": False})
    claims.update(set_claims or {})
    for name in drop:
        del claims[name]
    key = signing.secret if secret is None else secret
    with warnings.catch_warnings():  # HS512 with the ring's 32-byte key: forged on purpose
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid or signing.kid})


def alg_none(app: FastAPI, genuine: str) -> str:
    claims = jwt.decode(genuine, options={"verify_signature": False})
    return jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})


def without(claim: str) -> Callable[[FastAPI, str], str]:
    return lambda app, genuine: forge(app, genuine, drop=(claim,))


FORGERIES: dict[str, Callable[[FastAPI, str], str]] = {
    "alg-none": alg_none,
    "alg-none-signature-kept": lambda app, t: alg_none(app, t) + t.rsplit(".", 1)[1],
    "wrong-key": lambda app, t: forge(app, t, secret=secrets.token_bytes(32)),
    "unknown-kid": lambda app, t: forge(app, t, kid="k9"),
    "no-kid": lambda app, t: jwt.encode(
        jwt.decode(t, options={"verify_signature": False}),
        app.state.auth.tokens.keys[0].secret,
        algorithm="HS256",
    ),
    "hs512": lambda app, t: forge(app, t, algorithm="HS512"),
    "tampered-payload": lambda app, t: (
        t.split(".")[0]
        + "."
        + jwt.utils.base64url_encode(
            jwt.utils.base64url_decode(t.split(".")[1]).replace(b'"access"', b'"accesz"')
        ).decode()
        + "."
        + t.split(".")[2]
    ),
    "expired": lambda app, t: forge(
        app, t, set_claims={"exp": int(time.time()) - 60, "iat": int(time.time()) - 960}
    ),
    "wrong-audience": lambda app, t: forge(app, t, set_claims={"aud": "another-api"}),
    "wrong-issuer": lambda app, t: forge(app, t, set_claims={"iss": "https://evil.example"}),
    **{
        f"missing-{claim}": without(claim)
        for claim in ("exp", "iat", "iss", "aud", "sub", "jti", "typ", "ver")
    },
    "typ-mfa": lambda app, t: forge(app, t, set_claims={"typ": "mfa"}),
    "typ-refresh": lambda app, t: forge(app, t, set_claims={"typ": "refresh"}),
    "sub-not-a-uuid": lambda app, t: forge(app, t, set_claims={"sub": "admin"}),
    "sub-unknown-user": lambda app, t: forge(app, t, set_claims={"sub": str(uuid.uuid4())}),
    "stale-version": lambda app, t: forge(
        app,
        t,
        set_claims={"ver": jwt.decode(t, options={"verify_signature": False})["ver"] - 1},
    ),
}


async def test_a_re_signed_genuine_token_is_accepted(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    """The control of the forgeries below: the forging itself keeps a valid token valid."""
    response = await client.get(ME, headers=bearer(forge(app, account.access_token)))
    assert response.status_code == 200, response.text


async def test_forged_tokens_are_refused(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    """Every forgery in one test (one app, one account): the outcome of each, by name."""
    outcomes = {}
    for name, forgery in FORGERIES.items():
        response = await client.get(ME, headers=bearer(forgery(app, account.access_token)))
        outcomes[name] = (
            response.status_code,
            response.json().get("error_code"),
            response.headers.get("www-authenticate"),
        )

    assert outcomes == dict.fromkeys(FORGERIES, (401, "INVALID_TOKEN", "Bearer"))


async def test_an_mfa_challenge_token_is_not_an_access_token(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    mfa_token = app.state.auth.tokens.issue(account.id, "mfa", 300, method="password")
    assert_refused(await client.get(ME, headers=bearer(mfa_token)))
    # Nor the other way round: an access token is no MFA challenge.
    verify = await client.post(
        "/api/v1/auth/mfa/verify", json={"mfa_token": account.access_token, "code": "123456"}
    )
    assert_refused(verify)


GARBAGE_HEADERS = [
    "Bearer",
    "Bearer    ",
    "Bearer not-a-jwt",
    "Bearer a.b.c",
    "Bearer e30.e30.",
    "Basic dXNlcjpwYXNzd29yZA==",
    "Token abc",
    "bearer-without-space",
    "Bearer \u0130\u015f\u0131k",
]


async def test_garbage_authorization_headers_are_refused(client: httpx.AsyncClient) -> None:
    outcomes = {}
    for header in GARBAGE_HEADERS:
        response = await client.get(ME, headers={"Authorization": header.encode()})
        outcomes[header] = (response.status_code, response.json()["error_code"])

    assert outcomes == dict.fromkeys(GARBAGE_HEADERS, (401, "INVALID_TOKEN"))


async def test_refresh_and_access_tokens_cannot_stand_in_for_each_other(
    client: httpx.AsyncClient, account: Account
) -> None:
    assert_refused(await client.get(ME, headers=bearer(account.refresh_token)))
    assert_refused(await refresh(client, account.access_token))
    # Both still work for what they are.
    assert (await client.get(ME, headers=account.headers)).status_code == 200
    assert (await refresh(client, account.refresh_token)).status_code == 200


# Signing-key rotation -----------------------------------------------------------------------


async def test_signing_keys_rotate_without_logging_anybody_out(
    auth_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    old_secret, new_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    _, before = await start_app(auth_settings(jwt_keys=f"old:{old_secret}"))
    account = await register(before)
    assert jwt.get_unverified_header(account.access_token)["kid"] == "old"

    _, during = await start_app(auth_settings(jwt_keys=f"new:{new_secret},old:{old_secret}"))
    assert (await during.get(ME, headers=account.headers)).status_code == 200
    fresh = await login(during, account.email)
    assert jwt.get_unverified_header(fresh["access_token"])["kid"] == "new"
    # The app still on the old ring does not know the new key.
    assert_refused(await before.get(ME, headers=bearer(fresh["access_token"])))

    _, after = await start_app(auth_settings(jwt_keys=f"new:{new_secret}"))
    assert_refused(await after.get(ME, headers=account.headers))
    assert (await after.get(ME, headers=bearer(fresh["access_token"]))).status_code == 200
    # A token naming the new kid but signed with the old secret is refused too.
    old_claims = jwt.decode(account.access_token, options={"verify_signature": False})
    relabelled = jwt.encode(old_claims, old_secret.encode(), "HS256", headers={"kid": "new"})
    assert_refused(await after.get(ME, headers=bearer(relabelled)))


def test_a_short_or_malformed_key_ring_is_refused(
    auth_settings: Callable[..., Settings],
) -> None:
    for ring in ("new:short", "no-colon-" + "x" * 40, ":" + "x" * 40):
        with pytest.raises(ValueError, match="TEZGAH_JWT_KEYS"):
            TokenService(auth_settings(jwt_keys=ring))


# Refresh tokens -----------------------------------------------------------------------------


async def test_refresh_rotates_the_pair(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    response = await refresh(client, account.refresh_token)

    assert response.status_code == 200, response.text
    pair = response.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["refresh_token"] != account.refresh_token
    assert pair["access_token"] != account.access_token
    assert (await client.get(ME, headers=bearer(pair["access_token"]))).status_code == 200
    rows = await family_rows(app, pair["refresh_token"])
    assert len(rows) == 2  # one login, two links of its chain
    spent = next(row for row in rows if row.used_at is not None)
    assert spent.token_hash == app.state.auth.tokens.hash_secret(account.refresh_token)
    assert all(row.revoked_at is None for row in rows)
    # Stored as keyed hashes only.
    assert all(account.refresh_token not in row.token_hash for row in rows)
    next_pair = (await refresh(client, pair["refresh_token"])).json()
    assert (await client.get(ME, headers=bearer(next_pair["access_token"]))).status_code == 200


async def test_a_reused_refresh_token_revokes_its_whole_family(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    other_login = await login(client, account.email)
    first = (await refresh(client, account.refresh_token)).json()
    newest = (await refresh(client, first["refresh_token"])).json()

    reused = await refresh(client, account.refresh_token)
    assert_refused(reused, "REFRESH_TOKEN_REUSED")

    # The thief and the owner are both out: the newest link no longer works either.
    assert_refused(await refresh(client, newest["refresh_token"]))
    assert_refused(await refresh(client, first["refresh_token"]))
    rows = await family_rows(app, newest["refresh_token"])
    assert len(rows) == 3
    assert {row.revoked_reason for row in rows} == {"reuse_detected"}
    events = await db_scalars(
        app,
        select(AuditEvent).where(
            AuditEvent.event == "refresh_token.reuse_detected",
            AuditEvent.subject_user_id == uuid.UUID(account.id),
        ),
    )
    assert len(events) == 1
    assert events[0].outcome == "failure"
    assert events[0].target_id == str(rows[0].family_id)
    # Another login of the same account is another family: untouched.
    assert (await refresh(client, other_login["refresh_token"])).status_code == 200


async def test_two_concurrent_refreshes_with_one_token_let_exactly_one_through(
    client: httpx.AsyncClient, account: Account
) -> None:
    responses = await asyncio.gather(*(refresh(client, account.refresh_token) for _ in range(2)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 401], [response.text for response in responses]
    loser = next(response for response in responses if response.status_code == 401)
    assert_refused(loser, "REFRESH_TOKEN_REUSED")


async def test_an_expired_or_unknown_refresh_token_is_refused(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    assert_refused(await refresh(client, secrets.token_urlsafe(32)))
    token_hash = app.state.auth.tokens.hash_secret(account.refresh_token)
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == token_hash)
            .values(expires_at=utcnow())
        )
    assert_refused(await refresh(client, account.refresh_token))


# Logout -------------------------------------------------------------------------------------


async def test_logout_revokes_the_family_of_the_refresh_token(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    other_login = await login(client, account.email)
    rotated = (await refresh(client, account.refresh_token)).json()

    response = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]}
    )
    assert response.status_code == 204
    assert_refused(await refresh(client, rotated["refresh_token"]))
    rows = await family_rows(app, rotated["refresh_token"])
    assert {row.revoked_reason for row in rows} == {"logout"}
    # Only this login ended.
    assert (await refresh(client, other_login["refresh_token"])).status_code == 200
    # Logging out with a token nobody knows is not an error.
    unknown = await client.post("/api/v1/auth/logout", json={"refresh_token": "x" * 43})
    assert unknown.status_code == 204


async def test_logout_everywhere_ends_every_session_at_once(
    client: httpx.AsyncClient, account: Account
) -> None:
    second = await login(client, account.email)
    third = await login(client, account.email)

    response = await client.post("/api/v1/auth/logout-all", headers=bearer(second["access_token"]))
    assert response.status_code == 204

    for access in (account.access_token, second["access_token"], third["access_token"]):
        assert_refused(await client.get(ME, headers=bearer(access)))
    for refresh_token in (account.refresh_token, second["refresh_token"], third["refresh_token"]):
        assert_refused(await refresh(client, refresh_token))
    fresh = await login(client, account.email)
    assert (await client.get(ME, headers=bearer(fresh["access_token"]))).status_code == 200


async def test_a_deactivated_users_tokens_are_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    flagged, deactivated = await register(client), await register(client)

    await set_user_flags(app, flagged.id, is_active=False)
    assert_refused(await client.get(ME, headers=flagged.headers), "ACCOUNT_INACTIVE")
    assert_refused(await refresh(client, flagged.refresh_token))
    login_attempt = await client.post(
        "/api/v1/auth/token", data={"username": flagged.email, "password": PASSWORD}
    )
    assert_refused(login_attempt, "ACCOUNT_INACTIVE")

    wrong = await client.post(
        "/api/v1/auth/me/deactivate", headers=deactivated.headers, json={"password": "nope-nope"}
    )
    assert wrong.status_code == 403
    assert wrong.json()["error_code"] == "WRONG_PASSWORD"
    gone = await client.post(
        "/api/v1/auth/me/deactivate", headers=deactivated.headers, json={"password": PASSWORD}
    )
    assert gone.status_code == 204
    assert (await client.get(ME, headers=deactivated.headers)).status_code == 401
    assert_refused(await refresh(client, deactivated.refresh_token))
