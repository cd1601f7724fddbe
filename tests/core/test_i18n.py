"""Translations: complete catalogs, every extracted message translated, Pydantic validation
messages in Turkish through a real route, Accept-Language negotiation, placeholders intact."""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
import uuid
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import pytest
from asgi_lifespan import LifespanManager
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from pydantic import (
    AnyUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    FutureDate,
    FutureDatetime,
    HttpUrl,
    Json,
    NaiveDatetime,
    PastDatetime,
    UrlConstraints,
    ValidationError,
    field_validator,
)

from tezgah.core import i18n
from tezgah.core.config import Settings
from tezgah.core.routing import make_router
from tezgah.core.validation_messages import EMAIL_MESSAGE, FALLBACK_MESSAGE, MESSAGES
from tezgah.main import create_app

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = ROOT / "src" / "tezgah"
BABEL_CFG = ROOT / "babel.cfg"
EXTRACTION_KEYWORDS: dict[str, Any] = {"_": None, "N_": None}
PLACEHOLDER = re.compile(r"\{(\w*)\}|%\((\w+)\)[sdifr]")


def catalog_path(language: str) -> Path:
    return SOURCE_DIR / "locale" / language / "LC_MESSAGES" / "messages.po"


@functools.cache
def load_catalog(language: str) -> Catalog:
    with catalog_path(language).open("rb") as handle:
        return read_po(handle, locale=language)


def entries(language: str) -> list[tuple[str, str, bool]]:
    """(msgid, msgstr, fuzzy) of every real message (the header entry left out)."""
    return [
        (str(message.id), str(message.string or ""), message.fuzzy)
        for message in load_catalog(language)
        if message.id
    ]


@functools.cache
def turkish_strings() -> dict[str, str]:
    return {msgid: msgstr for msgid, msgstr, _ in entries("tr")}


def turkish(msgid: str, **params: Any) -> str:
    return turkish_strings()[msgid].format(**params)


def placeholders(text: str) -> set[str]:
    return {brace or percent for brace, percent in PLACEHOLDER.findall(text)}


def babel_mapping() -> tuple[list[tuple[str, str]], dict[str, dict[str, Any]]]:
    """babel.cfg's method and options maps, as ``pybabel extract -F babel.cfg`` reads them."""
    with BABEL_CFG.open(encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle)  # type: ignore[no-untyped-call]
    return list(method_map), dict(options_map)


# ---------------------------------------------------------------------------------------------
# (a) the Turkish catalog is complete
# ---------------------------------------------------------------------------------------------


def test_turkish_catalog_has_no_untranslated_or_fuzzy_message() -> None:
    tr_entries = entries("tr")
    assert len(tr_entries) >= 50
    untranslated = [msgid for msgid, msgstr, _ in tr_entries if not msgstr.strip()]
    fuzzy = [msgid for msgid, _, is_fuzzy in tr_entries if is_fuzzy]
    assert not untranslated, f"untranslated in tr: {untranslated}"
    assert not fuzzy, f"fuzzy in tr: {fuzzy}"


def test_catalogs_have_the_same_message_ids() -> None:
    assert {m for m, _, _ in entries("en")} == {m for m, _, _ in entries("tr")}


# ---------------------------------------------------------------------------------------------
# (b) every message in the source is in the catalogs
# ---------------------------------------------------------------------------------------------


def extracted_message_ids() -> dict[str, str]:
    """msgid -> "file:line" of its first use, extracted the way tools/sync_catalogs.py does."""
    method_map, options_map = babel_mapping()
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        SOURCE_DIR, method_map, options_map, keywords=EXTRACTION_KEYWORDS
    ):
        msgid = message if isinstance(message, str) else message[0]
        found.setdefault(msgid, f"{filename}:{lineno}")
    return found


def test_babel_cfg_maps_python_sources() -> None:
    method_map, _options = babel_mapping()
    assert ("**.py", "python") in method_map


