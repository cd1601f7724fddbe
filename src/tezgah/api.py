"""The one place that mounts every domain router under ``/api/v1``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from tezgah.auth.admin_router import router as admin_router
from tezgah.auth.dependencies import caller_key
from tezgah.auth.oidc_router import router as oidc_router
from tezgah.auth.router import router as auth_router
from tezgah.auth.workspace_router import router as workspace_router
from tezgah.core.ratelimit import limit_from_settings, rate_limit
from tezgah.designs.category_router import router as category_router
from tezgah.designs.review_router import router as review_router
from tezgah.designs.router import router as designs_router
from tezgah.designs.share_router import router as share_router
from tezgah.uploads.router import router as uploads_router

API_PREFIX = "/api/v1"

# Domain routers join here as they are built (designs, uploads, cam, jobs).
DOMAIN_ROUTERS: list[APIRouter] = [
    auth_router,
    oidc_router,
    workspace_router,
    admin_router,
    uploads_router,
    designs_router,
    review_router,
    category_router,
    share_router,
]


def mount_routers(app: FastAPI) -> None:
    # The general limit counts per caller: API key, signed-in user, or client address.
    api_dependencies = [
        Depends(rate_limit(limit_from_settings("rate_limit_default"), scope="api", key=caller_key))
    ]
    for router in DOMAIN_ROUTERS:
        app.include_router(router, prefix=API_PREFIX, dependencies=api_dependencies)
