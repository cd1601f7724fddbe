"""The ``tezgah`` command: serve, database migrations, demo, doctor."""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import Annotated

import typer
import uvicorn

from tezgah.core import migrate
from tezgah.core.config import get_settings

app = typer.Typer(help="tezgah: a self-hostable FreeCAD server.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")


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