def test_every_extracted_message_is_translated_in_the_turkish_catalog() -> None:
    extracted = extracted_message_ids()
    # The source marks the error and validation messages: extraction must see them.
    assert "The requested resource was not found." in extracted
    assert MESSAGES["string_too_short"] in extracted
    assert len(extracted) >= 50
    translated = {msgid for msgid, msgstr, fuzzy in entries("tr") if msgstr and not fuzzy}
    missing = {msgid: where for msgid, where in extracted.items() if msgid not in translated}
    assert not missing, (
        "messages without a Turkish translation (run tools/sync_catalogs.py, then "
        f"tools/translate.py): {missing}"
    )
    english = {msgid for msgid, msgstr, _ in entries("en") if msgstr}
    assert not set(extracted) - english


def test_the_extraction_check_catches_a_new_message(tmp_path: Path) -> None:
    """The check above is only useful if extraction sees new ``_()`` and ``N_()`` calls."""
    module = tmp_path / "new_feature.py"
    module.write_text(
        "from tezgah.core.i18n import N_, _\n"
        "TITLE = N_('A brand new title nobody translated')\n"
        "def f() -> str:\n"
        "    return _('A brand new sentence nobody translated')\n",
        encoding="utf-8",
    )
    method_map, options_map = babel_mapping()
    found = {
        message
        for _file, _line, message, _comments, _context in extract_from_dir(
            tmp_path, method_map, options_map, keywords=EXTRACTION_KEYWORDS
        )
    }
    assert found == {
        "A brand new title nobody translated",
        "A brand new sentence nobody translated",
    }
    translated = {msgid for msgid, msgstr, _ in entries("tr") if msgstr}
    assert found - translated == found


# ---------------------------------------------------------------------------------------------
# Placeholders
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["tr", "en"])
def test_placeholders_match_between_msgid_and_msgstr(language: str) -> None:
    mismatched = {
        msgid: msgstr
        for msgid, msgstr, _ in entries(language)
        if msgstr and placeholders(msgid) != placeholders(msgstr)
    }
    assert not mismatched, f"placeholders differ in {language}: {mismatched}"
    assert any(placeholders(msgid) for msgid, _, _ in entries(language))


def test_placeholder_pattern_sees_both_styles() -> None:
    assert placeholders("Enter at least {min_length} characters.") == {"min_length"}
    assert placeholders("%(count)d files in %(name)s") == {"count", "name"}
    assert placeholders("no placeholders") == set()


def test_every_translation_formats_with_its_own_placeholders() -> None:
    for msgid, msgstr, _ in entries("tr"):
        params = {name: f"<{name}>" for name in placeholders(msgid)}
        if not params:
            assert i18n.translate(msgid, "tr") == msgstr
            continue
        text = i18n.translate(msgid, "tr", **params)
        assert text == msgstr.format(**params)
        for name in params:
            assert f"<{name}>" in text


def test_translate_falls_back_to_english_for_an_unknown_message() -> None:
    assert i18n.translate("Not in any catalog {x}.", "tr", x=1) == "Not in any catalog 1."
    assert i18n.translate("Authentication is required.", "xx") == "Authentication is required."
    assert i18n.translate("Authentication is required.", "tr") == turkish(
        "Authentication is required."
    )


# ---------------------------------------------------------------------------------------------
# (c) Pydantic validation messages in Turkish, through a real route
# ---------------------------------------------------------------------------------------------


class Color(enum.Enum):
    red = "red"
    blue = "blue"


class Inner(BaseModel):
    x: int


class Cat(BaseModel):
    kind: Literal["cat"]


class Dog(BaseModel):
    kind: Literal["dog"]


