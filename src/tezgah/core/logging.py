"""Structured JSON logs (structlog) with the request id on every line and secrets masked.

The standard library's loggers (uvicorn, SQLAlchemy, Alembic) go through the same processors, so
one log stream has one format.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from tezgah.core import context

MASK = "***"
# ``pin`` and ``otp`` only as a whole word, where "_" separates words too (``user_pin``,
# ``otp_code``) but letters do not (``spin``, ``footprint``).
SECRET_KEY_PATTERN = re.compile(
    r"(authorization|cookie|passw|secret|token|api[-_]?key|credential|(?<![a-z])pin(?![a-z])|"
    r"(?<![a-z])otp(?![a-z])|totp|private[-_]?key|signature)",
    re.IGNORECASE,
)
# Secrets embedded in free text: bearer tokens, JWTs, key=value pairs in query strings.
INLINE_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), MASK),
    (
        re.compile(
            r"(?i)([?&;\s\"']?(?:access_token|refresh_token|token|passw[a-z]*|api[-_]?key|"
            r"secret|signature|code|pin)=)[^&\s\"';]+"
        ),
        r"\1" + MASK,
    ),
)
MAX_DEPTH = 8
SCALAR_TYPES = frozenset({type(None), bool, int, float})


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    # Cached: log keys come from a small, fixed vocabulary and this runs for every key logged.
    return SECRET_KEY_PATTERN.search(key) is not None


def _may_hold_inline_secret(text: str) -> bool:
    """Every inline pattern needs one of these substrings; most logged strings have none."""
    if "=" in text or "eyJ" in text:
        return True
    lowered = text.lower()
    return "bearer" in lowered or "basic" in lowered


def mask_text(text: str) -> str:
    if not _may_hold_inline_secret(text):
        return text
    for pattern, replacement in INLINE_SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def mask_value(value: Any, depth: int = 0) -> Any:
    """Mask secrets anywhere in nested data: by key name, and inline in strings."""
    value_type = type(value)
    if value_type is str:
        return mask_text(value)
    if value_type in SCALAR_TYPES:
        return value
    if isinstance(value, str):  # str subclasses (enums) take the slow path
        return mask_text(value)
    if depth > MAX_DEPTH:
        # Too deep to inspect: never pass on data that was not checked for secrets.
        return MASK
    if isinstance(value, Mapping):
        return {
            key: (
                MASK if isinstance(key, str) and is_secret_key(key) else mask_value(item, depth + 1)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        # Header lists arrive as (name, value) pairs: mask by the pair's name.
        if len(value) == 2 and isinstance(value[0], str | bytes):
            name = value[0].decode("latin-1") if isinstance(value[0], bytes) else value[0]
            if is_secret_key(name):
                return (value[0], MASK) if isinstance(value, tuple) else [value[0], MASK]
        masked = [mask_value(item, depth + 1) for item in value]
        return tuple(masked) if isinstance(value, tuple) else masked
    return value


def mask_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Masks in place: the event dict is this log call's own copy."""
    for key, value in event_dict.items():
        if is_secret_key(key):
            event_dict[key] = MASK
        elif type(value) not in SCALAR_TYPES:
            event_dict[key] = mask_value(value, 1)
    return event_dict


