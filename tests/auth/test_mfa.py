"""Two-factor authentication: TOTP enrolment (secret, otpauth URI, QR code), the login challenge,
codes that work once, recovery codes, disabling, encryption at rest and the audit trail.

TOTP depends on the clock: the ``clock`` fixture freezes the one the MFA module reads in the
middle of a 30-second step, so a code is never computed on one side of a step boundary and
checked on the other.
"""

from __future__ import annotations

import asyncio
import base64
import re
import struct
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pyotp
import pytest
import segno
from fastapi import FastAPI
from sqlalchemy import select
from tests.auth.conftest import PASSWORD, Account, StartApp, db_scalars, db_user, register

from tezgah.auth import mfa
from tezgah.auth.models import AuditEvent, RecoveryCode
from tezgah.core.config import Settings
from tezgah.core.db import utcnow

SETUP = "/api/v1/auth/mfa/totp/setup"
CONFIRM = "/api/v1/auth/mfa/totp/confirm"
VERIFY = "/api/v1/auth/mfa/verify"
DISABLE = "/api/v1/auth/mfa/disable"
ME = "/api/v1/auth/me"
RECOVERY_CODE = re.compile(r"^[a-z2-9]{5}-[a-z2-9]{5}$")


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance_steps(self, steps: int) -> None:
        self.now += timedelta(seconds=30 * steps)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    real = utcnow().replace(microsecond=0)
    middle_of_step = real - timedelta(seconds=real.timestamp() % 30) + timedelta(seconds=15)
    frozen = Clock(middle_of_step)
    monkeypatch.setattr(mfa, "utcnow", frozen)
    return frozen


def code(secret: str, clock: Clock, steps: int = 0) -> str:
    """The TOTP code of the step ``steps`` away from the clock's, computed by pyotp."""
    return pyotp.TOTP(secret).at(clock.now + timedelta(seconds=30 * steps))


async def enable_mfa(
    client: httpx.AsyncClient, account: Account, clock: Clock
) -> tuple[str, list[str]]:
    setup = await client.post(SETUP, headers=account.headers, json={"password": PASSWORD})
    assert setup.status_code == 200, setup.text
    secret: str = setup.json()["secret"]
    confirm = await client.post(
        CONFIRM, headers=account.headers, json={"code": code(secret, clock)}
    )
    assert confirm.status_code == 200, confirm.text
    return secret, confirm.json()["recovery_codes"]


