"""create_app(): settings, logging, middleware, error handlers, routers, lifespan."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

from tezgah import __version__, maintenance
from tezgah.api import API_PREFIX, mount_routers
from tezgah.auth.kit import AuthKit
from tezgah.core.config import Settings, get_settings
from tezgah.core.errors import install_exception_handlers
from tezgah.core.health import liveness_route
from tezgah.core.health import router as system_router
from tezgah.core.logging import configure_logging, get_logger
from tezgah.core.middleware import install_middleware
from tezgah.core.resources import open_resources
from tezgah.core.routing import PROBLEM_RESPONSES, TezgahRoute

log = get_logger("tezgah")
UPLOAD_PREFIXES = (f"{API_PREFIX}/uploads",)


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = await open_resources(settings)
        app.state.resources = resources
        app.state.auth = AuthKit.build(settings, resources.database, resources.cache)
        app.state.auth.mail.start()
        housekeeping = maintenance.start(
            settings, resources.database, resources.blobs, resources.cache
        )
        if getattr(app.state, "tracing", False):
            from tezgah.core.tracing import instrument_engine

            instrument_engine(resources.database.engine)
        log.info("startup", version=__version__, env=settings.env.value, **resources.describe())
        try:
            yield
        finally:
            await maintenance.stop(housekeeping)
            await app.state.auth.mail.stop()
            app.state.auth.close()
            await resources.close()
            log.info("shutdown")

    return lifespan


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI from the installed bundle: the docs work on a machine with no internet."""
    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path))

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="tezgah API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    app = FastAPI(
        title="tezgah",
        version=__version__,
        summary="Self-hostable FreeCAD server: versioned CAD files and verified G-code.",
        lifespan=_lifespan(settings),
        docs_url=None,
        redoc_url=None,
        responses=PROBLEM_RESPONSES,
        # FastAPI's built-in OpenTelemetry stays off: tracing.py instruments the app when an
        # OTLP endpoint is configured, and a disabled check costs nothing per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.route_class = TezgahRoute
    app.state.settings = settings
    install_exception_handlers(app)
    install_middleware(app, settings, exempt_body_prefixes=UPLOAD_PREFIXES)
    app.include_router(system_router)
    app.router.routes.insert(0, liveness_route)
    mount_routers(app)
    _mount_docs(app)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from tezgah.core.tracing import setup_tracing

        setup_tracing(app, settings)
    return app