def add_request_context(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Request id and user id from the request's own context variables: cheaper than binding
    them into structlog's context on every request, and they never leak between requests
    because each request sets them first."""
    request_id = context.get_request_id()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    user_id = context.get_user_id()
    if user_id is not None:
        event_dict.setdefault("user_id", user_id)
    return event_dict


def _drop_color_message(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates its message with ANSI colours; one copy is enough.
    event_dict.pop("color_message", None)
    return event_dict


LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
_threshold = {"level": logging.INFO}


def _prepare(_logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """First processor of tezgah's own loggers, fused because it runs on every request:
    drop below the level (one lookup), name the logger, add level, exc_info and timestamp."""
    level = LEVELS.get(method, logging.INFO)
    if level < _threshold["level"]:
        raise structlog.DropEvent
    name = event_dict.pop("logger_name", None)
    if name is not None:
        # Same key as the standard library's loggers get from ``add_logger_name``.
        event_dict["logger"] = name
    event_dict["level"] = LEVEL_NAMES[level]
    if method == "exception" and "exc_info" not in event_dict:
        event_dict["exc_info"] = True
    event_dict["timestamp"] = utc_timestamp()
    return event_dict


LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


def utc_timestamp() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def render_json(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> str:
    # orjson: several times faster than json.dumps; anything it cannot encode becomes str().
    return orjson.dumps(event_dict, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def enabled_for(level: int) -> bool:
    """Lets hot paths skip building a log call that the level would drop anyway."""
    return level >= _threshold["level"]


class StderrLogger:
    """Writes rendered lines to whatever ``sys.stderr`` is at call time (tests capture it)."""

    def msg(self, message: str) -> None:
        sys.stderr.write(message + "\n")

    debug = info = warning = warn = error = exception = critical = fatal = log = msg


def foreign_processors() -> list[Processor]:
    """For records from the standard library's loggers (uvicorn, SQLAlchemy, Alembic)."""
    return [
        structlog.stdlib.add_logger_name,
        add_request_context,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
        structlog.processors.format_exc_info,
        mask_secrets,
    ]


def own_processors() -> list[Processor]:
    return [
        _prepare,
        add_request_context,
        structlog.contextvars.merge_contextvars,
        structlog.processors.format_exc_info,
        mask_secrets,
    ]


def _renderer(json_output: bool) -> Processor:
    if json_output:
        return render_json
    return structlog.dev.ConsoleRenderer(colors=False)


_output = {"json": True}
ACCESS_LOGGER = "tezgah.access"


def write_access_line(fields: dict[str, Any]) -> None:
    """The per-request access line, on the hot path of every request.

    In JSON mode it is rendered here in one step instead of through the processor chain: its
    fields are all known and safe (method, route template, status, duration, client address,
    request id, user id), so there is nothing to mask, and this is a third of the cost of the
    general path. The line is the same as ``access_log.info`` writes.
    """
    if not _output["json"]:
        structlog.get_logger(logger_name=ACCESS_LOGGER).info("request", **fields)
        return
    line = {"event": "request", **fields}
    request_id = context.get_request_id()
    if request_id is not None:
        line["request_id"] = request_id
    user_id = context.get_user_id()
    if user_id is not None:
        line["user_id"] = user_id
    line["logger"] = ACCESS_LOGGER
    line["level"] = "info"
    line["timestamp"] = utc_timestamp()
    sys.stderr.write(orjson.dumps(line, default=str).decode() + "\n")


def configure_logging(level: str = "INFO", json_output: bool = True) -> None:
    """tezgah's own loggers render directly (no stdlib round trip: this runs on every request);
    the standard library's loggers go through the same processors via ``ProcessorFormatter``."""
    _threshold["level"] = logging.getLevelName(level.upper())
    _output["json"] = json_output
    renderer = _renderer(json_output)
    structlog.configure(
        processors=[*own_processors(), renderer],
        logger_factory=lambda *_args: StderrLogger(),
        wrapper_class=structlog.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # tezgah writes its own access log with the request id; uvicorn's would duplicate it.
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False
    # aiosqlite logs every statement with its parameters at DEBUG: tokens and hashes among them.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, root.level))


def get_logger(name: str | None = None) -> Any:
    """A structlog logger whose lines carry ``logger=<name>``."""
    if name is None:
        return structlog.get_logger()
    # ``logger`` itself is a parameter name of structlog.get_logger: bind under another key.
    return structlog.get_logger(logger_name=name)


def bind_log_context(**values: Any) -> None:
    """Attach values (e.g. ``user_id``) to every later log line of this request."""
    structlog.contextvars.bind_contextvars(**values)


def current_log_context() -> MutableMapping[str, Any]:
    return structlog.contextvars.get_contextvars()
