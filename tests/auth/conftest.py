"""Fixtures of the identity tests: a real SMTP server (aiosmtpd), cheap Argon2 parameters, and
helpers that register and sign in people through the public API.

Every test here runs on both backends (SQLite + memory, PostgreSQL + Redis) like the core tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import update

from tezgah.auth.models import User
from tezgah.core.config import Settings
from tezgah.main import create_app

PASSWORD = "Tezgah-Test-Passw0rd!"
TOKEN_PATTERN = re.compile(r"token=([A-Za-z0-9_\-]+)")


@dataclass
class MailBox:
    """What the SMTP server received, newest last."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    async def wait_for(self, address: str, count: int = 1, within: float = 5.0) -> EmailMessage:
        """The ``count``-th mail to ``address``, waiting for the outbox sender to deliver it."""
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            received = self.to(address)
            if len(received) >= count:
                return received[count - 1]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no mail #{count} to {address} within {within}s")


def body_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def token_in(message: EmailMessage) -> str:
    match = TOKEN_PATTERN.search(body_of(message))
    assert match, body_of(message)
    return match.group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Controller, MailBox]]:
    mailbox = MailBox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[Controller, MailBox]) -> MailBox:
    return smtp_server[1]


FAST_AUTH_SETTINGS: dict[str, object] = {
    # Argon2 at its cheapest: the tests exercise the logic, the benchmark measures the cost.
    "argon2_time_cost": 1,
    "argon2_memory_cost_kib": 1024,
    "argon2_parallelism": 1,
    "mail_poll_seconds": 0.05,
    "rate_limit_default": "100000/minute",
    "rate_limit_login_ip": "100000/minute",
    "rate_limit_login_account": "100000/minute",
    "rate_limit_register_ip": "100000/minute",
    "rate_limit_refresh": "100000/minute",
    "rate_limit_password_reset": "100000/minute",
    "rate_limit_mfa": "100000/minute",
}


@pytest.fixture
def auth_settings(
    settings_factory: Callable[..., Settings], smtp_server: tuple[Controller, MailBox]
) -> Callable[..., Settings]:
    """Settings for identity tests; keyword arguments override."""
    controller, _ = smtp_server

    def build(**overrides: object) -> Settings:
        values = {
            **FAST_AUTH_SETTINGS,
            "smtp_host": "127.0.0.1",
            "smtp_port": controller.port,
            **overrides,
        }
        return settings_factory(**values)

    return build


@pytest.fixture
def settings(auth_settings: Callable[..., Settings]) -> Settings:
    return auth_settings()


def unique_email(name: str = "user") -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}@example.com"


@dataclass
class Account:
    id: str
    email: str
    password: str
    access_token: str
    refresh_token: str
    personal_workspace_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def register(
    client: httpx.AsyncClient,
    email_address: str | None = None,
    *,
    password: str = PASSWORD,
    display_name: str = "Test User",
    language: str = "en",
) -> Account:
    address = email_address or unique_email()
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "email": address,
            "password": password,
            "display_name": display_name,
            "language": language,
        },
    )
    assert response.status_code == 201, response.text
    user_id = response.json()["id"]
    tokens = await login(client, address, password)
    workspaces = await client.get(
        "/api/v1/workspaces", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    personal = ""
    if workspaces.status_code == 200:
        personal = next(w["id"] for w in workspaces.json()["items"] if w["is_personal"])
    return Account(
        user_id, address, password, tokens["access_token"], tokens["refresh_token"], personal
    )


async def login(client: httpx.AsyncClient, address: str, password: str = PASSWORD) -> Any:
    response = await client.post(
        "/api/v1/auth/token", data={"username": address, "password": password}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def set_user_flags(app: FastAPI, user_id: str, **values: object) -> None:
    """Change a user row directly (what an operator with database access would do)."""
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.id == uuid.UUID(user_id)).values(**values))


@pytest.fixture
async def account(client: httpx.AsyncClient) -> Account:
    return await register(client)


# ---------------------------------------------------------------------------------------------
# Accounts, tokens, sessions and MFA tests: more apps per test, clients from other addresses,
# database reads.
# ---------------------------------------------------------------------------------------------


def client_for(application: FastAPI, client_ip: str = "203.0.113.7") -> httpx.AsyncClient:
    """A client of ``application`` calling from ``client_ip`` (use it as ``async with``)."""
    transport = httpx.ASGITransport(app=application, client=(client_ip, 51000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


StartApp = Callable[..., Awaitable[tuple[FastAPI, httpx.AsyncClient]]]


@pytest.fixture
async def start_app(settings: Settings) -> AsyncIterator[StartApp]:
    """Start an app with its own settings (several may share one database), with a client;
    everything started is shut down at the end of the test. (``settings`` is built first so the
    databases exist before a test builds more settings inside the event loop.)"""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            app_settings: Settings, *, client_ip: str = "203.0.113.7"
        ) -> tuple[FastAPI, httpx.AsyncClient]:
            application = create_app(app_settings)
            await stack.enter_async_context(LifespanManager(application))
            http = await stack.enter_async_context(client_for(application, client_ip))
            return application, http

        yield start


async def db_scalars(application: FastAPI, statement: Any) -> list[Any]:
    """Run a SELECT in a fresh session of ``application``'s database."""
    async with application.state.resources.database.sessionmaker() as session:
        return list(await session.scalars(statement))


async def db_user(application: FastAPI, user_id: str) -> User:
    async with application.state.resources.database.sessionmaker() as session:
        user = await session.get(User, uuid.UUID(user_id))
    assert user is not None
    return user
