"""Accounts: registration and the password policy, email verification over a real SMTP server,
password reset and change, rehashing, login that reveals nothing, and logs without secrets."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import func, select, update
from tests.auth.conftest import (
    PASSWORD,
    MailBox,
    StartApp,
    body_of,
    db_scalars,
    db_user,
    login,
    register,
    token_in,
    unique_email,
)

from tezgah.auth.models import ActionToken, AuditEvent, Membership, User, Workspace
from tezgah.core.config import Settings
from tezgah.core.db import utcnow
from tezgah.core.i18n import translate
from tezgah.core.mail import OutboxMail

NEW_PASSWORD = "Yeni-Parola-2024-ğüşiöç"
TOO_SHORT = "Use at least {min_length} characters."
NOT_EMAIL = "The password must not be your email address."
TOO_COMMON = "This password is too common; choose another."
VERIFY_SUBJECT = "Confirm your email address"
RESET_SUBJECT = "Reset your tezgah password"


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["error_code"] == code, body
    assert body["status"] == status
    return body


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "request_id"}


async def user_count(app: FastAPI, address: str) -> int:
    rows = await db_scalars(
        app, select(func.count()).select_from(User).where(User.email == address)
    )
    return int(rows[0])


async def audit_events(app: FastAPI, event: str, user_id: str) -> list[AuditEvent]:
    return await db_scalars(
        app,
        select(AuditEvent).where(
            AuditEvent.event == event, AuditEvent.subject_user_id == uuid.UUID(user_id)
        ),
    )


async def post_register(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **fields: Any
) -> httpx.Response:
    payload = {"email": unique_email(), "password": PASSWORD, "display_name": "Deneme", **fields}
    return await client.post("/api/v1/auth/register", json=payload, headers=headers)


def assert_no_secret_fields(value: Any) -> None:
    """No key naming a hash or password, and no Argon2 hash anywhere in the data."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert "hash" not in key, key
            assert "password" not in key, key
            assert_no_secret_fields(item)
    elif isinstance(value, list):
        for item in value:
            assert_no_secret_fields(item)
    elif isinstance(value, str):
        assert "$argon2" not in value


# Registration -------------------------------------------------------------------------------


