"""The one place that mounts every domain router under ``/api/v1``."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request

from tezgah.core.ratelimit import rate_limit

API_PREFIX = "/api/v1"


def _default_limit(request: Request) -> str:
    limit: str = request.app.state.resources.settings.rate_limit_default
    return limit


def mount_routers(app: FastAPI) -> None:
    """Domain routers join here as they are built (auth, designs, uploads, cam, jobs)."""
    api_dependencies = [Depends(rate_limit(_default_limit, scope="api"))]
    from tezgah.auth.router import router as auth_router

    domain_routers: list[object] = [auth_router]
    for router in domain_routers:
        app.include_router(router, prefix=API_PREFIX, dependencies=api_dependencies)  # type: ignore[arg-type]
