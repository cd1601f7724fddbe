"""Abuse: login limits per address and per account, progressive lockout (the same for accounts
that do not exist), the registration, refresh, reset and MFA limits, and where the counters live
(process memory in the embedded mode, Redis when scaled: shared by every process)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import func, select
from tests.auth.conftest import (
    PASSWORD,
    StartApp,
    client_for,
    db_scalars,
    login,
    unique_email,
)
from tests.conftest import REDIS_URL

from tezgah.auth.models import User
from tezgah.core.config import Settings

TOKEN = "/api/v1/auth/token"


async def create_account(app: FastAPI, address: str | None = None) -> str:
    """Register from an address of its own, so the tests' counters start at zero."""
    address = address or unique_email("abuse")
    async with client_for(app, "192.0.2.250") as registrar:
        response = await registrar.post(
            "/api/v1/auth/register",
            json={"email": address, "password": PASSWORD, "display_name": "Kötü Niyetli"},
        )
    assert response.status_code == 201, response.text
    return address


async def attempt(
    client: httpx.AsyncClient, address: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post(TOKEN, data={"username": address, "password": password})


def assert_too_many(response: httpx.Response, error_code: str, max_seconds: int = 60) -> int:
    """A 429 in the problem format with a Retry-After; returns the seconds."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["error_code"] == error_code, body
    assert body["status"] == 429
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= max_seconds
    assert str(retry_after) in body["detail"]
    return retry_after


def comparable(response: httpx.Response) -> tuple[int, dict[str, Any], set[str]]:
    body = {k: v for k, v in response.json().items() if k not in ("request_id", "detail")}
    return response.status_code, body, set(response.headers)


# Login limits -------------------------------------------------------------------------------


async def test_the_login_limit_per_address(
    auth_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    app, client = await start_app(auth_settings(rate_limit_login_ip="3/minute"))
    address = await create_account(app)

    assert (await attempt(client, address)).status_code == 200
    assert (await attempt(client, address, "wrong-" + PASSWORD)).status_code == 401
    assert (await attempt(client, unique_email())).status_code == 401
    assert_too_many(await attempt(client, address), "RATE_LIMITED")
    # Browser sign-in counts against the same limit.
    session = await client.post(
        "/api/v1/auth/session", json={"email": address, "password": PASSWORD}
    )
    assert_too_many(session, "RATE_LIMITED")
    async with client_for(app, "198.51.100.20") as elsewhere:
        assert (await attempt(elsewhere, address)).status_code == 200


async def test_the_login_limit_per_account_holds_across_addresses(
    auth_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    app, _ = await start_app(auth_settings(rate_limit_login_account="3/minute"))
    address, other = await create_account(app), await create_account(app)
    ghost = unique_email("ghost")

    for number in range(3):
        async with client_for(app, f"198.51.100.{number + 1}") as client:
            assert (await attempt(client, address)).status_code == 200
            assert (await attempt(client, ghost)).status_code == 401
    async with client_for(app, "198.51.100.50") as client:
        limited = await attempt(client, address.upper())  # the same account in other case
        unknown = await attempt(client, ghost)
        assert_too_many(limited, "RATE_LIMITED")
        assert_too_many(unknown, "RATE_LIMITED")
        assert comparable(limited) == comparable(unknown)
        assert (await attempt(client, other)).status_code == 200


# Lockout ------------------------------------------------------------------------------------


async def test_repeated_failures_lock_the_account_the_same_way_for_unknown_emails(
    auth_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    app, client = await start_app(auth_settings(lockout_threshold=3, lockout_base_seconds=30))
    address, bystander = await create_account(app), await create_account(app)
    ghost = unique_email("ghost")

    for _ in range(3):
        assert (await attempt(client, address, "wrong-" + PASSWORD)).status_code == 401
        assert (await attempt(client, ghost, "wrong-" + PASSWORD)).status_code == 401

    locked = await attempt(client, address)  # the right password, too late
    seconds = assert_too_many(locked, "ACCOUNT_LOCKED", max_seconds=30)
    assert seconds >= 29
    locked_ghost = await attempt(client, ghost)
    assert_too_many(locked_ghost, "ACCOUNT_LOCKED", max_seconds=30)
    assert comparable(locked) == comparable(locked_ghost)
    session = await client.post(
        "/api/v1/auth/session", json={"email": address, "password": PASSWORD}
    )
    assert_too_many(session, "ACCOUNT_LOCKED", max_seconds=30)
    # Only that account: another one signs in from the same address.
    assert (await attempt(client, bystander)).status_code == 200


async def test_the_lockout_doubles_with_every_failure_after_it(
    auth_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    app, client = await start_app(
        auth_settings(lockout_threshold=2, lockout_base_seconds=1, lockout_max_seconds=60)
    )
    address = await create_account(app)

    for _ in range(2):
        assert (await attempt(client, address, "wrong-" + PASSWORD)).status_code == 401
    assert assert_too_many(await attempt(client, address), "ACCOUNT_LOCKED") == 1

    await asyncio.sleep(1.1)
    assert (await attempt(client, address, "wrong-" + PASSWORD)).status_code == 401
    assert assert_too_many(await attempt(client, address), "ACCOUNT_LOCKED") == 2


async def test_a_successful_login_clears_the_failures(
    auth_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    app, client = await start_app(auth_settings(lockout_threshold=2))
    address = await create_account(app)

    for _ in range(3):
        assert (await attempt(client, address, "wrong-" + PASSWORD)).status_code == 401
        assert (await attempt(client, address)).status_code == 200


# Other limits -------------------------------------------------------------------------------


async def test_registration_refresh_reset_and_mfa_have_their_limits(
    auth_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    app, client = await start_app(
        auth_settings(
            rate_limit_register_ip="2/minute",
            rate_limit_refresh="2/minute",
            rate_limit_password_reset="2/minute",
            rate_limit_mfa="2/minute",
        )
    )

    addresses = [unique_email("reg") for _ in range(3)]
    for address in addresses[:2]:
        response = await client.post(
            "/api/v1/auth/register",
            json={"email": address, "password": PASSWORD, "display_name": "Ali"},
        )
        assert response.status_code == 201
    refused = await client.post(
        "/api/v1/auth/register",
        json={"email": addresses[2], "password": PASSWORD, "display_name": "Ali"},
    )
    assert_too_many(refused, "RATE_LIMITED")
    created = await db_scalars(
        app, select(func.count()).select_from(User).where(User.email == addresses[2])
    )
    assert created == [0]

    pair = await login(client, addresses[0])
    first = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    second = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first.json()["refresh_token"]}
    )
    assert (first.status_code, second.status_code) == (200, 200)
    third = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second.json()["refresh_token"]}
    )
    assert_too_many(third, "RATE_LIMITED")

    for _ in range(2):
        forgot = await client.post("/api/v1/auth/password/forgot", json={"email": addresses[0]})
        assert forgot.status_code == 202
    assert_too_many(
        await client.post("/api/v1/auth/password/forgot", json={"email": addresses[1]}),
        "RATE_LIMITED",
    )
    # Using a reset token and asking for another verification mail share that limit.
    reset = await client.post(
        "/api/v1/auth/password/reset", json={"token": "x" * 43, "new_password": PASSWORD}
    )
    assert_too_many(reset, "RATE_LIMITED")
    resend = await client.post("/api/v1/auth/verify-email/resend", json={"email": addresses[0]})
    assert_too_many(resend, "RATE_LIMITED")

    for _ in range(2):
        guess = await client.post(
            "/api/v1/auth/mfa/verify", json={"mfa_token": "x" * 40, "code": "123456"}
        )
        assert guess.status_code == 401
    guess = await client.post(
        "/api/v1/auth/mfa/verify", json={"mfa_token": "x" * 40, "code": "123456"}
    )
    assert_too_many(guess, "RATE_LIMITED")
    session_guess = await client.post(
        "/api/v1/auth/session/mfa", json={"mfa_token": "x" * 40, "code": "123456"}
    )
    assert_too_many(session_guess, "RATE_LIMITED")


# Where the counters live --------------------------------------------------------------------


async def test_limits_and_lockouts_are_shared_by_processes_when_redis_is_configured(
    auth_settings: Callable[..., Settings], start_app: StartApp, backend: str
) -> None:
    first_settings = auth_settings(rate_limit_login_ip="3/minute", lockout_threshold=2)
    first_app, first = await start_app(first_settings)
    _, second = await start_app(
        auth_settings(
            rate_limit_login_ip="3/minute",
            lockout_threshold=2,
            redis_key_prefix=first_settings.redis_key_prefix,
        )
    )
    locked_out = await create_account(first_app)
    for _ in range(2):
        assert (await attempt(first, locked_out, "wrong-" + PASSWORD)).status_code == 401

    on_second = await attempt(second, locked_out)
    if backend == "postgres":
        # Another process (same Redis) sees the lockout and the spent address limit.
        assert_too_many(on_second, "ACCOUNT_LOCKED")
        assert_too_many(await attempt(second, unique_email()), "RATE_LIMITED")
        redis = Redis.from_url(REDIS_URL)
        try:
            keys = [
                key async for key in redis.scan_iter(match=first_settings.redis_key_prefix + "*")
            ]
        finally:
            await redis.aclose()
        assert any(b"auth:lock:" in key for key in keys), keys
        assert any(b"ratelimit" in key for key in keys), keys
    else:
        # The embedded mode is one process: its counters live in that process's memory.
        assert on_second.status_code == 200, on_second.text
        assert_too_many(await attempt(first, locked_out), "ACCOUNT_LOCKED")


@pytest.mark.parametrize("route", ["/api/v1/auth/token", "/api/v1/auth/session"])
async def test_limits_answer_in_the_callers_language(
    auth_settings: Callable[..., Settings], start_app: StartApp, route: str
) -> None:
    app, client = await start_app(auth_settings(rate_limit_login_ip="1/minute"))
    address = await create_account(app)
    payload: dict[str, Any] = (
        {"data": {"username": address, "password": PASSWORD}}
        if route.endswith("token")
        else {"json": {"email": address, "password": PASSWORD}}
    )
    assert (await client.post(route, **payload)).status_code == 200
    refused = await client.post(route, headers={"Accept-Language": "tr"}, **payload)
    assert_too_many(refused, "RATE_LIMITED")
    assert refused.json()["title"] != "Too many requests"
