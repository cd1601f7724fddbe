"""Per-request context shared by logs, errors and metrics (contextvars, one task per request)."""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{8,128}$")

_request_id: ContextVar[str | None] = ContextVar("tezgah_request_id", default=None)
_user_id: ContextVar[str | None] = ContextVar("tezgah_user_id", default=None)


def new_request_id() -> str:
    # 32 random hex digits like a uuid4 hex, without building a UUID object per request.
    return secrets.token_hex(16)


def is_valid_request_id(value: str) -> bool:
    return REQUEST_ID_PATTERN.fullmatch(value) is not None


def get_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> None:
    _request_id.set(value)


def get_user_id() -> str | None:
    return _user_id.get()


def set_user_id(value: str | None) -> None:
    """The authenticated caller: every later log line of the request carries it."""
    _user_id.set(value)
