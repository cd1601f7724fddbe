"""Router defaults shared by every domain: JSON bodies must say they are JSON, and every route
documents the problem-details responses it can return (so clients and schemathesis know them)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from tezgah.core.errors import PROBLEM_MEDIA_TYPE, UnsupportedMediaType

JSON_MEDIA_TYPES = ("application/json",)


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of this API is answered."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:tezgah:problem:not-found"])
    title: str
    status: int
    detail: str
    error_code: str = Field(examples=["NOT_FOUND"])
    field_errors: dict[str, list[str]] = Field(
        description="Messages per field; empty unless the request had invalid fields.",
        examples=[{"limit": ["Enter a whole number."]}],
    )
    request_id: str | None = None


def problem_doc(description: str) -> dict[str, Any]:
    """An OpenAPI response entry for a problem-details answer (routers add their own)."""
    return {
        "description": description,
        "model": Problem,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


# Added by routers whose routes authenticate: who is calling, may they, does it clash.
AUTH_PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: problem_doc("Not authenticated, or the credentials are invalid or expired"),
    403: problem_doc("Authenticated, but not allowed to do this"),
    409: problem_doc("Conflicts with the current state"),
}

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem_doc("Bad request (malformed JSON, invalid cursor, ...)"),
    404: problem_doc("Not found"),
    413: problem_doc("Request body too large"),
    415: problem_doc("Unsupported media type"),
    422: problem_doc("Validation failed"),
    429: problem_doc("Too many requests"),
    500: problem_doc("Internal server error"),
    503: problem_doc("A dependency is unavailable"),
}


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in JSON_MEDIA_TYPES or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class TezgahRoute(APIRoute):
    """Refuses a JSON-body route's request whose body is declared as something else (415)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        expects_json = self.body_field is not None and not _has_form_body(self)
        if not expects_json:
            return handler

        async def checked_handler(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            has_body = request.headers.get("content-length", "0") != "0" or (
                "transfer-encoding" in request.headers
            )
            if has_body and content_type is not None and not _is_json(content_type):
                raise UnsupportedMediaType(params={"expected": "application/json"})
            return await handler(request)

        return checked_handler


def _has_form_body(route: APIRoute) -> bool:
    field = route.body_field
    if field is None:
        return False
    info = getattr(field, "field_info", None)
    return type(info).__name__ in {"Form", "File"}


def make_router(**kwargs: Any) -> APIRouter:
    return APIRouter(route_class=TezgahRoute, **kwargs)
