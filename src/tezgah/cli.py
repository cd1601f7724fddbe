"""The ``tezgah`` command: serve, database migrations, demo, doctor."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
import uvicorn

from tezgah.core import migrate
from tezgah.core.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tezgah.auth.models import User

T = TypeVar("T")
app = typer.Typer(help="tezgah: a self-hostable FreeCAD server.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")
users_app = typer.Typer(
    help="Accounts, for operators (the API does the rest).", no_args_is_help=True
)
app.add_typer(users_app, name="users")


def _prepare_multiprocess_metrics(workers: int) -> None:
    """Several workers share metrics through files in one directory, emptied at start."""
    if workers <= 1:
        return
    directory = get_settings().var_dir / "prometheus"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory.resolve())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    proxy_headers: Annotated[bool, typer.Option(help="Trust X-Forwarded-* headers.")] = False,
) -> None:
    """Serve the API (and later the web app) with uvicorn."""
    _prepare_multiprocess_metrics(workers)
    uvicorn.run(
        "tezgah.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=proxy_headers,
        access_log=False,
        log_config=None,
        server_header=False,
    )


@db_app.command()
def upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    migrate.upgrade(get_settings().effective_database_url, revision)
    typer.echo(f"database at {migrate.current(get_settings().effective_database_url) or 'base'}")


@db_app.command()
def downgrade(revision: Annotated[str, typer.Argument(help="Target, e.g. -1 or base.")]) -> None:
    """Revert migrations down to REVISION."""
    migrate.downgrade(get_settings().effective_database_url, revision)
    typer.echo(f"database at {migrate.current(get_settings().effective_database_url) or 'base'}")


@db_app.command()
def current() -> None:
    """Show the database's migration revision."""
    typer.echo(migrate.current(get_settings().effective_database_url) or "base (no migrations)")


@app.command()
def demo(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
) -> None:
    """Migrate, load demo data, and serve on the embedded default."""
    from tezgah.demo import load_demo_data

    settings = get_settings()
    migrate.upgrade(settings.effective_database_url)
    for line in asyncio.run(load_demo_data(settings)):
        typer.echo(line)
    typer.echo(f"tezgah demo: http://{host}:{port}/docs")
    if serve_after:
        serve(host=host, port=port, workers=1, proxy_headers=False)


async def _with_session(action: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``action`` in one committed transaction."""
    from tezgah.core.db import Database

    database = Database(get_settings())
    try:
        async with database.sessionmaker() as session, session.begin():
            return await action(session)
    finally:
        await database.dispose()


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="Email address (the login).")],
    display_name: Annotated[str, typer.Option(help="Name shown to others.")] = "Admin",
    superuser: Annotated[bool, typer.Option(help="Make a server administrator.")] = False,
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)
    ] = "",
) -> None:
    """Create a verified account (and its personal workspace)."""
    from tezgah.auth.provisioning import ProvisioningError, create_account

    settings = get_settings()

    async def action(session: AsyncSession) -> User:
        return await create_account(
            session,
            settings,
            email=email,
            password=password,
            display_name=display_name,
            superuser=superuser,
        )

    try:
        user = asyncio.run(_with_session(action))
    except ProvisioningError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"created {user.email}{' (superuser)' if superuser else ''}")


@users_app.command("set-superuser")
def users_set_superuser(
    email: Annotated[str, typer.Argument()],
    revoke: Annotated[bool, typer.Option("--revoke", help="Take the role away.")] = False,
) -> None:
    """Grant (or with --revoke take away) the server administrator role."""
    from tezgah.auth.provisioning import ProvisioningError, set_superuser

    async def action(session: AsyncSession) -> User:
        return await set_superuser(session, email, not revoke)

    try:
        asyncio.run(_with_session(action))
    except ProvisioningError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"{email}: superuser {'revoked' if revoke else 'granted'}")


@app.command()
def maintenance() -> None:
    """Housekeeping once: expired uploads, designs past the trash window, unused files."""
    from tezgah import maintenance as housekeeping
    from tezgah.core.db import Database
    from tezgah.core.resources import build_blob_store
    from tezgah.core.storage_s3 import S3BlobStore

    async def run() -> housekeeping.MaintenanceReport:
        settings = get_settings()
        database = Database(settings)
        blobs = build_blob_store(settings)
        if isinstance(blobs, S3BlobStore):
            await blobs.open()
        try:
            return await housekeeping.run_once(settings, database, blobs)
        finally:
            if isinstance(blobs, S3BlobStore):
                await blobs.close()
            await database.dispose()

    report = asyncio.run(run())
    typer.echo(
        f"expired uploads removed: {report.expired_uploads}; files of purged designs: "
        f"{report.freed_blobs} ({report.deleted_blobs} deleted, the rest still in use)"
    )


@app.command()
def doctor() -> None:
    """Check configuration and dependencies; exit 1 when something required fails."""
    from tezgah.core.doctor import Status, render, run_checks

    checks = asyncio.run(run_checks())
    typer.echo(render(checks))
    if any(check.status is Status.fail for check in checks):
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
