"""Fixtures of the design hub tests: an app on each backend with cheap Argon2, people with
their personal workspaces, and real FreeCAD files (made once per session by FreeCAD)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from tests.auth.conftest import FAST_AUTH_SETTINGS, Account, register
from tests.freecad.conftest import (  # noqa: F401 - fixtures used by the tests here
    design_bytes,
    design_path,
    freecad_files,
)
from tests.freecad.test_fcstd import design_with, make_png
from tezgah.auth.models import User
from tezgah.core.config import Settings

STL_TRIANGLE = (
    b"solid part\n facet normal 0 0 1\n  outer loop\n   vertex 0 0 0\n   vertex 1 0 0\n"
    b"   vertex 0 1 0\n  endloop\n endfacet\nendsolid part\n"
)
STEP_FILE = (
    b"ISO-10303-21;\nHEADER;\nFILE_DESCRIPTION(('tezgah'),'2;1');\nENDSEC;\nDATA;\nENDSEC;\n"
    b"END-ISO-10303-21;\n"
)


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(**FAST_AUTH_SETTINGS)


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> Account:
    return await register(client, display_name="Alice Çelik")


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> Account:
    return await register(client, display_name="Bob Işık")


@pytest.fixture
def fcstd_with_thumbnail(design_bytes: bytes) -> bytes:  # noqa: F811
    return design_with(design_bytes, ("thumbnails/Thumbnail.png", make_png(8, 8)))


async def make_superuser(app: FastAPI, account: Account) -> None:
    async with app.state.resources.database.sessionmaker() as session, session.begin():
        await session.execute(
            update(User).where(User.id == uuid.UUID(account.id)).values(is_superuser=True)
        )


async def create_design(
    client: httpx.AsyncClient, account: Account, **fields: Any
) -> dict[str, Any]:
    body = {"name": "Flanş Adaptörü", "visibility": "public", **fields}
    response = await client.post("/api/v1/designs", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def add_file(
    client: httpx.AsyncClient,
    account: Account,
    design_id: str,
    content: bytes,
    filename: str = "part.stl",
    message: str = "",
) -> httpx.Response:
    return await client.post(
        f"/api/v1/designs/{design_id}/versions",
        files={"file": (filename, content, "application/octet-stream")},
        data={"message": message},
        headers=account.headers,
    )
