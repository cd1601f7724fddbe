"""OpenTelemetry tracing for FastAPI, SQLAlchemy and outgoing HTTP (httpx).

Only imported when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set: otherwise no OpenTelemetry module is
loaded and no middleware is added, so tracing costs nothing when it is off. The exporter reads the
standard ``OTEL_*`` variables (endpoint, headers, service name).
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy.ext.asyncio import AsyncEngine

from tezgah import __version__
from tezgah.core.config import Settings

_provider: TracerProvider | None = None


def tracer_provider() -> TracerProvider:
    """One provider per process, exporting over OTLP/HTTP in batches."""
    global _provider
    if _provider is None:
        resource = Resource.create(
            {
                "service.name": os.environ.get("OTEL_SERVICE_NAME", "tezgah"),
                "service.version": __version__,
            }
        )
        _provider = TracerProvider(resource=resource)
        _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(_provider)
        HTTPXClientInstrumentor().instrument(tracer_provider=_provider)
    return _provider


def setup_tracing(app: FastAPI, settings: Settings) -> None:
    provider = tracer_provider()
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls="/health$,/metrics$"
    )
    app.state.tracing = True


def instrument_engine(engine: AsyncEngine) -> None:
    # The instrumentation declares "sqlalchemy < 2.1" and, without skip_dep_check, logs an error
    # and instruments nothing on SQLAlchemy 2.1 (which it handles: engine events are unchanged).
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, tracer_provider=tracer_provider(), skip_dep_check=True
    )


def flush() -> None:
    if _provider is not None:
        _provider.force_flush()
