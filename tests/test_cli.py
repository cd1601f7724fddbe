"""The ``tezgah`` command: ``db upgrade|downgrade|current``, ``doctor``, ``demo`` and ``serve``.

Commands run through Typer's CliRunner with the environment pointing at a temporary ``var``
directory; ``serve`` runs as a real process answering HTTP.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from typer.testing import CliRunner, Result

from tests.conftest import REDIS_URL, create_postgres_database, drop_postgres_database
from tezgah.auth.provisioning import DEMO_EMAIL, DEMO_PASSWORD, DEMO_TEAM
from tezgah.cli import app
from tezgah.core import migrate
from tezgah.core.config import MIN_PRODUCTION_SECRET_LENGTH, get_settings

HEAD = ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_current_head() or "?"
TEZGAH = Path(sys.executable).with_name("tezgah")
GOOD_SECRET = "cli-test-secret-" + "x" * MIN_PRODUCTION_SECRET_LENGTH
USER_PASSWORD = "Kalem-Tezgah-8142"
runner = CliRunner()


def unused_port() -> int:
    """A local port nothing listens on (bound, then released): for servers and for refusals."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No TEZGAH_ variable from outside, no .env, settings read afresh for every command."""
    for name in list(os.environ):
        if name.upper().startswith("TEZGAH_") or name == "PROMETHEUS_MULTIPROC_DIR":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    directory = tmp_path / "var"
    monkeypatch.setenv("TEZGAH_VAR_DIR", str(directory))
    # Cheap password hashing: these tests are about the commands, not Argon2's cost.
    monkeypatch.setenv("TEZGAH_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("TEZGAH_ARGON2_MEMORY_COST_KIB", "1024")
    get_settings.cache_clear()
    yield directory
    get_settings.cache_clear()


def sqlite_url(var_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{(var_dir / 'tezgah.sqlite3').as_posix()}"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    get_settings.cache_clear()
    try:
        return runner.invoke(app, list(args), env=env)
    finally:
        get_settings.cache_clear()


def doctor_lines(output: str) -> dict[str, tuple[str, str]]:
    """``[OK  ] database  detail`` lines as {name: (status, detail)}."""
    lines: dict[str, tuple[str, str]] = {}
    for line in output.splitlines():
        match = re.fullmatch(r"\[(OK  |WARN|FAIL)\] (\S+)\s+(.*)", line)
        if match:
            lines[match.group(2)] = (match.group(1).strip(), match.group(3))
    return lines


@pytest.fixture
def postgres_database() -> Iterator[str]:
    name = f"tezgah_cli_{uuid.uuid4().hex[:10]}"
    url = asyncio.run(create_postgres_database(name))
    try:
        yield url
    finally:
        asyncio.run(drop_postgres_database(name))


# ---------------------------------------------------------------------------------------------
# db upgrade | current | downgrade
# ---------------------------------------------------------------------------------------------


def test_no_arguments_shows_help() -> None:
    result = invoke()
    for command in ("serve", "db", "users", "demo", "doctor"):
        assert re.search(rf"^\W*{command}\s", result.output, re.MULTILINE), result.output


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_db_upgrade_current_downgrade(
    backend: str, var_dir: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgres":
        url = request.getfixturevalue("postgres_database")
        env = {"TEZGAH_DATABASE_URL": url}
    else:
        url = sqlite_url(var_dir)
        env = {}
        assert not var_dir.exists()

    result = invoke("db", "current", env=env)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "base (no migrations)"

    result = invoke("db", "upgrade", env=env)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"database at {HEAD} (head)"
    assert migrate.current(url) == f"{HEAD} (head)"
    if backend == "sqlite":
        assert (var_dir / "tezgah.sqlite3").is_file()

    result = invoke("db", "current", env=env)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{HEAD} (head)"

    result = invoke("db", "downgrade", "base", env=env)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "database at base"
    assert migrate.current(url) == ""

    result = invoke("db", "current", env=env)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "base (no migrations)"

    result = invoke("db", "upgrade", HEAD, env=env)
    assert result.exit_code == 0, result.output
    assert migrate.current(url) == f"{HEAD} (head)"


def test_db_downgrade_needs_a_revision(var_dir: Path) -> None:
    result = invoke("db", "downgrade")
    assert result.exit_code == 2
    assert "Missing argument 'revision'" in result.output
    assert not (var_dir / "tezgah.sqlite3").exists()


def test_db_upgrade_to_an_unknown_revision_fails(var_dir: Path) -> None:
    result = invoke("db", "upgrade", "no-such-revision")
    assert result.exit_code != 0
    assert "no-such-revision" in str(result.exception)
    assert migrate.current(sqlite_url(var_dir)) == ""


def test_db_commands_refuse_production_with_the_default_secret(var_dir: Path) -> None:
    result = invoke("db", "upgrade", env={"TEZGAH_ENV": "production"})
    assert result.exit_code == 1
    assert "TEZGAH_SECRET_KEY" in str(result.exception)
    assert not (var_dir / "tezgah.sqlite3").exists()

    good = {"TEZGAH_ENV": "production", "TEZGAH_SECRET_KEY": GOOD_SECRET}
    result = invoke("db", "upgrade", env=good)
    assert result.exit_code == 0, result.output
    assert migrate.current(sqlite_url(var_dir)) == f"{HEAD} (head)"


# ---------------------------------------------------------------------------------------------
# doctor
# ---------------------------------------------------------------------------------------------


def test_doctor_reports_every_check_and_exits_0(var_dir: Path) -> None:
    migrate.upgrade(sqlite_url(var_dir))
    result = invoke("doctor", env={"TEZGAH_SECRET_KEY": GOOD_SECRET})
    assert result.exit_code == 0, result.output
    checks = doctor_lines(result.output)
    assert list(checks) == [
        "configuration",
        "database",
        "migrations",
        "redis",
        "storage",
        "freecad",
    ]
    assert checks["configuration"] == ("OK", "environment development")
    assert checks["database"] == ("OK", sqlite_url(var_dir))
    assert checks["migrations"] == ("OK", f"at head {HEAD}")
    assert checks["redis"][0] == "OK"
    assert "not configured" in checks["redis"][1]
    assert checks["storage"] == ("OK", f"writable: {var_dir / 'blobs'}")
    assert checks["freecad"][0] == "OK"
    assert re.fullmatch(r"FreeCAD 0\.20\.\d+ with CAM \(Path\) workbench", checks["freecad"][1])
    assert result.output.rstrip().endswith("tezgah is ready.")


def test_doctor_warns_about_the_default_secret_and_missing_migrations(var_dir: Path) -> None:
    result = invoke("doctor")
    # Warnings are not failures.
    assert result.exit_code == 0, result.output
    checks = doctor_lines(result.output)
    assert checks["configuration"] == ("WARN", "environment development, default secret key")
    assert checks["migrations"][0] == "WARN"
    assert f"head is {HEAD}" in checks["migrations"][1]
    assert "tezgah db upgrade" in checks["migrations"][1]


def test_doctor_on_postgres_follows_the_migrations(var_dir: Path, postgres_database: str) -> None:
    env = {"TEZGAH_DATABASE_URL": postgres_database, "TEZGAH_REDIS_URL": REDIS_URL}
    result = invoke("doctor", env=env)
    assert result.exit_code == 0, result.output
    checks = doctor_lines(result.output)
    assert checks["database"][0] == "OK"
    assert checks["migrations"][0] == "WARN"
    assert checks["redis"][0] == "OK"
    assert re.fullmatch(r"version \d+\.\d+\.\d+", checks["redis"][1])

    migrate.upgrade(postgres_database)
    result = invoke("doctor", env=env)
    assert result.exit_code == 0, result.output
    assert doctor_lines(result.output)["migrations"] == ("OK", f"at head {HEAD}")


def test_doctor_fails_when_the_database_is_unreachable(var_dir: Path) -> None:
    port = unused_port()
    url = f"postgresql+asyncpg://tezgah:hunter2-password@127.0.0.1:{port}/tezgah"
    result = invoke("doctor", env={"TEZGAH_DATABASE_URL": url})
    assert result.exit_code == 1, result.output
    checks = doctor_lines(result.output)
    status, detail = checks["database"]
    assert status == "FAIL"
    assert f"127.0.0.1:{port}/tezgah" in detail
    assert "Connect" in detail  # ConnectionRefusedError / Connect call failed
    assert "hunter2-password" not in result.output
    # The other dependencies are still checked.
    assert checks["storage"][0] == "OK"
    assert "freecad" in checks
    assert result.output.rstrip().endswith("1 check(s) failed.")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("not a url", "TEZGAH_DATABASE_URL is not a database URL"),
        ("postgresql+asyncpg://tezgah:hunter2-password@db:port/x", "is not a database URL"),
        # The classic slip: PostgreSQL without '+asyncpg' asks for a driver tezgah does not use.
        ("postgresql://tezgah:hunter2-password@127.0.0.1/tezgah", "ModuleNotFoundError"),
        ("nosuchdialect://tezgah:hunter2-password@127.0.0.1/tezgah", "NoSuchModuleError"),
    ],
)
def test_doctor_reports_an_unusable_database_url(var_dir: Path, url: str, reason: str) -> None:
    result = invoke("doctor", env={"TEZGAH_DATABASE_URL": url})
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # a report, no traceback
    checks = doctor_lines(result.output)
    status, detail = checks["database"]
    assert status == "FAIL"
    assert reason in detail
    assert "hunter2-password" not in result.output
    assert checks["storage"][0] == "OK"
    assert "freecad" in checks


def test_doctor_fails_when_redis_is_configured_but_down(var_dir: Path) -> None:
    migrate.upgrade(sqlite_url(var_dir))
    port = unused_port()
    result = invoke("doctor", env={"TEZGAH_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    assert result.exit_code == 1, result.output
    checks = doctor_lines(result.output)
    assert checks["redis"][0] == "FAIL"
    assert str(port) in checks["redis"][1]
    assert checks["database"][0] == "OK"


def test_doctor_fails_when_storage_is_not_writable(var_dir: Path, tmp_path: Path) -> None:
    migrate.upgrade(sqlite_url(var_dir))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    result = invoke("doctor", env={"TEZGAH_STORAGE_DIR": str(blocker / "blobs")})
    assert result.exit_code == 1, result.output
    status, detail = doctor_lines(result.output)["storage"]
    assert status == "FAIL"
    assert "NotADirectoryError" in detail


def test_doctor_warns_when_freecad_is_missing(var_dir: Path, tmp_path: Path) -> None:
    migrate.upgrade(sqlite_url(var_dir))
    missing = tmp_path / "nowhere" / "freecadcmd-not-installed"
    result = invoke("doctor", env={"TEZGAH_FREECAD_COMMAND": str(missing)})
    assert result.exit_code == 0, result.output
    status, detail = doctor_lines(result.output)["freecad"]
    assert status == "WARN"
    assert "apt-get install freecad-python3" in detail


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (None, "missing or a known default"),
        ("change-me", "missing or a known default"),
        ("s" * (MIN_PRODUCTION_SECRET_LENGTH - 1), f"at least {MIN_PRODUCTION_SECRET_LENGTH}"),
    ],
)
def test_doctor_fails_the_configuration_in_production_without_a_real_secret(
    var_dir: Path, secret: str | None, reason: str
) -> None:
    env = {"TEZGAH_ENV": "production"}
    if secret is not None:
        env["TEZGAH_SECRET_KEY"] = secret
    result = invoke("doctor", env=env)
    assert result.exit_code == 1, result.output
    checks = doctor_lines(result.output)
    assert list(checks) == ["configuration"]
    status, detail = checks["configuration"]
    assert status == "FAIL"
    assert "TEZGAH_SECRET_KEY" in detail
    assert reason in detail
    if secret:
        assert secret not in result.output


def test_doctor_accepts_production_with_a_real_secret(var_dir: Path) -> None:
    migrate.upgrade(sqlite_url(var_dir))
    result = invoke("doctor", env={"TEZGAH_ENV": "production", "TEZGAH_SECRET_KEY": GOOD_SECRET})
    assert result.exit_code == 0, result.output
    assert doctor_lines(result.output)["configuration"] == ("OK", "environment production")
    assert GOOD_SECRET not in result.output


# ---------------------------------------------------------------------------------------------
# demo --no-serve
# ---------------------------------------------------------------------------------------------


def query(var_dir: Path, sql: str, *parameters: object) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(var_dir / "tezgah.sqlite3")
    try:
        return connection.execute(sql, parameters).fetchall()
    finally:
        connection.close()


def test_demo_without_serving_is_safe_to_run_twice(var_dir: Path) -> None:
    url = sqlite_url(var_dir)
    first = invoke("demo", "--no-serve", "--port", "8123")
    assert first.exit_code == 0, first.output
    lines = first.output.strip().splitlines()
    assert lines[-1] == "tezgah demo: http://127.0.0.1:8123/docs"
    assert f"demo account {DEMO_EMAIL} / {DEMO_PASSWORD} (superuser" in first.output
    assert migrate.current(url) == f"{HEAD} (head)"

    second = invoke("demo", "--no-serve")
    assert second.exit_code == 0, second.output
    assert second.output.strip().splitlines()[-1] == "tezgah demo: http://127.0.0.1:8000/docs"
    assert f"demo account {DEMO_EMAIL} exists" in second.output
    assert migrate.current(url) == f"{HEAD} (head)"

    # The first run committed; the second added nothing.
    assert query(var_dir, "SELECT email, is_superuser FROM users") == [(DEMO_EMAIL, 1)]
    assert query(var_dir, "SELECT name FROM workspaces WHERE is_personal = 0") == [(DEMO_TEAM,)]


# ---------------------------------------------------------------------------------------------
# users create | set-superuser
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def migrated_var_dir(var_dir: Path) -> Path:
    migrate.upgrade(sqlite_url(var_dir))
    return var_dir


def test_users_create_a_verified_superuser(migrated_var_dir: Path) -> None:
    result = invoke(
        "users", "create", "Ada@Example.com", "--display-name", "Ada", "--superuser",
        "--password", USER_PASSWORD,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "created Ada@Example.com (superuser)"
    rows = query(
        migrated_var_dir,
        "SELECT email_key, display_name, is_superuser, email_verified_at IS NOT NULL,"
        " password_hash FROM users",
    )
    assert len(rows) == 1
    email_key, display_name, superuser, verified, password_hash = rows[0]
    assert (email_key, display_name, superuser, verified) == ("ada@example.com", "Ada", 1, 1)
    assert isinstance(password_hash, str)
    assert password_hash.startswith("$argon2")
    assert USER_PASSWORD not in password_hash
    assert query(migrated_var_dir, "SELECT name, is_personal FROM workspaces") == [("Ada", 1)]


def test_users_create_asks_for_the_password_twice(migrated_var_dir: Path) -> None:
    get_settings.cache_clear()
    result = runner.invoke(
        app, ["users", "create", "bob@example.com"], input=f"{USER_PASSWORD}\n{USER_PASSWORD}\n"
    )
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "created bob@example.com" in result.output
    assert "(superuser)" not in result.output
    assert USER_PASSWORD not in result.output  # hidden input
    assert query(migrated_var_dir, "SELECT email, is_superuser FROM users") == [
        ("bob@example.com", 0)
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["taken@example.com", "--password", USER_PASSWORD], "exists already"),
        (["weak@example.com", "--password", "short"], "at least 10 characters"),
    ],
)
def test_users_create_refusals(migrated_var_dir: Path, arguments: list[str], message: str) -> None:
    first = invoke("users", "create", "taken@example.com", "--password", USER_PASSWORD)
    assert first.exit_code == 0, first.output
    result = invoke("users", "create", *arguments)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ")
    assert message in result.output
    assert query(migrated_var_dir, "SELECT email FROM users") == [("taken@example.com",)]