class Everything(BaseModel):
    """One field per Pydantic error type; every field has a valid default except ``required``."""

    model_config = ConfigDict(extra="forbid")

    required: str
    text: str = "ok"
    short: Annotated[str, Field(min_length=3)] = "abc"
    long: Annotated[str, Field(max_length=3)] = "abc"
    pattern: Annotated[str, Field(pattern=r"^[a-z]+$")] = "abc"
    int_type: int = 0
    int_parsing: int = 0
    int_from_float: int = 0
    float_type: float = 0
    float_parsing: float = 0
    finite: Annotated[float, Field(allow_inf_nan=False)] = 0
    bool_type: bool = False
    bool_parsing: bool = False
    gt: Annotated[int, Field(gt=0)] = 1
    ge: Annotated[int, Field(ge=1)] = 1
    lt: Annotated[int, Field(lt=10)] = 1
    le: Annotated[int, Field(le=10)] = 1
    multiple: Annotated[int, Field(multiple_of=5)] = 5
    few: Annotated[list[int], Field(min_length=2)] = [1, 2]
    many: Annotated[list[int], Field(max_length=2)] = [1]
    list_type: list[int] = []
    tuple_type: tuple[int, ...] = ()
    set_type: set[int] = set()
    dict_type: dict[str, int] = {}
    model_type: Inner | None = None
    literal: Literal["a", "b"] = "a"
    color: Color = Color.red
    json_type: Json[int] | None = None
    value: int = 0
    assertion: int = 0
    datetime_type: dt.datetime | None = None
    datetime_parsing: dt.datetime | None = None
    date_type: dt.date | None = None
    date_parsing: dt.date | None = None
    time_type: dt.time | None = None
    time_parsing: dt.time | None = None
    aware: AwareDatetime | None = None
    naive: NaiveDatetime | None = None
    future: FutureDatetime | None = None
    past: PastDatetime | None = None
    future_date: FutureDate | None = None
    uuid_type: uuid.UUID | None = None
    uuid_parsing: uuid.UUID | None = None
    url_type: HttpUrl | None = None
    url_parsing: HttpUrl | None = None
    url_scheme: HttpUrl | None = None
    url_long: Annotated[AnyUrl, UrlConstraints(max_length=20)] | None = None
    decimal_type: Decimal | None = None
    decimal_parsing: Decimal | None = None
    decimal_digits: Annotated[Decimal, Field(max_digits=3)] | None = None
    decimal_places: Annotated[Decimal, Field(decimal_places=1)] | None = None
    bytes_type: bytes | None = None
    bytes_short: Annotated[bytes, Field(min_length=3)] | None = None
    bytes_long: Annotated[bytes, Field(max_length=3)] | None = None
    none: None = None
    pet: Annotated[Cat | Dog, Field(discriminator="kind")] | None = None
    pet_without_kind: Annotated[Cat | Dog, Field(discriminator="kind")] | None = None
    iterable: Iterable[int] | None = None
    email: EmailStr | None = None

    @field_validator("value")
    @classmethod
    def _refuse_value(cls, value: int) -> int:
        raise ValueError("internal reason that must not reach the client")

    @field_validator("assertion")
    @classmethod
    def _refuse_assertion(cls, value: int) -> int:
        raise AssertionError("internal reason that must not reach the client")


