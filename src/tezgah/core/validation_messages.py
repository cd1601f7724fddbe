"""Pydantic validation messages by error type, in the caller's language.

Pydantic's own messages are English only; each error ``type`` maps to a message id in the
catalogs with the same ``ctx`` placeholders. Unknown types fall back to a generic message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tezgah.core.i18n import N_, translate

LOCATION_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})

MESSAGES: dict[str, str] = {
    "missing": N_("This field is required."),
    "extra_forbidden": N_("This field is not allowed."),
    "string_type": N_("Enter text."),
    "string_too_short": N_("Enter at least {min_length} characters."),
    "string_too_long": N_("Enter at most {max_length} characters."),
    "string_pattern_mismatch": N_("The value does not match the expected format."),
    "string_unicode": N_("Enter valid Unicode text."),
    "int_type": N_("Enter a whole number."),
    "int_parsing": N_("Enter a whole number."),
    "int_from_float": N_("Enter a whole number, not a fraction."),
    "float_type": N_("Enter a number."),
    "float_parsing": N_("Enter a number."),
    "finite_number": N_("Enter a finite number."),
    "bool_type": N_("Enter true or false."),
    "bool_parsing": N_("Enter true or false."),
    "greater_than": N_("Enter a value greater than {gt}."),
    "greater_than_equal": N_("Enter a value greater than or equal to {ge}."),
    "less_than": N_("Enter a value less than {lt}."),
    "less_than_equal": N_("Enter a value less than or equal to {le}."),
    "multiple_of": N_("Enter a multiple of {multiple_of}."),
    "too_short": N_("Give at least {min_length} items."),
    "too_long": N_("Give at most {max_length} items."),
    "list_type": N_("Enter a list."),
    "tuple_type": N_("Enter a list."),
    "set_type": N_("Enter a list of unique values."),
    "dict_type": N_("Enter an object."),
    "model_type": N_("Enter an object."),
    "model_attributes_type": N_("Enter an object."),
    "literal_error": N_("Enter one of: {expected}."),
    "enum": N_("Enter one of: {expected}."),
    "json_invalid": N_("The request body is not valid JSON."),
    "json_type": N_("Enter valid JSON."),
    "value_error": N_("The value is invalid."),
    "assertion_error": N_("The value is invalid."),
    "datetime_type": N_("Enter a date and time."),
    "datetime_parsing": N_("Enter a date and time in ISO 8601 format."),
    "datetime_from_date_parsing": N_("Enter a date and time in ISO 8601 format."),
    "date_type": N_("Enter a date."),
    "date_parsing": N_("Enter a date in YYYY-MM-DD format."),
    "date_from_datetime_parsing": N_("Enter a date in YYYY-MM-DD format."),
    "time_type": N_("Enter a time."),
    "time_parsing": N_("Enter a time in HH:MM[:SS] format."),
    "timezone_aware": N_("Include a time zone."),
    "timezone_naive": N_("Leave out the time zone."),
    "datetime_future": N_("Enter a time in the future."),
    "datetime_past": N_("Enter a time in the past."),
    "uuid_type": N_("Enter a UUID."),
    "uuid_parsing": N_("Enter a valid UUID."),
    "url_type": N_("Enter a URL."),
    "url_parsing": N_("Enter a valid URL."),
    "url_scheme": N_("The URL scheme must be one of: {expected_schemes}."),
    "url_too_long": N_("Enter a URL of at most {max_length} characters."),
    "decimal_type": N_("Enter a decimal number."),
    "decimal_parsing": N_("Enter a decimal number."),
    "decimal_max_digits": N_("Enter at most {max_digits} digits."),
    "decimal_max_places": N_("Enter at most {decimal_places} decimal places."),
    "bytes_type": N_("Enter binary data."),
    "bytes_too_short": N_("Enter at least {min_length} bytes."),
    "bytes_too_long": N_("Enter at most {max_length} bytes."),
    "none_required": N_("This field must be empty."),
    "union_tag_invalid": N_("Unknown kind '{tag}'. Expected one of: {expected_tags}."),
    "union_tag_not_found": N_("The field '{discriminator}' is required."),
    "frozen_field": N_("This field cannot be changed."),
    "iterable_type": N_("Enter a list."),
    "is_instance_of": N_("The value has the wrong type."),
}
FALLBACK_MESSAGE = N_("The value is invalid.")
EMAIL_MESSAGE = N_("Enter a valid email address.")


def field_key(location: Sequence[Any]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in LOCATION_SOURCES:
        parts = parts[1:]
    return ".".join(parts) or "body"


def translate_validation_error(error: Mapping[str, Any], language: str | None = None) -> str:
    error_type = str(error.get("type", ""))
    ctx = {key: _ctx_text(value) for key, value in (error.get("ctx") or {}).items()}
    if error_type == "value_error" and "email" in str(error.get("msg", "")).lower():
        return translate(EMAIL_MESSAGE, language)
    message_id = MESSAGES.get(error_type, FALLBACK_MESSAGE)
    return translate(message_id, language, **ctx)


def translate_validation_errors(
    errors: Iterable[Mapping[str, Any]], language: str | None = None
) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for error in errors:
        messages = result.setdefault(field_key(error.get("loc", ())), [])
        message = translate_validation_error(error, language)
        if message not in messages:
            messages.append(message)
    return result


def _ctx_text(value: Any) -> str:
    return str(value)