def test_users_set_superuser_grants_and_revokes(migrated_var_dir: Path) -> None:
    assert invoke("users", "create", "op@example.com", "--password", USER_PASSWORD).exit_code == 0

    def flag() -> object:
        return query(migrated_var_dir, "SELECT is_superuser FROM users")[0][0]

    result = invoke("users", "set-superuser", "OP@example.com")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "OP@example.com: superuser granted"
    assert flag() == 1

    result = invoke("users", "set-superuser", "op@example.com", "--revoke")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "op@example.com: superuser revoked"
    assert flag() == 0

    result = invoke("users", "set-superuser", "nobody@example.com")
    assert result.exit_code == 1
    assert result.output.strip() == "error: no account with nobody@example.com"


# ---------------------------------------------------------------------------------------------
# serve: a real process
# ---------------------------------------------------------------------------------------------


def server_environment(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("TEZGAH_") and name != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update({"TEZGAH_VAR_DIR": str(var_dir), "TEZGAH_ENV": "test", **extra})
    return env


async def _wait_for_health(process: subprocess.Popen[bytes], port: int) -> httpx.Response:
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
        while True:
            assert process.poll() is None, "the server exited before answering"
            try:
                response = await http.get("/health")
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                return response
            assert time.monotonic() < deadline, "no 200 from /health within 20 s"
            await asyncio.sleep(0.1)


def run_server(
    var_dir: Path, log_path: Path, *options: str, exercise: Callable[[int], None]
) -> tuple[int, str]:
    """Start ``tezgah serve``, wait for /health, run ``exercise(port)``, send SIGTERM.

    Returns the exit status and the server's output. The process (and any workers, in its own
    process group) is killed whatever happens.
    """
    port = unused_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(TEZGAH), "serve", "--port", str(port), *options],
            env=server_environment(var_dir),
            cwd=log_path.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            response = asyncio.run(_wait_for_health(process, port))
            assert response.json() == {"status": "ok"}
            exercise(port)
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=20)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
    return returncode, log_path.read_text(encoding="utf-8")