async def test_register_creates_the_account_and_its_personal_workspace(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    address = unique_email("reg")
    response = await post_register(client, email=address, display_name="Ada Lovelace")

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == address
    assert body["display_name"] == "Ada Lovelace"
    assert body["language"] == "en"
    assert body["email_verified"] is False
    assert body["is_superuser"] is False
    assert body["mfa_enabled"] is False
    assert body["is_active"] is True
    assert_no_secret_fields(body)

    user = await db_user(app, body["id"])
    assert user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    workspaces = await db_scalars(
        app, select(Workspace).where(Workspace.created_by_id == user.id, Workspace.is_personal)
    )
    assert len(workspaces) == 1
    roles = await db_scalars(
        app,
        select(Membership.role).where(
            Membership.workspace_id == workspaces[0].id, Membership.user_id == user.id
        ),
    )
    assert roles == ["owner"]
    assert len(await audit_events(app, "user.registered", body["id"])) == 1


async def test_a_taken_email_is_409_in_any_ascii_case(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    address = unique_email("Dup")
    assert (await post_register(client, email=address)).status_code == 201

    for variant in (address, address.upper(), address.swapcase()):
        response = await post_register(client, email=variant)
        problem(response, 409, "EMAIL_TAKEN")
    keys = await db_scalars(
        app, select(func.count()).select_from(User).where(User.email_key == address.lower())
    )
    assert keys == [1]


async def test_two_registrations_racing_for_one_email_give_one_account_and_a_409(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    address = unique_email("race")
    responses = await asyncio.gather(
        post_register(client, email=address), post_register(client, email=address.upper())
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 409], [response.text for response in responses]
    loser = next(response for response in responses if response.status_code == 409)
    problem(loser, 409, "EMAIL_TAKEN")
    keys = await db_scalars(
        app, select(func.count()).select_from(User).where(User.email_key == address.lower())
    )
    assert keys == [1]


WEAK_PASSWORDS = {
    "too-short": ("Kisa-1!", TOO_SHORT),
    "equals-email": ("{email}", NOT_EMAIL),
    "equals-email-other-case": ("{email_upper}", NOT_EMAIL),
    "equals-local-part": ("{local}", NOT_EMAIL),
    "common": ("galatasaray1905", TOO_COMMON),
    "common-other-case": ("QWERTYUIOP", TOO_COMMON),
}


async def test_the_password_policy_refuses_weak_passwords(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    outcomes, expected, addresses = {}, {}, []
    for case, (template, message) in WEAK_PASSWORDS.items():
        address = unique_email("longlocalpart")
        addresses.append(address)
        password = template.format(
            email=address, email_upper=address.upper(), local=address.split("@")[0]
        )
        response = await post_register(client, email=address, password=password)
        outcomes[case] = (response.status_code, response.json()["error_code"])
        outcomes[case] += (response.json()["field_errors"],)
        expected[case] = (
            422,
            "WEAK_PASSWORD",
            {"password": [translate(message, "en", min_length=10)]},
        )

    assert outcomes == expected
    for address in addresses:
        assert await user_count(app, address) == 0
    # The control: a good password passes the same route.
    assert (await post_register(client, password=PASSWORD)).status_code == 201


async def test_password_policy_messages_are_in_turkish_for_a_turkish_client(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    address = unique_email()
    response = await post_register(
        client, headers={"Accept-Language": "tr"}, email=address, password="password"
    )

    body = problem(response, 422, "WEAK_PASSWORD")
    expected = [translate(TOO_SHORT, "tr", min_length=10), translate(TOO_COMMON, "tr")]
    english = [translate(TOO_SHORT, "en", min_length=10), translate(TOO_COMMON, "en")]
    assert body["field_errors"] == {"password": expected}
    assert set(expected).isdisjoint(english)
    assert body["detail"] == translate("The password does not meet the password policy.", "tr")
    assert body["detail"] != "The password does not meet the password policy."


SMUGGLED_FIELDS: dict[str, Any] = {
    "is_superuser": True,
    "email_verified": True,
    "role": "admin",
    "is_active": False,
    "password_hash": "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA",
    "id": "00000000-0000-0000-0000-000000000001",
}


async def test_mass_assignment_is_refused_and_creates_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    for field, value in SMUGGLED_FIELDS.items():
        address = unique_email("mass")
        response = await post_register(client, email=address, **{field: value})

        body = problem(response, 422, "VALIDATION_ERROR")
        assert any(field in key for key in body["field_errors"]), body
        assert await user_count(app, address) == 0


async def test_turkish_email_and_display_name_round_trip(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    tag = uuid.uuid4().hex[:6]
    address = f"İpek.Işıl.{tag}@example.com"
    response = await post_register(client, email=address, display_name="Işıl Çağlar")

    assert response.status_code == 201, response.text
    assert response.json()["email"] == address
    assert response.json()["display_name"] == "Işıl Çağlar"
    tokens = await login(client, address)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = (await client.get("/api/v1/auth/me", headers=headers)).json()
    assert (me["email"], me["display_name"]) == (address, "Işıl Çağlar")
    user = await db_user(app, me["id"])
    assert (user.email, user.display_name) == (address, "Işıl Çağlar")
    # Only ASCII letters are folded: no locale-aware case mapping, no "İ".lower() == "i̇".
    assert user.email_key == f"İpek.işıl.{tag}@example.com"

    changed = await client.patch(
        "/api/v1/auth/me", headers=headers, json={"display_name": "Şükrü Öztürk", "language": "tr"}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["display_name"], changed.json()["language"]) == ("Şükrü Öztürk", "tr")
    assert (await db_user(app, me["id"])).display_name == "Şükrü Öztürk"


async def test_responses_never_carry_a_hash(client: httpx.AsyncClient) -> None:
    address = unique_email()
    registered = await post_register(client, email=address)
    tokens = await login(client, address)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    session = await client.post(
        "/api/v1/auth/session", json={"email": address, "password": PASSWORD}
    )
    me = await client.get("/api/v1/auth/me", headers=headers)

    for response in (registered, me, session):
        assert response.status_code in (200, 201), response.text
        assert_no_secret_fields(response.json())
        assert PASSWORD not in response.text


# Email verification -------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["tr", "en"])
async def test_the_verification_mail_arrives_in_the_users_language(
    app: FastAPI, client: httpx.AsyncClient, mailbox: MailBox, language: str
) -> None:
    address = unique_email("verify")
    response = await post_register(
        client, email=address, display_name="Işıl Çağlar", language=language
    )
    assert response.status_code == 201, response.text

    message = await mailbox.wait_for(address)
    assert message["Subject"] == translate(VERIFY_SUBJECT, language)
    assert message["Content-Language"] == language
    assert translate(VERIFY_SUBJECT, "tr") != VERIFY_SUBJECT
    body = body_of(message)
    assert "Işıl Çağlar" in body
    if language == "tr":
        assert "Hello" not in body
        assert "confirm your email" not in body
    else:
        assert body.startswith("Hello Işıl Çağlar")
    token = token_in(message)
    assert f"http://127.0.0.1:8000/verify-email#token={token}" in body

    verified = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 200, verified.text
    assert verified.json()["email_verified"] is True
    assert (await db_user(app, verified.json()["id"])).email_verified_at is not None

    again = await client.post("/api/v1/auth/verify-email", json={"token": token})
    problem(again, 401, "INVALID_TOKEN")


async def test_an_expired_or_foreign_verification_token_is_refused(
    app: FastAPI, client: httpx.AsyncClient, mailbox: MailBox
) -> None:
    account = await register(client)
    token = token_in(await mailbox.wait_for(account.email))
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        await session.execute(
            update(ActionToken)
            .where(ActionToken.user_id == uuid.UUID(account.id))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )

    expired = await client.post("/api/v1/auth/verify-email", json={"token": token})
    problem(expired, 401, "INVALID_TOKEN")
    made_up = await client.post(
        "/api/v1/auth/verify-email", json={"token": ("B" if token[0] == "A" else "A") + token[1:]}
    )
    problem(made_up, 401, "INVALID_TOKEN")
    assert (await db_user(app, account.id)).email_verified_at is None


async def test_required_verification_blocks_login_until_verified_and_resend_works(
    auth_settings: Callable[..., Settings], start_app: StartApp, mailbox: MailBox
) -> None:
    app, client = await start_app(auth_settings(require_email_verification=True))
    address = unique_email("unverified")
    assert (await post_register(client, email=address)).status_code == 201
    first = token_in(await mailbox.wait_for(address))

    form = {"username": address, "password": PASSWORD}
    blocked = await client.post("/api/v1/auth/token", data=form)
    problem(blocked, 403, "EMAIL_NOT_VERIFIED")
    # Without the right password nothing tells the account exists or is unverified.
    wrong = await client.post("/api/v1/auth/token", data={**form, "password": "x" + PASSWORD})
    problem(wrong, 401, "INVALID_CREDENTIALS")
    session = await client.post(
        "/api/v1/auth/session", json={"email": address, "password": PASSWORD}
    )
    problem(session, 403, "EMAIL_NOT_VERIFIED")
    assert "set-cookie" not in session.headers

    resent = await client.post("/api/v1/auth/verify-email/resend", json={"email": address})
    unknown = await client.post(
        "/api/v1/auth/verify-email/resend", json={"email": unique_email("nobody")}
    )
    assert resent.status_code == unknown.status_code == 202
    assert resent.json() == unknown.json() == {"status": "accepted"}
    second = token_in(await mailbox.wait_for(address, count=2))
    assert second != first
    # The new mail replaces the old one.
    problem(
        await client.post("/api/v1/auth/verify-email", json={"token": first}), 401, "INVALID_TOKEN"
    )
    verified = await client.post("/api/v1/auth/verify-email", json={"token": second})
    assert verified.status_code == 200, verified.text

    allowed = await client.post("/api/v1/auth/token", data=form)
    assert allowed.status_code == 200, allowed.text
    # Once verified, a resend sends nothing.
    await client.post("/api/v1/auth/verify-email/resend", json={"email": address})
    outbox = await db_scalars(app, select(OutboxMail).where(OutboxMail.to_address == address))
    assert len(outbox) == 2


async def test_the_mail_sender_stops_when_cancelled_just_as_it_is_woken(
    auth_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    """A request that queued mail wakes the sender; a shutdown at that moment must still stop
    it (``asyncio.wait_for`` on Python 3.11 swallowed that cancellation: shutdown hung)."""
    app, _ = await start_app(auth_settings(mail_poll_seconds=60))
    sender = app.state.auth.mail
    await asyncio.sleep(0.1)  # the sender has looked for mail and is waiting
    sender.wake()
    await asyncio.sleep(0)  # the wake-up completes; the sender has not resumed yet
    stopping = asyncio.ensure_future(sender.stop())
    done, _ = await asyncio.wait({stopping}, timeout=2)
    assert stopping in done, "the mail sender ignored its cancellation"


# Password reset -----------------------------------------------------------------------------


async def test_password_reset_end_to_end(
    app: FastAPI, client: httpx.AsyncClient, mailbox: MailBox
) -> None:
    account = await register(client, language="tr", display_name="Gökçe")
    unknown = unique_email("ghost")

    # Asked for in another ASCII case: the same account.
    existing = await client.post(
        "/api/v1/auth/password/forgot", json={"email": account.email.upper()}
    )
    missing = await client.post("/api/v1/auth/password/forgot", json={"email": unknown})
    assert existing.status_code == missing.status_code == 202
    assert existing.json() == missing.json()
    assert existing.headers["content-length"] == missing.headers["content-length"]

    await mailbox.wait_for(account.email, count=2)  # the verification mail, then this one
    message = next(m for m in mailbox.to(account.email) if "reset-password" in body_of(m))
    assert message["Subject"] == translate(RESET_SUBJECT, "tr") != RESET_SUBJECT
    assert "/reset-password#token=" in body_of(message)
    token = token_in(message)
    assert mailbox.to(unknown) == []
    outbox = await db_scalars(app, select(OutboxMail).where(OutboxMail.to_address == unknown))
    assert outbox == []

    # The policy applies to the new password, and a refusal does not spend the token.
    weak = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": "galatasaray1905"}
    )
    assert problem(weak, 422, "WEAK_PASSWORD")["field_errors"] == {
        "new_password": [translate(TOO_COMMON, "en")]
    }
    # A verification token is not a reset token.
    verification = token_in(
        next(m for m in mailbox.to(account.email) if "verify-email" in body_of(m))
    )
    cross = await client.post(
        "/api/v1/auth/password/reset", json={"token": verification, "new_password": NEW_PASSWORD}
    )
    problem(cross, 401, "INVALID_TOKEN")

    reset = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert reset.status_code == 200, reset.text
    again = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD + "x"}
    )
    problem(again, 401, "INVALID_TOKEN")

    old = await client.post(
        "/api/v1/auth/token", data={"username": account.email, "password": PASSWORD}
    )
    problem(old, 401, "INVALID_CREDENTIALS")
    assert (await login(client, account.email, NEW_PASSWORD))["access_token"]
    # Every session that existed before the reset is over.
    problem(await client.get("/api/v1/auth/me", headers=account.headers), 401, "INVALID_TOKEN")
    stale = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    problem(stale, 401, "INVALID_TOKEN")
    user = await db_user(app, account.id)
    assert user.email_verified_at is not None  # the mail reached its owner
    assert len(await audit_events(app, "password.reset", account.id)) == 1


# Change password and rehashing --------------------------------------------------------------


async def test_change_password(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await register(client)
    other_login = await login(client, account.email)
    url = "/api/v1/auth/password/change"

    wrong = await client.post(
        url,
        headers=account.headers,
        json={"current_password": "not-" + PASSWORD, "new_password": NEW_PASSWORD},
    )
    problem(wrong, 403, "WRONG_PASSWORD")
    weak = await client.post(
        url,
        headers=account.headers,
        json={"current_password": PASSWORD, "new_password": account.email},
    )
    assert problem(weak, 422, "WEAK_PASSWORD")["field_errors"] == {
        "new_password": [translate(NOT_EMAIL, "en")]
    }

    changed = await client.post(
        url,
        headers=account.headers,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code == 200, changed.text
    pair = changed.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    new_headers = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (await client.get("/api/v1/auth/me", headers=new_headers)).status_code == 200

    for stale_access in (account.access_token, other_login["access_token"]):
        response = await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {stale_access}"}
        )
        problem(response, 401, "INVALID_TOKEN")
    for stale_refresh in (account.refresh_token, other_login["refresh_token"]):
        response = await client.post("/api/v1/auth/refresh", json={"refresh_token": stale_refresh})
        problem(response, 401, "INVALID_TOKEN")
    renewed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert renewed.status_code == 200, renewed.text

    old = await client.post(
        "/api/v1/auth/token", data={"username": account.email, "password": PASSWORD}
    )
    problem(old, 401, "INVALID_CREDENTIALS")
    await login(client, account.email, NEW_PASSWORD)
    assert len(await audit_events(app, "password.changed", account.id)) == 1


async def test_login_rehashes_a_password_made_with_other_argon2_parameters(
    auth_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    cheap_app, cheap = await start_app(auth_settings())
    account = await register(cheap)
    before = (await db_user(cheap_app, account.id)).password_hash
    assert before is not None
    assert "$m=1024,t=1,p=1$" in before

    costly_app, costly = await start_app(auth_settings(argon2_time_cost=2))
    await login(costly, account.email)
    after = (await db_user(costly_app, account.id)).password_hash
    assert after is not None
    assert "$m=1024,t=2,p=1$" in after
    assert after != before

    # Up to date now: the next login keeps it, and the old parameters' app still verifies it.
    await login(costly, account.email)
    assert (await db_user(costly_app, account.id)).password_hash == after
    await login(cheap, account.email)


# Login reveals nothing ----------------------------------------------------------------------


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts Argon2 verifications and hash computations, whoever makes them."""
    calls = {"verify": 0, "hash": 0}
    verify, hash_ = Argon2Hasher.verify, Argon2Hasher.hash

    def counting_verify(self: Argon2Hasher, *args: Any, **kwargs: Any) -> bool:
        calls["verify"] += 1
        return verify(self, *args, **kwargs)

    def counting_hash(self: Argon2Hasher, *args: Any, **kwargs: Any) -> str:
        calls["hash"] += 1
        return hash_(self, *args, **kwargs)

    monkeypatch.setattr(Argon2Hasher, "verify", counting_verify)
    monkeypatch.setattr(Argon2Hasher, "hash", counting_hash)
    return calls


@pytest.mark.parametrize("route", ["token", "session"])
async def test_login_answers_the_same_for_an_unknown_email_and_a_wrong_password(
    client: httpx.AsyncClient, argon2_calls: dict[str, int], route: str
) -> None:
    account = await register(client)

    async def attempt(address: str, password: str) -> tuple[httpx.Response, int]:
        before = dict(argon2_calls)
        if route == "token":
            response = await client.post(
                "/api/v1/auth/token", data={"username": address, "password": password}
            )
        else:
            response = await client.post(
                "/api/v1/auth/session", json={"email": address, "password": password}
            )
        assert argon2_calls["hash"] == before["hash"]  # no hashing on any path
        return response, argon2_calls["verify"] - before["verify"]

    wrong, wrong_runs = await attempt(account.email, "wrong-" + PASSWORD)
    unknown, unknown_runs = await attempt(unique_email("nobody"), "wrong-" + PASSWORD)
    right, right_runs = await attempt(account.email, PASSWORD)

    assert wrong.status_code == unknown.status_code == 401
    assert without_request_id(wrong.json()) == without_request_id(unknown.json())
    assert wrong.json()["error_code"] == "INVALID_CREDENTIALS"
    assert set(wrong.headers) == set(unknown.headers)
    assert right.status_code == 200
    # Each path runs exactly one Argon2 verification: an unknown email costs what a known does.
    assert wrong_runs == unknown_runs == right_runs == 1


# Logs ----------------------------------------------------------------------------------------


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Everything written to stderr: tezgah's loggers (``sys.stderr`` at call time) and the
    standard library's handlers."""
    stream = io.StringIO()
    handlers = [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler)
    ]
    original_streams = [handler.stream for handler in handlers]
    original_stderr = sys.stderr
    sys.stderr = stream
    for handler in handlers:
        handler.setStream(stream)
    try:
        yield stream
    finally:
        sys.stderr = original_stderr
        for handler, original in zip(handlers, original_streams, strict=True):
            handler.setStream(original)


async def test_logs_never_contain_secrets(
    auth_settings: Callable[..., Settings], start_app: StartApp, mailbox: MailBox
) -> None:
    _, client = await start_app(auth_settings())
    secrets: list[str] = [PASSWORD, NEW_PASSWORD]
    with captured_logs() as logs:
        account = await register(client)
        secrets += [account.access_token, account.refresh_token]
        verification = token_in(await mailbox.wait_for(account.email))
        secrets.append(verification)
        await client.post("/api/v1/auth/verify-email", json={"token": verification})

        pair = await login(client, account.email)
        refreshed = (
            await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        ).json()
        secrets += [pair["access_token"], pair["refresh_token"], *refreshed.values()]
        headers = {"Authorization": f"Bearer {refreshed['access_token']}"}
        await client.get("/api/v1/auth/me", headers=headers)
        await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {refreshed['access_token']}x"}
        )
        await client.get(f"/api/v1/auth/me?access_token={refreshed['access_token']}")

        setup = await client.post(
            "/api/v1/auth/mfa/totp/setup", headers=headers, json={"password": PASSWORD}
        )
        secret = setup.json()["secret"]
        code = pyotp.TOTP(secret).now()
        confirm = await client.post(
            "/api/v1/auth/mfa/totp/confirm", headers=headers, json={"code": code}
        )
        recovery = confirm.json()["recovery_codes"]
        secrets += [secret, setup.json()["otpauth_uri"], *recovery]
        challenge = (
            await client.post(
                "/api/v1/auth/token", data={"username": account.email, "password": PASSWORD}
            )
        ).json()
        secrets.append(challenge["mfa_token"])
        verified = await client.post(
            "/api/v1/auth/mfa/verify",
            json={"mfa_token": challenge["mfa_token"], "code": recovery[0]},
        )
        secrets += list(verified.json().values())

        await client.post("/api/v1/auth/password/forgot", json={"email": account.email})
        reset_token = token_in(await mailbox.wait_for(account.email, count=2))
        secrets.append(reset_token)
        await client.post(
            "/api/v1/auth/password/reset",
            json={"token": reset_token, "new_password": NEW_PASSWORD},
        )
        await client.post(
            "/api/v1/auth/token", data={"username": account.email, "password": PASSWORD}
        )
        session = await client.post(
            "/api/v1/auth/session", json={"email": account.email, "password": "wrong" + PASSWORD}
        )
        assert session.status_code == 401

    text = logs.getvalue()
    assert '"path":"/api/v1/auth/register"' in text or "/api/v1/auth/register" in text
    assert text.count("\n") >= 15, text  # the capture saw the requests
    leaked = {
        secret: text[max(0, text.index(secret) - 300) : text.index(secret) + 100]
        for secret in secrets
        if isinstance(secret, str) and secret in text
    }
    assert leaked == {}


async def test_a_reset_token_used_twice_at_once_works_once(
    client: httpx.AsyncClient, mailbox: MailBox
) -> None:
    account = await register(client)
    await client.post("/api/v1/auth/password/forgot", json={"email": account.email})
    await mailbox.wait_for(account.email, count=2)
    message = next(m for m in mailbox.to(account.email) if "reset-password" in body_of(m))
    token = token_in(message)

    responses = await asyncio.gather(
        *(
            client.post(
                "/api/v1/auth/password/reset",
                json={"token": token, "new_password": f"{NEW_PASSWORD}-{number}"},
            )
            for number in range(2)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 401], [response.text for response in responses]