# field -> (bad value, the Pydantic error type it triggers, the message's placeholder values).
# ``required`` is left out of the payload to trigger "missing"; "unknown" triggers extra_forbidden.
CASES: dict[str, tuple[Any, str, dict[str, Any]]] = {
    "unknown": (1, "extra_forbidden", {}),
    "text": (123, "string_type", {}),
    "short": ("a", "string_too_short", {"min_length": 3}),
    "long": ("abcdef", "string_too_long", {"max_length": 3}),
    "pattern": ("ABC", "string_pattern_mismatch", {}),
    "int_type": ([1], "int_type", {}),
    "int_parsing": ("abc", "int_parsing", {}),
    "int_from_float": (1.5, "int_from_float", {}),
    "float_type": ([1], "float_type", {}),
    "float_parsing": ("abc", "float_parsing", {}),
    "finite": ("inf", "finite_number", {}),
    "bool_type": ([1], "bool_type", {}),
    "bool_parsing": ("maybe", "bool_parsing", {}),
    "gt": (0, "greater_than", {"gt": 0}),
    "ge": (0, "greater_than_equal", {"ge": 1}),
    "lt": (10, "less_than", {"lt": 10}),
    "le": (11, "less_than_equal", {"le": 10}),
    "multiple": (7, "multiple_of", {"multiple_of": 5}),
    "few": ([1], "too_short", {"min_length": 2}),
    "many": ([1, 2, 3], "too_long", {"max_length": 2}),
    "list_type": ("x", "list_type", {}),
    "tuple_type": ("x", "tuple_type", {}),
    "set_type": ("x", "set_type", {}),
    "dict_type": ("x", "dict_type", {}),
    "model_type": ("x", "model_type", {}),
    "literal": ("c", "literal_error", {"expected": "'a' or 'b'"}),
    "color": ("green", "enum", {"expected": "'red' or 'blue'"}),
    "json_type": (123, "json_type", {}),
    "value": (1, "value_error", {}),
    "assertion": (1, "assertion_error", {}),
    "datetime_type": ([1], "datetime_type", {}),
    "datetime_parsing": ("not a date", "datetime_from_date_parsing", {}),
    "date_type": ([1], "date_type", {}),
    "date_parsing": ("2020-13-45", "date_from_datetime_parsing", {}),
    "time_type": ([1], "time_type", {}),
    "time_parsing": ("25:99", "time_parsing", {}),
    "aware": ("2020-01-01T00:00:00", "timezone_aware", {}),
    "naive": ("2020-01-01T00:00:00Z", "timezone_naive", {}),
    "future": ("2000-01-01T00:00:00Z", "datetime_future", {}),
    "past": ("2999-01-01T00:00:00Z", "datetime_past", {}),
    "uuid_type": (123, "uuid_type", {}),
    "uuid_parsing": ("nope", "uuid_parsing", {}),
    "url_type": (123, "url_type", {}),
    "url_parsing": ("not a url", "url_parsing", {}),
    "url_scheme": ("ftp://example.com", "url_scheme", {"expected_schemes": "'http' or 'https'"}),
    "url_long": ("http://example.com/" + "a" * 30, "url_too_long", {"max_length": 20}),
    "decimal_type": ([1], "decimal_type", {}),
    "decimal_parsing": ("abc", "decimal_parsing", {}),
    "decimal_digits": ("12345", "decimal_max_digits", {"max_digits": 3}),
    "decimal_places": ("1.23", "decimal_max_places", {"decimal_places": 1}),
    "bytes_type": (123, "bytes_type", {}),
    "bytes_short": ("a", "bytes_too_short", {"min_length": 3}),
    "bytes_long": ("abcdef", "bytes_too_long", {"max_length": 3}),
    "none": (1, "none_required", {}),
    "pet": (
        {"kind": "fish"},
        "union_tag_invalid",
        {"tag": "fish", "expected_tags": "'cat', 'dog'"},
    ),
    "pet_without_kind": ({}, "union_tag_not_found", {"discriminator": "'kind'"}),
    "iterable": (1, "iterable_type", {}),
}
SPECIAL_CASES: dict[str, tuple[Any, str, str]] = {
    # field -> (bad value, error type, the message expected instead of MESSAGES[type])
    "email": ("not-an-email", "value_error", EMAIL_MESSAGE),
    "future_date": ("2000-01-01", "date_future", FALLBACK_MESSAGE),  # a type with no own message
}
VALIDATE_PATH = "/test-i18n/validate"


def bad_payload() -> dict[str, Any]:
    payload = {field: value for field, (value, _type, _params) in CASES.items()}
    payload.update({field: value for field, (value, _type, _msg) in SPECIAL_CASES.items()})
    return payload


def expected_messages(language: str) -> dict[str, list[str]]:
    def render(msgid: str, params: dict[str, Any]) -> str:
        return turkish(msgid, **params) if language == "tr" else msgid.format(**params)

    expected = {
        field: [render(MESSAGES[error_type], params)]
        for field, (_value, error_type, params) in CASES.items()
    }
    expected["required"] = [render(MESSAGES["missing"], {})]
    for field, (_value, _type, msgid) in SPECIAL_CASES.items():
        expected[field] = [render(msgid, {})]
    return expected


def test_the_payload_triggers_the_error_types_it_claims() -> None:
    """Guards the HTTP test below: each field fails with exactly the type listed."""
    with pytest.raises(ValidationError) as info:
        Everything.model_validate(bad_payload())
    seen = {str(error["loc"][0]): error["type"] for error in info.value.errors()}
    claimed = {field: error_type for field, (_v, error_type, _p) in CASES.items()}
    claimed.update({field: error_type for field, (_v, error_type, _m) in SPECIAL_CASES.items()})
    claimed["required"] = "missing"
    assert seen == claimed