async def challenge(client: httpx.AsyncClient, account: Account) -> str:
    response = await client.post(
        "/api/v1/auth/token", data={"username": account.email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"mfa_required", "mfa_token", "expires_in"}, body
    token: str = body["mfa_token"]
    return token


async def verify(client: httpx.AsyncClient, mfa_token: str, value: str) -> httpx.Response:
    return await client.post(VERIFY, json={"mfa_token": mfa_token, "code": value})


def assert_problem(response: httpx.Response, status: int, error_code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error_code"] == error_code, response.json()


async def audit_count(app: FastAPI, event: str, user_id: str) -> int:
    rows = await db_scalars(
        app,
        select(AuditEvent).where(
            AuditEvent.event == event, AuditEvent.subject_user_id == uuid.UUID(user_id)
        ),
    )
    return len(rows)


# A PNG reader small enough to check the QR code without an image library --------------------


def png_pixels(data: bytes) -> list[list[int]]:
    """Rows of pixel values of a greyscale PNG (every chunk's CRC checked, filters undone)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks, idat = 8, [], b""
    header = b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append(kind)
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        position += 12 + length
    assert chunks[0] == b"IHDR"
    assert chunks[-1] == b"IEND"
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert colour == 0, "greyscale expected"
    stride = (width * depth + 7) // 8
    raw = zlib.decompress(idat)
    assert len(raw) == height * (stride + 1)
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for index in range(height):
        line = raw[index * (stride + 1) : (index + 1) * (stride + 1)]
        kind, current = line[0], bytearray(line[1:])
        for i in range(stride):
            left = current[i - 1] if i else 0
            up, up_left = previous[i], previous[i - 1] if i else 0
            if kind == 1:
                current[i] = (current[i] + left) & 0xFF
            elif kind == 2:
                current[i] = (current[i] + up) & 0xFF
            elif kind == 3:
                current[i] = (current[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - up_left
                nearest = min(
                    (abs(estimate - left), 0, left),
                    (abs(estimate - up), 1, up),
                    (abs(estimate - up_left), 2, up_left),
                )[2]
                current[i] = (current[i] + nearest) & 0xFF
            else:
                assert kind == 0, kind
        rows.append(current)
        previous = current
    maximum = (1 << depth) - 1
    return [
        [(row[(x * depth) // 8] >> (8 - depth - (x * depth) % 8)) & maximum for x in range(width)]
        for row in rows
    ]


def qr_modules(pixels: list[list[int]]) -> list[list[bool]]:
    """The dark/light modules of a QR code image: quiet zone and module size found from the
    top-left finder pattern (seven modules wide)."""
    dark = [[value == 0 for value in row] for row in pixels]
    top = next(y for y, row in enumerate(dark) if any(row))
    left = dark[top].index(True)
    run = 0
    while dark[top][left + run]:
        run += 1
    assert run % 7 == 0
    scale = run // 7
    size = (len(dark[0]) - 2 * left) // scale
    return [
        [dark[top + y * scale + scale // 2][left + x * scale + scale // 2] for x in range(size)]
        for y in range(size)
    ]


def encodes(modules: list[list[bool]], text: str) -> bool:
    for error in ("l", "m", "q", "h"):
        expected = [
            [bool(module) for module in row] for row in segno.make(text, error=error).matrix
        ]
        if expected == modules:
            return True
    return False


# Enrolment ----------------------------------------------------------------------------------


async def test_setup_needs_the_password_and_answers_secret_uri_and_qr_code(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    assert (await client.post(SETUP, json={"password": PASSWORD})).status_code == 401
    wrong = await client.post(SETUP, headers=account.headers, json={"password": "not-it-at-all"})
    assert_problem(wrong, 403, "WRONG_PASSWORD")
    assert (await db_user(app, account.id)).mfa_pending_secret is None

    response = await client.post(SETUP, headers=account.headers, json={"password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    secret = body["secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)

    uri = urlsplit(body["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == f"/tezgah:{account.email}"
    query = parse_qs(uri.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["tezgah"]

    prefix = "data:image/png;base64,"
    assert body["qr_png_data_uri"].startswith(prefix)
    png = base64.b64decode(body["qr_png_data_uri"][len(prefix) :], validate=True)
    modules = qr_modules(png_pixels(png))
    assert encodes(modules, body["otpauth_uri"])
    assert not encodes(modules, body["otpauth_uri"].replace(secret, "A" * 32))

    user = await db_user(app, account.id)
    assert user.mfa_pending_secret is not None
    assert secret not in user.mfa_pending_secret
    assert mfa.decrypt(app.state.auth, user.mfa_pending_secret) == secret
    assert user.mfa_secret is None
    me = await client.get(ME, headers=account.headers)
    assert me.json()["mfa_enabled"] is False


async def test_confirming_enrolment_turns_mfa_on_with_ten_recovery_codes(
    app: FastAPI, client: httpx.AsyncClient, account: Account, clock: Clock
) -> None:
    early = await client.post(CONFIRM, headers=account.headers, json={"code": "123456"})
    assert_problem(early, 409, "MFA_NOT_ENROLLED")
    setup = await client.post(SETUP, headers=account.headers, json={"password": PASSWORD})
    secret = setup.json()["secret"]

    wrong_code = f"{(int(code(secret, clock)) + 1) % 1_000_000:06d}"
    wrong = await client.post(CONFIRM, headers=account.headers, json={"code": wrong_code})
    assert_problem(wrong, 401, "INVALID_MFA_CODE")
    assert (await client.get(ME, headers=account.headers)).json()["mfa_enabled"] is False

    confirm = await client.post(
        CONFIRM, headers=account.headers, json={"code": code(secret, clock)}
    )
    assert confirm.status_code == 200, confirm.text
    codes = confirm.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    assert all(RECOVERY_CODE.match(value) for value in codes), codes
    assert (await client.get(ME, headers=account.headers)).json()["mfa_enabled"] is True

    # Encrypted at rest: the database holds neither the secret nor the recovery codes.
    user = await db_user(app, account.id)
    assert user.mfa_secret is not None
    assert user.mfa_secret != secret
    assert secret not in user.mfa_secret
    assert mfa.decrypt(app.state.auth, user.mfa_secret) == secret
    assert user.mfa_pending_secret is None
    stored = await db_scalars(
        app, select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)
    )
    assert len(stored) == 10
    assert not {value.replace("-", "") for value in codes} & set(stored)
    assert await audit_count(app, "mfa.enabled", account.id) == 1

    again = await client.post(SETUP, headers=account.headers, json={"password": PASSWORD})
    assert_problem(again, 409, "MFA_ALREADY_ENABLED")


# Signing in with a second factor --------------------------------------------------------------


async def test_login_with_mfa_needs_a_fresh_code_and_never_accepts_one_twice(
    app: FastAPI, client: httpx.AsyncClient, account: Account, clock: Clock
) -> None:
    secret, _ = await enable_mfa(client, account, clock)

    response = await client.post(
        "/api/v1/auth/token", data={"username": account.email, "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["mfa_required"] is True
    assert "access_token" not in body
    assert "refresh_token" not in body
    mfa_token = body["mfa_token"]
    # The challenge is no access token.
    assert_problem(
        await client.get(ME, headers={"Authorization": f"Bearer {mfa_token}"}), 401, "INVALID_TOKEN"
    )

    # The enrolment's code was used once already; a code two steps away is out of the window.
    assert_problem(await verify(client, mfa_token, code(secret, clock)), 401, "INVALID_MFA_CODE")
    assert_problem(await verify(client, mfa_token, code(secret, clock, 2)), 401, "INVALID_MFA_CODE")
    assert_problem(await verify(client, mfa_token, "000000"), 401, "INVALID_MFA_CODE")
    assert await audit_count(app, "login.mfa_failed", account.id) == 3

    clock.advance_steps(1)
    fresh = code(secret, clock)
    tokens = await verify(client, mfa_token, fresh)
    assert tokens.status_code == 200, tokens.text
    pair = tokens.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    me = await client.get(ME, headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.status_code == 200
    assert me.json()["mfa_enabled"] is True

    # Replayed within its window, with a new challenge: refused.
    replay = await verify(client, await challenge(client, account), fresh)
    assert_problem(replay, 401, "INVALID_MFA_CODE")
    # One step of clock drift either way is allowed; the next step's code works.
    drifted = await verify(client, await challenge(client, account), code(secret, clock, 1))
    assert drifted.status_code == 200, drifted.text


async def test_an_expired_or_foreign_mfa_token_is_refused(
    app: FastAPI, client: httpx.AsyncClient, account: Account, clock: Clock
) -> None:
    secret, _ = await enable_mfa(client, account, clock)
    expired = app.state.auth.tokens.issue(account.id, "mfa", -60, method="password")
    assert_problem(await verify(client, expired, code(secret, clock, 1)), 401, "INVALID_TOKEN")
    garbage = await verify(client, "x" * 40, code(secret, clock, 1))
    assert_problem(garbage, 401, "INVALID_TOKEN")


async def test_a_recovery_code_works_once(
    app: FastAPI, client: httpx.AsyncClient, account: Account, clock: Clock
) -> None:
    _, codes = await enable_mfa(client, account, clock)

    first = await verify(client, await challenge(client, account), codes[0])
    assert first.status_code == 200, first.text
    again = await verify(client, await challenge(client, account), codes[0])
    assert_problem(again, 401, "INVALID_MFA_CODE")
    # Typed without the dash and in capitals, another one works.
    typed = codes[1].replace("-", "").upper()
    assert (await verify(client, await challenge(client, account), typed)).status_code == 200
    unused = await db_scalars(
        app,
        select(RecoveryCode).where(
            RecoveryCode.user_id == uuid.UUID(account.id), RecoveryCode.used_at.is_(None)
        ),
    )
    assert len(unused) == 8


async def test_new_recovery_codes_replace_the_old_ones(
    client: httpx.AsyncClient, account: Account, clock: Clock
) -> None:
    secret, old_codes = await enable_mfa(client, account, clock)
    url = "/api/v1/auth/mfa/recovery-codes"

    wrong = await client.post(
        url, headers=account.headers, json={"password": PASSWORD, "code": "999999"}
    )
    assert_problem(wrong, 401, "INVALID_MFA_CODE")
    response = await client.post(
        url, headers=account.headers, json={"password": PASSWORD, "code": code(secret, clock, 1)}
    )
    assert response.status_code == 200, response.text
    new_codes = response.json()["recovery_codes"]
    assert len(new_codes) == 10
    assert not set(new_codes) & set(old_codes)

    old = await verify(client, await challenge(client, account), old_codes[0])
    assert_problem(old, 401, "INVALID_MFA_CODE")
    assert (await verify(client, await challenge(client, account), new_codes[0])).status_code == 200


# Turning it off -----------------------------------------------------------------------------


async def test_disabling_mfa_needs_the_password_and_a_code(
    app: FastAPI, client: httpx.AsyncClient, account: Account, clock: Clock
) -> None:
    secret, codes = await enable_mfa(client, account, clock)
    clock.advance_steps(1)
    current = code(secret, clock)

    no_password = await client.post(DISABLE, headers=account.headers, json={"code": current})
    assert_problem(no_password, 422, "VALIDATION_ERROR")
    wrong_password = await client.post(
        DISABLE, headers=account.headers, json={"password": "not-" + PASSWORD, "code": current}
    )
    assert_problem(wrong_password, 403, "WRONG_PASSWORD")
    wrong_code = await client.post(
        DISABLE, headers=account.headers, json={"password": PASSWORD, "code": "123456"}
    )
    assert_problem(wrong_code, 401, "INVALID_MFA_CODE")
    assert (await client.get(ME, headers=account.headers)).json()["mfa_enabled"] is True

    response = await client.post(
        DISABLE, headers=account.headers, json={"password": PASSWORD, "code": current}
    )
    assert response.status_code == 204, response.text
    assert (await client.get(ME, headers=account.headers)).json()["mfa_enabled"] is False
    user = await db_user(app, account.id)
    assert (user.mfa_secret, user.mfa_enabled_at, user.mfa_last_step) == (None, None, None)
    assert await db_scalars(app, select(RecoveryCode).where(RecoveryCode.user_id == user.id)) == []
    assert await audit_count(app, "mfa.disabled", account.id) == 1

    plain = await client.post(
        "/api/v1/auth/token", data={"username": account.email, "password": PASSWORD}
    )
    assert set(plain.json()) == {"access_token", "refresh_token", "token_type", "expires_in"}
    # Nothing is left to turn off.
    again = await client.post(
        DISABLE, headers=account.headers, json={"password": PASSWORD, "code": codes[0]}
    )
    assert_problem(again, 409, "MFA_NOT_ENABLED")


async def test_one_code_used_twice_at_once_lets_only_one_login_through(
    client: httpx.AsyncClient, account: Account, clock: Clock
) -> None:
    secret, codes = await enable_mfa(client, account, clock)
    clock.advance_steps(1)
    for value in (code(secret, clock), codes[0]):
        tokens = [await challenge(client, account) for _ in range(2)]
        responses = await asyncio.gather(*(verify(client, token, value) for token in tokens))
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200, 401], [response.text for response in responses]


async def test_wrong_codes_count_towards_the_account_lockout(
    auth_settings: Callable[..., Settings], start_app: StartApp, clock: Clock
) -> None:
    """A stolen password plus a challenge token does not buy minutes of code guessing."""
    _app, client = await start_app(auth_settings(lockout_threshold=3, lockout_base_seconds=30))
    account = await register(client)
    secret, _ = await enable_mfa(client, account, clock)
    mfa_token = await challenge(client, account)
    for _ in range(3):
        assert_problem(await verify(client, mfa_token, "000000"), 401, "INVALID_MFA_CODE")
    # Locked now: even the right code, and the password step too, are refused.
    assert_problem(await verify(client, mfa_token, code(secret, clock)), 429, "ACCOUNT_LOCKED")
    password_step = await client.post(
        "/api/v1/auth/token", data={"username": account.email, "password": PASSWORD}
    )
    assert_problem(password_step, 429, "ACCOUNT_LOCKED")
