"""One error format for every failure: RFC 9457 problem details, localized.

Domains raise subclasses of :class:`AppError`; FastAPI's own errors (404, 405, 422, malformed JSON)
and anything unexpected are turned into the same shape by the handlers registered here.
"""

from __future__ import annotations

import errno
import socket
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as orm_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from tezgah.core import context
from tezgah.core.i18n import N_, translate
from tezgah.core.validation_messages import translate_validation_errors

PROBLEM_MEDIA_TYPE = "application/problem+json"
CONNECTION_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT}
)
# SQLite raises OperationalError for bad SQL too ("no such table", syntax errors): only these
# primary result codes mean "the database file cannot be used right now".
SQLITE_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
    }
)


class AppError(Exception):
    """Base of every error a client may see. Subclasses set status, code and message."""

    status_code: ClassVar[int] = 400
    error_code: ClassVar[str] = "BAD_REQUEST"
    title: ClassVar[str] = N_("Bad request")
    message: ClassVar[str] = N_("The request could not be processed.")

    def __init__(
        self,
        message: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        field_errors: Mapping[str, Sequence[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.message_id = message or self.message
        self.params = dict(params or {})
        self.field_errors = {key: list(value) for key, value in (field_errors or {}).items()}
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.message_id)

    def detail(self, language: str | None = None) -> str:
        return translate(self.message_id, language, **self.params)


class BadRequest(AppError):
    pass


class MalformedJSON(AppError):
    error_code = "MALFORMED_JSON"
    title = N_("Malformed JSON")
    message = N_("The request body is not valid JSON.")


class InvalidHost(AppError):
    error_code = "INVALID_HOST"
    title = N_("Invalid host")
    message = N_("The Host header is not one this server answers to.")


class CORSRefused(AppError):
    error_code = "CORS_REFUSED"
    title = N_("Bad request")
    message = N_("This origin, method or header is not allowed for cross-origin requests.")


class InvalidCursor(AppError):
    error_code = "INVALID_CURSOR"
    message = N_("The pagination cursor is invalid or belongs to another query.")


class InvalidSort(AppError):
    error_code = "INVALID_SORT"
    message = N_("Cannot sort by '{field}'. Allowed: {allowed}.")


class Unauthorized(AppError):
    status_code = 401
    error_code = "UNAUTHORIZED"
    title = N_("Unauthorized")
    message = N_("Authentication is required.")


class Forbidden(AppError):
    status_code = 403
    error_code = "FORBIDDEN"
    title = N_("Forbidden")
    message = N_("You do not have permission to do this.")


class NotFound(AppError):
    status_code = 404
    error_code = "NOT_FOUND"
    title = N_("Not found")
    message = N_("The requested resource was not found.")


class MethodNotAllowed(AppError):
    status_code = 405
    error_code = "METHOD_NOT_ALLOWED"
    title = N_("Method not allowed")
    message = N_("The method {method} is not allowed here.")


class Conflict(AppError):
    status_code = 409
    error_code = "CONFLICT"
    title = N_("Conflict")
    message = N_("The request conflicts with the current state of the resource.")


class RaceLost(Conflict):
    """Two requests raced for the same row or unique value; the loser retries or gives up."""

    message = N_("The resource was changed by another request. Try again.")


class PayloadTooLarge(AppError):
    status_code = 413
    error_code = "PAYLOAD_TOO_LARGE"
    title = N_("Payload too large")
    message = N_("The request body is larger than the limit of {limit} bytes.")


class UnsupportedMediaType(AppError):
    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"
    title = N_("Unsupported media type")
    message = N_("Send the request body as {expected}.")


class ValidationFailed(AppError):
    status_code = 422
    error_code = "VALIDATION_ERROR"
    title = N_("Validation failed")
    message = N_("Some fields are invalid.")


class RateLimited(AppError):
    status_code = 429
    error_code = "RATE_LIMITED"
    title = N_("Too many requests")
    message = N_("Too many requests. Try again in {retry_after} seconds.")


class InternalError(AppError):
    status_code = 500
    error_code = "INTERNAL_ERROR"
    title = N_("Internal server error")
    message = N_("Something went wrong on our side. Quote the request id when you report it.")


class ServiceUnavailable(AppError):
    status_code = 503
    error_code = "SERVICE_UNAVAILABLE"
    title = N_("Service unavailable")
    message = N_("The service is temporarily unavailable. Try again shortly.")


class DatabaseUnavailable(ServiceUnavailable):
    error_code = "DATABASE_UNAVAILABLE"
    message = N_("The database is unavailable. Try again shortly.")


class DependencyUnavailable(ServiceUnavailable):
    error_code = "DEPENDENCY_UNAVAILABLE"
    message = N_("A service tezgah depends on is unavailable: {dependency}.")


class HTTPStatusError(AppError):
    """Starlette/FastAPI HTTPExceptions for statuses without a dedicated class."""

    error_code = "HTTP_ERROR"
    title = N_("Request failed")
    message = N_("The request failed.")

    def __init__(self, status_code: int, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(headers=headers)
        self.status_code = status_code  # type: ignore[misc]


def problem_body(error: AppError, language: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:tezgah:problem:{error.error_code.lower().replace('_', '-')}",
        "title": translate(error.title, language),
        "status": error.status_code,
        "detail": error.detail(language),
        "error_code": error.error_code,
        # Always present, empty unless a field was at fault: clients never test for the key.
        "field_errors": error.field_errors or {},
        "request_id": context.get_request_id(),
    }
    body.update(error.extra)
    return body


def problem_response(error: AppError, language: str | None = None) -> JSONResponse:
    return JSONResponse(
        problem_body(error, language),
        status_code=error.status_code,
        headers=error.headers or None,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _from_http_exception(exc: StarletteHTTPException, request: Request) -> AppError:
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        return NotFound(headers=headers)
    if exc.status_code == 405:
        return MethodNotAllowed(params={"method": request.method}, headers=headers)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        return MalformedJSON(message=N_("The request body could not be parsed."), headers=headers)
    return HTTPStatusError(exc.status_code, headers=headers)


def _from_validation_error(exc: RequestValidationError) -> AppError:
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return MalformedJSON()
    return ValidationFailed(field_errors=translate_validation_errors(errors))


def is_connection_failure(exc: BaseException) -> bool:
    """A socket-level failure to reach a server (refused, unreachable, DNS, timeout)."""
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    return isinstance(exc, OSError) and exc.errno in CONNECTION_ERRNOS


def database_error_is_unavailability(exc: BaseException) -> bool:
    """True when a database error means "cannot reach the database", not a bad query."""
    if isinstance(exc, sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        code = getattr(exc.orig, "sqlite_errorcode", None)
        if isinstance(exc.orig, sqlite3.Error) and isinstance(code, int):
            return (code & 0xFF) in SQLITE_UNAVAILABLE_CODES
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return True
        return exc.orig is not None and is_connection_failure(exc.orig)
    return False


def to_app_error(exc: BaseException, request: Request | None = None) -> AppError | None:
    """Map known exception types to an AppError; ``None`` means "unexpected: a 500"."""
    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, RequestValidationError):
        return _from_validation_error(exc)
    if isinstance(exc, StarletteHTTPException) and request is not None:
        return _from_http_exception(exc, request)
    if isinstance(exc, sa_exc.SQLAlchemyError) and database_error_is_unavailability(exc):
        return DatabaseUnavailable(headers={"Retry-After": "5"})
    if isinstance(exc, sa_exc.IntegrityError | orm_exc.StaleDataError):
        # Two requests raced for the same row or unique value; the loser retries or gives up.
        return RaceLost()
    if _is_redis_connection_error(exc):
        return DependencyUnavailable(params={"dependency": "redis"}, headers={"Retry-After": "5"})
    return None


def _is_redis_connection_error(exc: BaseException) -> bool:
    from redis import exceptions as redis_exc

    return isinstance(exc, redis_exc.ConnectionError | redis_exc.TimeoutError)


async def _handle(request: Request, exc: Exception) -> Response:
    error = to_app_error(exc, request)
    if error is None:
        # Let the request-context middleware log the traceback and answer 500.
        raise exc
    return problem_response(error)


def install_exception_handlers(app: FastAPI) -> None:
    for exc_type in (
        AppError,
        RequestValidationError,
        StarletteHTTPException,
        sa_exc.SQLAlchemyError,
    ):
        app.add_exception_handler(exc_type, _handle)
    from redis import exceptions as redis_exc

    app.add_exception_handler(redis_exc.ConnectionError, _handle)
    app.add_exception_handler(redis_exc.TimeoutError, _handle)