def test_at_least_thirty_error_types_are_translated_and_differ_from_english() -> None:
    tr = {msgid: msgstr for msgid, msgstr, fuzzy in entries("tr") if msgstr and not fuzzy}
    translated = {
        error_type: message
        for error_type, message in MESSAGES.items()
        if message in tr and tr[message] != message
    }
    assert set(translated) == set(MESSAGES), set(MESSAGES) - set(translated)
    assert len(translated) >= 30
    for message in (EMAIL_MESSAGE, FALLBACK_MESSAGE):
        assert tr[message] != message


@pytest.fixture
async def validation_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    router = make_router()

    @router.post(VALIDATE_PATH, status_code=204)
    async def validate(payload: Everything) -> None:
        return None

    app.include_router(router)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_pydantic_errors_are_translated_through_a_route(
    validation_client: httpx.AsyncClient,
) -> None:
    payload = bad_payload()
    english_response = await validation_client.post(VALIDATE_PATH, json=payload)
    turkish_response = await validation_client.post(
        VALIDATE_PATH, json=payload, headers={"Accept-Language": "tr"}
    )
    assert english_response.status_code == 422
    assert turkish_response.status_code == 422
    english_errors: dict[str, list[str]] = english_response.json()["field_errors"]
    turkish_errors: dict[str, list[str]] = turkish_response.json()["field_errors"]

    assert english_errors == expected_messages("en")
    assert turkish_errors == expected_messages("tr")
    covered_types = {error_type for _v, error_type, _p in CASES.values()} | {"missing"}
    assert len(covered_types) >= 30
    for field, messages in turkish_errors.items():
        assert messages != english_errors[field], field
    assert "internal reason" not in turkish_response.text
    assert "internal reason" not in english_response.text


async def test_a_valid_payload_passes(validation_client: httpx.AsyncClient) -> None:
    response = await validation_client.post(VALIDATE_PATH, json={"required": "x"})
    assert response.status_code == 204


# ---------------------------------------------------------------------------------------------
# (d) Accept-Language negotiation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("tr", "tr"),
        ("tr-TR", "tr"),
        ("TR-tr", "tr"),
        ("tr-TR,tr;q=0.9,en-US;q=0.8,en;q=0.7", "tr"),
        ("en;q=0.5, tr;q=0.9", "tr"),
        ("en-US,en;q=0.9,tr;q=0.8", "en"),
        ("de-DE,de;q=0.9,tr;q=0.3", "tr"),
        (" tr ; q=0.7 , en ; q=0.6", "tr"),
        ("tr;q=0.8, en;q=0.8", "tr"),  # a tie goes to the earlier entry
        ("en;q=0.8, tr;q=0.8", "en"),
        ("tr;q=0", "en"),  # q=0 means "not acceptable"
        ("tr;q=0, en;q=0.1", "en"),
        ("en;q=0, tr;q=0.1", "tr"),
        ("en;q=abc, tr;q=0.4", "tr"),  # an unreadable q counts as 0
        ("en;q=2, tr;q=0.3", "tr"),  # q above 1 is invalid
        ("*", "en"),
        ("*;q=0.5, tr;q=0.9", "tr"),
        ("de-DE, fr;q=0.8", "en"),  # unsupported only: the default
        ("garbage", "en"),
        (";;;,,,q=1", "en"),
        ("", "en"),
        (None, "en"),
        ("tr;q=0.9, " + "x" * 300, "tr"),  # long headers bypass the cache but still parse
    ],
)
def test_negotiate_language(header: str | None, expected: str) -> None:
    assert i18n.negotiate_language(header, "en") == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [("garbage", "tr"), ("", "tr"), (None, "tr"), ("de", "tr"), ("*", "tr"), ("en", "en")],
)
def test_negotiate_language_falls_back_to_the_given_default(
    header: str | None, expected: str
) -> None:
    assert i18n.negotiate_language(header, "tr") == expected


async def test_language_negotiation_reaches_responses(client: httpx.AsyncClient) -> None:
    headers_and_languages = [
        ("en;q=0.5, tr;q=0.9", "tr"),
        ("tr;q=0", "en"),
        ("garbage", "en"),
        ("tr-TR", "tr"),
    ]
    for header, language in headers_and_languages:
        response = await client.get("/no/such/route", headers={"Accept-Language": header})
        assert response.status_code == 404
        detail = response.json()["detail"]
        expected = "The requested resource was not found."
        assert detail == (turkish(expected) if language == "tr" else expected), header
