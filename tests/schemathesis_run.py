"""Fuzz the running app against its own OpenAPI schema with schemathesis (a CI quality gate).

Starts ``tezgah serve`` on a free port with a fresh SQLite database, runs every operation in the
schema through schemathesis, and exits non-zero on any 5xx or any response that the schema does
not describe (status code, content type, headers, body). Run: ``python -m tests.schemathesis_run``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)
BIN = Path(sys.executable).parent
FUZZ_EMAIL = "fuzz@example.com"
FUZZ_PASSWORD = "Fuzzing-the-tezgah-API-1"
# Operations that would end the fuzzer's own session half-way (they are covered by tests).
SESSION_ENDING = r"/api/v1/auth/(logout-all|me/deactivate|password/change)$"
SIGN_OUT = "DELETE /api/v1/auth/session"  # ends the login the fuzzer's token belongs to
STARTUP_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"tezgah serve exited early with code {server.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("tezgah serve did not become healthy in time")


def server_environment(var_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "TEZGAH_ENV": "test",
            "TEZGAH_VAR_DIR": str(var_dir),
            "TEZGAH_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'fuzz.sqlite3'}",
            "TEZGAH_LOG_LEVEL": "WARNING",
            # The fuzzer sends many requests from one address: keep it under the API limit.
            "TEZGAH_RATE_LIMIT_DEFAULT": "100000/minute",
            "TEZGAH_RATE_LIMIT_LOGIN_IP": "100000/minute",
            "TEZGAH_RATE_LIMIT_LOGIN_ACCOUNT": "100000/minute",
            "TEZGAH_RATE_LIMIT_REGISTER_IP": "100000/minute",
            "TEZGAH_RATE_LIMIT_REFRESH": "100000/minute",
            "TEZGAH_RATE_LIMIT_PASSWORD_RESET": "100000/minute",
            "TEZGAH_RATE_LIMIT_MFA": "100000/minute",
            # The fuzzer is not measuring Argon2: the cheapest parameters keep it quick.
            "TEZGAH_ARGON2_TIME_COST": "1",
            "TEZGAH_ARGON2_MEMORY_COST_KIB": "1024",
            "TEZGAH_ARGON2_PARALLELISM": "1",
        }
    )
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return env


def create_fuzz_account(env: dict[str, str]) -> None:
    """A superuser, so the admin operations are reached too, not only refused."""
    command = [str(BIN / "tezgah"), "users", "create", FUZZ_EMAIL, "--superuser"]
    subprocess.run([*command, "--password", FUZZ_PASSWORD], env=env, check=True)


def access_token(base_url: str) -> str:
    response = httpx.post(
        f"{base_url}/api/v1/auth/token",
        data={"username": FUZZ_EMAIL, "password": FUZZ_PASSWORD},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def run_schemathesis(base_url: str, token: str) -> int:
    command = [
        str(BIN / "schemathesis"),
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--exclude-path-regex",
        SESSION_ENDING,
        "--exclude-name",
        SIGN_OUT,
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        "60",
        # One worker: with two threads, CPython 3.11's AST constructor (hypothesis reads source
        # for its reports) can fail with "recursion depth mismatch", a crash of the tool itself.
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--suppress-health-check",
        "too_slow",
    ]
    return subprocess.run(command, check=False).returncode


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="tezgah-fuzz-") as temp:
        var_dir = Path(temp)
        env = server_environment(var_dir)
        subprocess.run([str(BIN / "tezgah"), "db", "upgrade"], env=env, check=True)
        create_fuzz_account(env)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([str(BIN / "tezgah"), "serve", "--port", str(port)], env=env)
        try:
            wait_until_healthy(base_url, server)
            return run_schemathesis(base_url, access_token(base_url))
        finally:
            server.terminate()
            server.wait(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
