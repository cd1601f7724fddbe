"""``tezgah doctor``: check the configuration and every dependency, report in plain words."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from enum import StrEnum

from alembic.script import ScriptDirectory
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tezgah.core.config import Settings
from tezgah.core.db import Database
from tezgah.core.migrate import alembic_config
from tezgah.core.resources import build_blob_store

FREECAD_VERSION_SCRIPT = "import FreeCAD, sys; sys.stdout.write('.'.join(FreeCAD.Version()[:3]))"


class Status(StrEnum):
    ok = "ok"
    warn = "warn"
    fail = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


def check_settings() -> tuple[Settings | None, Check]:
    try:
        settings = Settings()
    except ValidationError as exc:
        return None, Check("configuration", Status.fail, "; ".join(e["msg"] for e in exc.errors()))
    except ValueError as exc:
        return None, Check("configuration", Status.fail, str(exc))
    detail = f"environment {settings.env.value}"
    if not settings.is_production and settings.secret_key.get_secret_value() == (
        "dev-secret-change-me"
    ):
        return settings, Check("configuration", Status.warn, detail + ", default secret key")
    return settings, Check("configuration", Status.ok, detail)


async def check_database(settings: Settings) -> list[Check]:
    try:
        url = make_url(settings.effective_database_url)
    except (ArgumentError, ValueError) as exc:
        # The message is fixed: the unparsable URL may hold a password.
        detail = f"TEZGAH_DATABASE_URL is not a database URL ({type(exc).__name__})"
        return [Check("database", Status.fail, detail)]
    shown = url.render_as_string(hide_password=True)
    try:
        # An unknown dialect or a driver that is not installed fails here, before connecting.
        database = Database(settings)
    except Exception as exc:
        return [Check("database", Status.fail, f"{shown}: {type(exc).__name__}: {exc}")]
    try:
        async with database.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            revision = await connection.run_sync(_current_revision)
    except Exception as exc:
        return [Check("database", Status.fail, f"{shown}: {type(exc).__name__}: {exc}")]
    finally:
        await database.dispose()
    head = ScriptDirectory.from_config(alembic_config(str(url))).get_current_head()
    schema = (
        Check("migrations", Status.ok, f"at head {head}")
        if revision == head
        else Check(
            "migrations",
            Status.warn,
            f"at {revision or 'none'}, head is {head}: run 'tezgah db upgrade'",
        )
    )
    return [Check("database", Status.ok, shown), schema]


def _current_revision(connection: object) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()  # type: ignore[arg-type]


async def check_redis(settings: Settings) -> Check:
    if not settings.redis_url:
        return Check("redis", Status.ok, "not configured: in-process cache, rate limits, events")
    from redis.asyncio import Redis

    client = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        info = await client.info("server")
    except Exception as exc:
        return Check("redis", Status.fail, f"{type(exc).__name__}: {exc}")
    finally:
        await client.aclose()
    return Check("redis", Status.ok, f"version {info.get('redis_version', '?')}")


async def check_storage(settings: Settings) -> Check:
    store = build_blob_store(settings)
    opener = getattr(store, "open", None)
    try:
        if opener is not None:
            await opener()
        await store.check_writable()
    except Exception as exc:
        return Check("storage", Status.fail, f"{type(exc).__name__}: {exc}")
    finally:
        closer = getattr(store, "close", None)
        if closer is not None:
            await closer()
    where = (
        f"s3://{settings.s3_bucket}" if settings.s3_bucket else str(settings.effective_storage_dir)
    )
    return Check("storage", Status.ok, f"writable: {where}")


def check_freecad(settings: Settings) -> Check:
    configured = settings.freecad_command
    command = str(configured) if configured.is_file() else shutil.which(configured.name)
    if command is None:
        return Check(
            "freecad",
            Status.warn,
            f"{configured} not found: apt-get install freecad-python3 (needed by CAM workers)",
        )
    try:
        result = subprocess.run(  # noqa: S603 - fixed command found on PATH
            [command, "-c", FREECAD_VERSION_SCRIPT],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return Check("freecad", Status.fail, f"{command} does not run: {type(exc).__name__}")
    version = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "?"
    path_module = settings.freecad_mod_dir / "Path"
    if not path_module.is_dir():
        return Check(
            "freecad", Status.warn, f"FreeCAD {version}, but no CAM workbench at {path_module}"
        )
    return Check("freecad", Status.ok, f"FreeCAD {version} with CAM (Path) workbench")


async def run_checks() -> list[Check]:
    settings, config_check = check_settings()
    checks = [config_check]
    if settings is None:
        return checks
    checks.extend(await check_database(settings))
    checks.append(await check_redis(settings))
    checks.append(await check_storage(settings))
    checks.append(await asyncio.to_thread(check_freecad, settings))
    return checks


def render(checks: list[Check]) -> str:
    marks = {Status.ok: "OK  ", Status.warn: "WARN", Status.fail: "FAIL"}
    width = max(len(check.name) for check in checks)
    lines = [
        f"[{marks[check.status]}] {check.name.ljust(width)}  {check.detail}" for check in checks
    ]
    failed = sum(check.status is Status.fail for check in checks)
    lines.append("")
    lines.append("tezgah is ready." if not failed else f"{failed} check(s) failed.")
    return "\n".join(lines)
