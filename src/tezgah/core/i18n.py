"""Languages: gettext catalogs (Babel ``.po`` files) and the caller's language per request.

Message ids are English sentences marked with ``_()`` (translate now) or ``N_()`` (mark for
extraction, translate later). Placeholders use ``{name}`` and are filled after translation.
The catalogs are read with Babel at first use; there is no compile step to forget.
"""

from __future__ import annotations

import functools
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

SUPPORTED_LANGUAGES: tuple[str, ...] = ("en", "tr")
DEFAULT_LANGUAGE = "en"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"

_current_language: ContextVar[str] = ContextVar("tezgah_language", default=DEFAULT_LANGUAGE)


@cache
def catalog(language: str) -> dict[str, str]:
    """msgid -> msgstr for one language; untranslated entries are left out (fall back to msgid)."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        parsed = read_po(handle, locale=language)
    return {
        str(message.id): str(message.string)
        for message in parsed
        if message.id and isinstance(message.id, str) and message.string
    }


def N_(message: str) -> str:  # noqa: N802 - the gettext convention
    """Mark a message for extraction without translating it yet."""
    return message


def translate(message: str, language: str | None = None, **params: Any) -> str:
    text = catalog(language or get_language()).get(message, message)
    if params:
        try:
            return text.format(**params)
        except (KeyError, IndexError, ValueError):
            # A broken translation must never turn an error message into a 500.
            return message.format(**params)
    return text


def _(message: str, **params: Any) -> str:
    return translate(message, None, **params)


def get_language() -> str:
    return _current_language.get()


def set_language(language: str) -> None:
    _current_language.set(language if language in SUPPORTED_LANGUAGES else DEFAULT_LANGUAGE)


def _parse_quality(raw: str) -> float:
    try:
        quality = float(raw)
    except ValueError:
        return 0.0
    return quality if 0.0 <= quality <= 1.0 else 0.0


def negotiate_language(accept_language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """Pick the best supported language from an ``Accept-Language`` header (RFC 9110 q-values)."""
    if not accept_language:
        return default
    if len(accept_language) > MAX_CACHED_HEADER_LENGTH:
        return _negotiate(accept_language, default)
    return _negotiate_cached(accept_language, default)


# Browsers send a handful of distinct headers: parse each once.
MAX_CACHED_HEADER_LENGTH = 256


@functools.lru_cache(maxsize=512)
def _negotiate_cached(accept_language: str, default: str) -> str:
    return _negotiate(accept_language, default)


def _negotiate(accept_language: str, default: str) -> str:
    best_language, best_quality = default, 0.0
    for part in accept_language.split(",")[:20]:
        tag, _sep, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            quality = _parse_quality(params[2:])
        # ASCII lower-casing: locale-aware mapping would turn "TR" into "tr" but "I" into "ı".
        primary = tag.strip().split("-")[0].encode("ascii", "ignore").decode().lower()
        if primary == "*":
            primary = default
        # Strictly greater: earlier entries win ties, and q=0 means "not acceptable".
        if primary in SUPPORTED_LANGUAGES and quality > best_quality:
            best_language, best_quality = primary, quality
    return best_language
