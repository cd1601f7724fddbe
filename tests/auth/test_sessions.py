"""Browser sessions: HttpOnly cookies, the CSRF double submit bound to the login, refresh,
sign-out, and the two-step sign-in with MFA."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from tests.auth.conftest import PASSWORD, Account, StartApp, client_for, register

from tezgah.auth import mfa
from tezgah.core.config import Settings
from tezgah.core.db import utcnow

SESSION = "/api/v1/auth/session"
ME = "/api/v1/auth/me"
ACCESS, REFRESH, CSRF = "tezgah_access", "tezgah_refresh", "tezgah_csrf"


def set_cookies(response: httpx.Response) -> dict[str, Any]:
    """Name -> the parsed Set-Cookie morsel of each cookie the response sets."""
    cookies: dict[str, Any] = {}
    for header in response.headers.get_list("set-cookie"):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            cookies[name] = morsel
    return cookies


async def sign_in(client: httpx.AsyncClient, account: Account) -> httpx.Response:
    response = await client.post(SESSION, json={"email": account.email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response


def flip(value: str) -> str:
    """The value with its first character changed."""
    return ("B" if value[0] == "A" else "A") + value[1:]


def cookie_header(**cookies: str) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def assert_problem(response: httpx.Response, status: int, error_code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["error_code"] == error_code, response.json()


async def test_signing_in_sets_httponly_session_cookies_and_a_readable_csrf_cookie(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    response = await sign_in(client, account)

    body = response.json()
    assert set(body) == {"csrf_token", "user"}
    assert body["user"]["email"] == account.email
    cookies = set_cookies(response)
    assert set(cookies) == {ACCESS, REFRESH, CSRF}

    access, refresh, csrf = cookies[ACCESS], cookies[REFRESH], cookies[CSRF]
    assert access["httponly"] is True
    assert access["path"] == "/"
    assert access["samesite"].lower() == "lax"
    assert int(access["max-age"]) == settings.access_token_ttl_seconds
    assert refresh["httponly"] is True
    assert refresh["path"] == SESSION  # sent to the session routes only
    assert refresh["samesite"].lower() == "strict"
    assert int(refresh["max-age"]) == settings.refresh_token_ttl_seconds
    assert not csrf["httponly"]  # the page's script reads it
    assert csrf["samesite"].lower() == "strict"
    assert csrf.value == body["csrf_token"]
    assert not any(morsel["secure"] for morsel in cookies.values())  # plain http here
    # The tokens travel in the cookies only.
    assert access.value not in response.text
    assert refresh.value not in response.text


@pytest.mark.parametrize(
    ("overrides", "secure"),
    [
        ({"cookie_secure": True}, True),
        ({"https": True}, True),
        ({"https": True, "cookie_secure": False}, False),
    ],
    ids=["cookie_secure", "https", "https-but-overridden"],
)
async def test_cookies_are_secure_when_served_over_https(
    auth_settings: Callable[..., Settings],
    start_app: StartApp,
    overrides: dict[str, bool],
    secure: bool,
) -> None:
    _, client = await start_app(auth_settings(**overrides))
    account = await register(client)
    response = await sign_in(client, account)

    cookies = set_cookies(response)
    assert {name: bool(morsel["secure"]) for name, morsel in cookies.items()} == {
        ACCESS: secure,
        REFRESH: secure,
        CSRF: secure,
    }


async def test_a_cookie_session_reads_freely_but_writes_only_with_the_csrf_header(
    client: httpx.AsyncClient, account: Account
) -> None:
    csrf = (await sign_in(client, account)).json()["csrf_token"]

    me = await client.get(ME)  # the cookie jar sends the access cookie
    assert me.status_code == 200, me.text
    assert me.json()["id"] == account.id

    change = {"display_name": "Çerez Canavarı"}
    missing = await client.patch(ME, json=change)
    assert_problem(missing, 403, "CSRF_FAILED")
    wrong = await client.patch(ME, json=change, headers={"X-CSRF-Token": flip(csrf)})
    assert_problem(wrong, 403, "CSRF_FAILED")
    assert (await client.get(ME)).json()["display_name"] != "Çerez Canavarı"

    right = await client.patch(ME, json=change, headers={"X-CSRF-Token": csrf})
    assert right.status_code == 200, right.text
    assert right.json()["display_name"] == "Çerez Canavarı"
    # A bearer token needs no CSRF header: no browser sends it on its own.
    bearer = await client.patch(ME, json={"language": "tr"}, headers=account.headers)
    assert bearer.status_code == 200, bearer.text


async def test_csrf_values_are_bound_to_their_own_session(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    victim, attacker = await register(client), await register(client)
    victim_session = await sign_in(client, victim)
    victim_access = set_cookies(victim_session)[ACCESS].value
    victim_csrf = victim_session.json()["csrf_token"]
    async with client_for(app) as attacker_browser:
        attacker_csrf = (await sign_in(attacker_browser, attacker)).json()["csrf_token"]
    assert attacker_csrf != victim_csrf

    async with client_for(app) as browser:

        async def patch(csrf_cookie: str, csrf_header: str) -> httpx.Response:
            return await browser.patch(
                ME,
                json={"display_name": "pwned"},
                headers={
                    "Cookie": cookie_header(**{ACCESS: victim_access, CSRF: csrf_cookie}),
                    "X-CSRF-Token": csrf_header,
                },
            )

        # Cookie tossing: a sibling domain plants the attacker's own, valid CSRF pair.
        assert_problem(await patch(attacker_csrf, attacker_csrf), 403, "CSRF_FAILED")
        # The header alone, or the cookie alone, is not enough either.
        assert_problem(await patch(attacker_csrf, victim_csrf), 403, "CSRF_FAILED")
        missing_cookie = await browser.patch(
            ME,
            json={"display_name": "pwned"},
            headers={
                "Cookie": cookie_header(**{ACCESS: victim_access}),
                "X-CSRF-Token": victim_csrf,
            },
        )
        assert_problem(missing_cookie, 403, "CSRF_FAILED")

        control = await patch(victim_csrf, victim_csrf)
        assert control.status_code == 200, control.text


async def test_a_tampered_access_cookie_is_refused(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    response = await sign_in(client, account)
    access = set_cookies(response)[ACCESS].value
    header, payload, signature = access.split(".")
    tampered = [
        f"{header}.{payload}.{flip(signature)}",
        f"{header}.{flip(payload)}.{signature}",
        "not-a-token",
    ]
    async with client_for(app) as browser:
        for value in tampered:
            result = await browser.get(ME, headers={"Cookie": cookie_header(**{ACCESS: value})})
            assert_problem(result, 401, "INVALID_TOKEN")
        genuine = await browser.get(ME, headers={"Cookie": cookie_header(**{ACCESS: access})})
        assert genuine.status_code == 200


async def test_refreshing_a_session_rotates_its_cookies_and_needs_csrf(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    first = await sign_in(client, account)
    csrf = first.json()["csrf_token"]
    old = {name: morsel.value for name, morsel in set_cookies(first).items()}

    missing = await client.post(f"{SESSION}/refresh")
    assert_problem(missing, 403, "CSRF_FAILED")
    wrong = await client.post(f"{SESSION}/refresh", headers={"X-CSRF-Token": flip(csrf)})
    assert_problem(wrong, 403, "CSRF_FAILED")

    renewed = await client.post(f"{SESSION}/refresh", headers={"X-CSRF-Token": csrf})
    assert renewed.status_code == 200, renewed.text
    new = {name: morsel.value for name, morsel in set_cookies(renewed).items()}
    assert new[ACCESS] != old[ACCESS]
    assert new[REFRESH] != old[REFRESH]
    assert renewed.json()["csrf_token"] == new[CSRF]
    assert (await client.get(ME)).status_code == 200
    # Writes go on with the CSRF value the page holds.
    write = await client.patch(ME, json={"language": "tr"}, headers={"X-CSRF-Token": new[CSRF]})
    assert write.status_code == 200, write.text

    # The spent refresh cookie, replayed, is a reuse: the session ends.
    async with client_for(app) as thief:
        replay = await thief.post(
            f"{SESSION}/refresh",
            headers={
                "Cookie": cookie_header(**{REFRESH: old[REFRESH], CSRF: csrf}),
                "X-CSRF-Token": csrf,
            },
        )
        assert_problem(replay, 401, "REFRESH_TOKEN_REUSED")
    after = await client.post(f"{SESSION}/refresh", headers={"X-CSRF-Token": new[CSRF]})
    assert_problem(after, 401, "INVALID_TOKEN")


async def test_refreshing_without_a_refresh_cookie_is_refused(
    app: FastAPI, account: Account
) -> None:
    async with client_for(app) as browser:
        response = await browser.post(f"{SESSION}/refresh", headers={"X-CSRF-Token": "abc"})
        assert_problem(response, 401, "INVALID_TOKEN")


async def test_signing_out_clears_the_cookies_and_ends_the_session(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await sign_in(client, account)
    csrf = response.json()["csrf_token"]
    refresh_token = set_cookies(response)[REFRESH].value

    without_csrf = await client.delete(SESSION)
    assert_problem(without_csrf, 403, "CSRF_FAILED")

    signed_out = await client.delete(SESSION, headers={"X-CSRF-Token": csrf})
    assert signed_out.status_code == 204, signed_out.text
    cleared = set_cookies(signed_out)
    assert set(cleared) == {ACCESS, REFRESH, CSRF}
    for name, morsel in cleared.items():
        assert morsel.value in ("", '""'), name
        assert morsel["max-age"] == "0", name
    assert cleared[REFRESH]["path"] == SESSION
    assert (await client.get(ME)).status_code == 401  # the jar dropped the cookies
    # The login behind the cookies is revoked, wherever a copy of its refresh token is.
    reused = await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert_problem(reused, 401, "INVALID_TOKEN")


async def test_signing_in_with_mfa_takes_two_steps(
    client: httpx.AsyncClient, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = utcnow().replace(microsecond=0)
    frozen = now - timedelta(seconds=now.timestamp() % 30) + timedelta(seconds=15)
    monkeypatch.setattr(mfa, "utcnow", lambda: frozen)
    setup = await client.post(
        "/api/v1/auth/mfa/totp/setup", headers=account.headers, json={"password": PASSWORD}
    )
    totp = pyotp.TOTP(setup.json()["secret"])
    confirmed = await client.post(
        "/api/v1/auth/mfa/totp/confirm", headers=account.headers, json={"code": totp.at(frozen)}
    )
    assert confirmed.status_code == 200, confirmed.text

    first = await client.post(SESSION, json={"email": account.email, "password": PASSWORD})
    assert first.status_code == 200, first.text
    assert first.json()["mfa_required"] is True
    assert "set-cookie" not in first.headers
    assert (await client.get(ME)).status_code == 401

    mfa_token = first.json()["mfa_token"]
    wrong = await client.post(f"{SESSION}/mfa", json={"mfa_token": mfa_token, "code": "000000"})
    assert_problem(wrong, 401, "INVALID_MFA_CODE")
    assert "set-cookie" not in wrong.headers

    next_code = totp.at(frozen + timedelta(seconds=30))
    second = await client.post(f"{SESSION}/mfa", json={"mfa_token": mfa_token, "code": next_code})
    assert second.status_code == 200, second.text
    assert set(set_cookies(second)) == {ACCESS, REFRESH, CSRF}
    me = await client.get(ME)
    assert me.status_code == 200
    assert me.json()["mfa_enabled"] is True
    csrf = second.json()["csrf_token"]
    write = await client.patch(ME, json={"language": "tr"}, headers={"X-CSRF-Token": csrf})
    assert write.status_code == 200, write.text
