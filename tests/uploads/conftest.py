"""A real ``tezgah serve`` for the tus tests (tuspy speaks HTTP through ``requests``), on a free
port with its own SQLite database, small upload limits and cheap Argon2; always killed."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tusclient.uploader import Uploader

from tests.auth.conftest import FAST_AUTH_SETTINGS, PASSWORD
from tezgah.core import migrate
from tezgah.core.config import Settings

MAX_BYTES = 2 * 1024 * 1024
QUOTA_BYTES = 3 * 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
BIN = Path(sys.executable).parent


class Sha256Uploader(Uploader):
    """tuspy sends SHA-1 checksums by default; this server speaks SHA-256."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def checksum_header(data: bytes) -> str:
    return "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    var_dir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def uploads_url(self) -> str:
        return f"{self.url}/api/v1/uploads"

    @property
    def database(self) -> Path:
        return self.var_dir / "tezgah.sqlite3"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEZGAH_")}
        env.update(
            {f"TEZGAH_{key.upper()}": str(value) for key, value in FAST_AUTH_SETTINGS.items()}
        )
        env.update(
            {
                "TEZGAH_ENV": "test",
                "TEZGAH_VAR_DIR": str(self.var_dir),
                "TEZGAH_DATABASE_URL": f"sqlite+aiosqlite:///{self.database}",
                "TEZGAH_SECRET_KEY": "test-secret-key-0123456789abcdef0123",
                "TEZGAH_LOG_LEVEL": "WARNING",
                "TEZGAH_UPLOAD_MAX_BYTES": str(MAX_BYTES),
                "TEZGAH_UPLOAD_QUOTA_BYTES": str(QUOTA_BYTES),
            }
        )
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        return env

    def start(self) -> None:
        if not self.database.exists():
            migrate.upgrade(f"sqlite+aiosqlite:///{self.database}")
        self.port = _free_port()
        self.process = subprocess.Popen(
            [str(BIN / "tezgah"), "serve", "--port", str(self.port)],
            env=self.environment(),
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tezgah serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("tezgah serve did not become healthy")

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            self.process = None

    def part_file(self, upload_url: str) -> Path:
        upload_id = uuid.UUID(upload_url.rstrip("/").rsplit("/", 1)[1])
        return self.var_dir / "uploads" / f"{upload_id.hex}.part"


@dataclass
class Person:
    headers: dict[str, str]
    workspace_id: str

    def tus(self, **extra: str) -> dict[str, str]:
        return {**self.headers, **TUS, **extra}

    @property
    def metadata(self) -> dict[str, str]:
        return {"workspace_id": self.workspace_id, "filename": "part.FCStd"}


def start_server(var_dir: Path) -> Server:
    server = Server(var_dir)
    server.start()
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("tus") / "var")
    try:
        yield running
    finally:
        running.stop()


def sign_up(base_url: str) -> Person:
    email = f"tus-{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=base_url, timeout=10) as http:
        created = http.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "display_name": "Tus"},
        )
        assert created.status_code == 201, created.text
        token = http.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        workspaces = http.get("/api/v1/workspaces", headers=headers).json()["items"]
        personal = next(w["id"] for w in workspaces if w["is_personal"])
    return Person(headers, personal)


@pytest.fixture
def person(server: Server) -> Person:
    return sign_up(server.url)


@pytest.fixture
def other_person(server: Server) -> Person:
    return sign_up(server.url)


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(**FAST_AUTH_SETTINGS)