def assert_clean_exit(returncode: int, output: str) -> None:
    # uvicorn shuts down gracefully, then re-raises the signal it caught so the parent sees
    # "terminated by SIGTERM" (older versions exit 0); a crash would be 1 or another signal.
    assert returncode in (0, -signal.SIGTERM), output
    events = [line for line in output.splitlines() if line.startswith("{")]
    assert any('"event":"shutdown"' in line for line in events), output
    assert "Application shutdown complete" in output
    assert "Traceback" not in output
    assert not any('"level":"error"' in line for line in events), output


def test_serve_answers_health_and_stops_cleanly(migrated_var_dir: Path, tmp_path: Path) -> None:
    def exercise(port: int) -> None:
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert response.status_code == 200
        assert response.headers["x-request-id"]
        assert "server" not in response.headers  # --server-header is off

    returncode, output = run_server(migrated_var_dir, tmp_path / "server.log", exercise=exercise)
    assert_clean_exit(returncode, output)
    assert "Uvicorn running on http://127.0.0.1:" in output


def _health_count(port: int) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    pattern = r'tezgah_http_requests_total\{method="GET",route="/health",status="200"\} (\S+)'
    match = re.search(pattern, metrics)
    assert match, metrics
    return float(match.group(1))


def test_serve_with_workers_shares_metrics_through_fresh_files(
    migrated_var_dir: Path, tmp_path: Path
) -> None:
    metrics_dir = migrated_var_dir / "prometheus"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_999999.db"
    stale.write_bytes(b"left over by an earlier run")

    def exercise(port: int) -> None:
        assert not stale.exists(), "the metrics directory was not emptied at start"
        before = _health_count(port)
        for _ in range(10):
            assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        assert _health_count(port) == before + 10
        assert any(metrics_dir.glob("counter_*.db"))

    returncode, output = run_server(
        migrated_var_dir, tmp_path / "server.log", "--workers", "2", exercise=exercise
    )
    assert_clean_exit(returncode, output)
    started = set(re.findall(r"Started server process \[(\d+)\]", output))
    assert len(started) == 2, output


def test_serve_refuses_to_start_in_production_with_the_default_secret(
    var_dir: Path, tmp_path: Path
) -> None:
    port = unused_port()
    process = subprocess.Popen(
        [str(TEZGAH), "serve", "--port", str(port)],
        env=server_environment(var_dir, TEZGAH_ENV="production"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode != 0
    assert b"TEZGAH_SECRET_KEY" in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
