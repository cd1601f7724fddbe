"""Settings: environment (``TEZGAH_`` prefix), ``.env`` files, lists, refusals of unsafe or
invalid values, derived values, and the README's configuration table."""

from __future__ import annotations

import os
import re
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from tezgah.core.config import (
    DEV_SECRET_KEY,
    INSECURE_SECRET_VALUES,
    MIN_PRODUCTION_SECRET_LENGTH,
    Environment,
    InsecureConfigurationError,
    Settings,
)

README = Path(__file__).resolve().parents[2] / "README.md"
GOOD_SECRET = "k" * MIN_PRODUCTION_SECRET_LENGTH
PREFIX = "TEZGAH_"


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TEZGAH_ variable from the outer environment, and no .env but the test's own."""
    for name in list(os.environ):
        if name.upper().startswith(PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refusal(info: pytest.ExceptionInfo[ValidationError]) -> BaseException:
    """The exception a validator raised, as pydantic keeps it in the error's context."""
    errors = info.value.errors()
    assert len(errors) == 1
    error = errors[0]["ctx"]["error"]
    assert isinstance(error, BaseException)
    return error


# ---------------------------------------------------------------------------------------------
# Sources: defaults, environment, .env, keyword arguments
# ---------------------------------------------------------------------------------------------


def test_defaults_are_the_embedded_development_mode() -> None:
    settings = Settings()
    assert settings.env is Environment.development
    assert not settings.is_production
    assert settings.secret_key.get_secret_value() == DEV_SECRET_KEY
    assert settings.database_url == ""
    assert settings.redis_url == ""
    assert settings.s3_bucket == ""
    assert settings.cors_origins == []
    assert settings.trusted_hosts == ["*"]
    assert settings.default_language == "en"
    assert settings.var_dir == Path("var")


def test_environment_variables_with_the_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TEZGAH_ENV", "test")
    monkeypatch.setenv("TEZGAH_VAR_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TEZGAH_DATABASE_POOL_SIZE", "25")
    monkeypatch.setenv("TEZGAH_DATABASE_POOL_TIMEOUT", "2.5")
    monkeypatch.setenv("TEZGAH_LOG_JSON", "false")
    monkeypatch.setenv("TEZGAH_HTTPS", "true")
    monkeypatch.setenv("TEZGAH_DEFAULT_LANGUAGE", "tr")
    monkeypatch.setenv("TEZGAH_REDIS_URL", "redis://cache.internal:6379/2")
    monkeypatch.setenv("TEZGAH_SECRET_KEY", "from-the-environment-0123456789")
    # Unprefixed names belong to other programs.
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://someone@elsewhere/db")
    monkeypatch.setenv("REDIS_KEY_PREFIX", "not-ours:")

    settings = Settings()
    assert settings.env is Environment.test
    assert settings.var_dir == tmp_path / "state"
    assert settings.database_pool_size == 25
    assert settings.database_pool_timeout == 2.5
    assert settings.log_json is False
    assert settings.https is True
    assert settings.default_language == "tr"
    assert settings.redis_url == "redis://cache.internal:6379/2"
    assert settings.secret_key.get_secret_value() == "from-the-environment-0123456789"
    assert settings.database_url == ""
    assert settings.redis_key_prefix == "tezgah:"


def test_variable_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("tezgah_redis_key_prefix", "lower:")
    monkeypatch.setenv("Tezgah_S3_Region", "eu-central-1")
    settings = Settings()
    assert settings.redis_key_prefix == "lower:"
    assert settings.s3_region == "eu-central-1"


def test_dotenv_file_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, isolated_environment: Path
) -> None:
    (isolated_environment / ".env").write_text(
        "# local overrides\n"
        "TEZGAH_ENV=test\n"
        "TEZGAH_DATABASE_URL=postgresql+asyncpg://tezgah@db.local:5432/tezgah\n"
        "TEZGAH_CORS_ORIGINS=https://a.example, https://b.example\n"
        "TEZGAH_MAX_BODY_BYTES=2048\n"
        "TEZGAH_S3_BUCKET=from-dotenv\n"
        "TEZGAH_NOT_A_SETTING=ignored\n"
        "UNRELATED=1\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("TEZGAH_S3_BUCKET", "from-environment")

    settings = Settings()
    assert settings.env is Environment.test
    assert settings.database_url == "postgresql+asyncpg://tezgah@db.local:5432/tezgah"
    assert not settings.is_sqlite
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.max_body_bytes == 2048
    # The environment wins over the file.
    assert settings.s3_bucket == "from-environment"
    assert not hasattr(settings, "not_a_setting")


def test_dotenv_elsewhere_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / ".env").write_text("TEZGAH_S3_BUCKET=not-read\n", encoding="utf-8")
    assert Settings().s3_bucket == ""
    monkeypatch.chdir(other)
    assert Settings().s3_bucket == "not-read"


def test_keyword_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEZGAH_REDIS_KEY_PREFIX", "env:")
    assert Settings(redis_key_prefix="kwarg:").redis_key_prefix == "kwarg:"


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEZGAH_SECRET_KEY", "super-secret-value-that-must-not-print")
    monkeypatch.setenv("TEZGAH_S3_SECRET_ACCESS_KEY", "s3-secret-that-must-not-print")
    settings = Settings()
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert "super-secret-value" not in text
        assert "s3-secret-that" not in text
    assert isinstance(settings.secret_key, SecretStr)


# ---------------------------------------------------------------------------------------------
# Lists
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://a.example", ["https://a.example"]),
        ("https://a.example,https://b.example", ["https://a.example", "https://b.example"]),
        (" https://a.example , https://b.example ,, ", ["https://a.example", "https://b.example"]),
        ("", []),
    ],
)
def test_cors_origins_from_csv(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("TEZGAH_CORS_ORIGINS", raw)
    assert Settings().cors_origins == expected


def test_trusted_hosts_from_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEZGAH_TRUSTED_HOSTS", "tezgah.example.com, *.example.org,localhost")
    assert Settings().trusted_hosts == ["tezgah.example.com", "*.example.org", "localhost"]


def test_lists_also_accept_python_lists() -> None:
    settings = Settings(cors_origins=["https://a.example"], trusted_hosts=["a", "b"])
    assert settings.cors_origins == ["https://a.example"]
    assert settings.trusted_hosts == ["a", "b"]


@pytest.mark.parametrize("raw", ["*", "https://a.example,*", " * "])
def test_wildcard_cors_origin_is_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("TEZGAH_CORS_ORIGINS", raw)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert info.value.errors()[0]["loc"] == ("cors_origins",)
    assert "TEZGAH_CORS_ORIGINS" in str(refusal(info))
    with pytest.raises(ValidationError):
        Settings(cors_origins=["*"])


# ---------------------------------------------------------------------------------------------
# Production refuses unsafe secrets
# ---------------------------------------------------------------------------------------------


def test_production_refuses_the_missing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEZGAH_ENV", "production")
    with pytest.raises(ValidationError) as info:
        Settings()
    error = refusal(info)
    assert isinstance(error, InsecureConfigurationError)
    assert "TEZGAH_SECRET_KEY" in str(error)


@pytest.mark.parametrize(
    "secret",
    [*sorted(INSECURE_SECRET_VALUES), "CHANGE-ME", "  changeme  ", "Dev-Secret-Change-Me"],
)
def test_production_refuses_known_default_secrets(secret: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(env="production", secret_key=secret)
    assert isinstance(refusal(info), InsecureConfigurationError)


@pytest.mark.parametrize("length", [1, 16, MIN_PRODUCTION_SECRET_LENGTH - 1])
def test_production_refuses_short_secrets(length: int) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(env="production", secret_key="s" * length)
    error = refusal(info)
    assert isinstance(error, InsecureConfigurationError)
    assert str(MIN_PRODUCTION_SECRET_LENGTH) in str(error)


def test_production_with_a_good_secret_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEZGAH_ENV", "production")
    monkeypatch.setenv("TEZGAH_SECRET_KEY", GOOD_SECRET)
    settings = Settings()
    assert settings.is_production
    assert settings.env is Environment.production
    assert settings.secret_key.get_secret_value() == GOOD_SECRET


def test_production_with_s3_needs_the_s3_secret() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(env="production", secret_key=GOOD_SECRET, s3_bucket="blobs")
    error = refusal(info)
    assert isinstance(error, InsecureConfigurationError)
    assert "TEZGAH_S3_SECRET_ACCESS_KEY" in str(error)
    settings = Settings(
        env="production",
        secret_key=GOOD_SECRET,
        s3_bucket="blobs",
        s3_secret_access_key="s3-secret",
    )
    assert settings.s3_bucket == "blobs"


@pytest.mark.parametrize("env", ["development", "test"])
def test_other_environments_accept_the_development_secret(env: str) -> None:
    settings = Settings(env=env)
    assert settings.secret_key.get_secret_value() == DEV_SECRET_KEY
    assert not settings.is_production


def test_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEZGAH_ENV", "staging")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert info.value.errors()[0]["loc"] == ("env",)


# ---------------------------------------------------------------------------------------------
# Derived values
# ---------------------------------------------------------------------------------------------


def test_default_database_is_sqlite_under_var_dir(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "state")
    expected = f"sqlite+aiosqlite:///{(tmp_path / 'state' / 'tezgah.sqlite3').as_posix()}"
    assert settings.effective_database_url == expected
    assert settings.is_sqlite
    assert Settings().effective_database_url == "sqlite+aiosqlite:///var/tezgah.sqlite3"


@pytest.mark.parametrize(
    ("url", "is_sqlite"),
    [
        ("postgresql+asyncpg://tezgah:pw@db:5432/tezgah", False),
        ("sqlite+aiosqlite:////srv/tezgah/data.sqlite3", True),
    ],
)
def test_configured_database_url_is_used(url: str, is_sqlite: bool, tmp_path: Path) -> None:
    settings = Settings(database_url=url, var_dir=tmp_path)
    assert settings.effective_database_url == url
    assert settings.is_sqlite is is_sqlite


def test_storage_dir_defaults_under_var_dir_unless_set(tmp_path: Path) -> None:
    assert Settings(var_dir=tmp_path).effective_storage_dir == tmp_path / "blobs"
    assert Settings().effective_storage_dir == Path("var") / "blobs"
    chosen = tmp_path / "elsewhere"
    assert Settings(var_dir=tmp_path, storage_dir=chosen).effective_storage_dir == chosen


# ---------------------------------------------------------------------------------------------
# Invalid values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["de", "", "english", "tr-TR"])
def test_unknown_default_language_is_refused(
    monkeypatch: pytest.MonkeyPatch, language: str
) -> None:
    monkeypatch.setenv("TEZGAH_DEFAULT_LANGUAGE", language)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert info.value.errors()[0]["loc"] == ("default_language",)


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [
        ("database_pool_size", 0, False),
        ("database_pool_size", 1, True),
        ("database_pool_size", 200, True),
        ("database_pool_size", 201, False),
        ("database_max_overflow", -1, False),
        ("database_max_overflow", 0, True),
        ("database_max_overflow", 200, True),
        ("database_max_overflow", 201, False),
        ("database_pool_timeout", 0, False),
        ("database_pool_timeout", 0.5, True),
        ("max_body_bytes", 1023, False),
        ("max_body_bytes", 1024, True),
        ("gzip_min_bytes", -1, False),
        ("hsts_max_age", -1, False),
        ("cache_default_ttl", 0, False),
        ("cache_default_ttl", 1, True),
    ],
)
def test_numeric_bounds(
    monkeypatch: pytest.MonkeyPatch, field: str, value: float, valid: bool
) -> None:
    monkeypatch.setenv(PREFIX + field.upper(), str(value))
    if valid:
        assert getattr(Settings(), field) == value
        return
    with pytest.raises(ValidationError) as info:
        Settings()
    assert info.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(("field", "raw"), [("database_pool_size", "ten"), ("https", "maybe")])
def test_unparseable_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, field: str, raw: str
) -> None:
    monkeypatch.setenv(PREFIX + field.upper(), raw)
    with pytest.raises(ValidationError):
        Settings()


# ---------------------------------------------------------------------------------------------
# README's configuration table
# ---------------------------------------------------------------------------------------------


def readme_settings_table() -> dict[str, str]:
    """``TEZGAH_*`` variable -> the table's default cell (one row may name several variables)."""
    rows: dict[str, str] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `TEZGAH_"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) >= 3, line
        for name in re.findall(r"`(TEZGAH_[A-Z0-9_]+)`", cells[0]):
            rows[name] = cells[1]
    return rows


def documented_default(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def test_readme_documents_every_setting() -> None:
    documented = set(readme_settings_table())
    fields = {PREFIX + name.upper() for name in Settings.model_fields}
    missing = sorted(fields - documented)
    unknown = sorted(documented - fields)
    assert not missing, f"README.md's configuration table lacks: {missing}"
    assert not unknown, f"README.md documents settings that do not exist: {unknown}"


def test_readme_defaults_match_the_code() -> None:
    """Rows whose default is one literal (`10`, `true`, `*`) or 'empty' must match the code."""
    checked = 0
    for name, cell in readme_settings_table().items():
        field = Settings.model_fields.get(name.removeprefix(PREFIX).lower())
        if field is None:
            continue
        default = field.get_default(call_default_factory=True)
        if default is None:  # derived at run time (storage_dir): the README shows the result
            continue
        if cell == "empty":
            assert not documented_default(default), name
            checked += 1
            continue
        literal = re.fullmatch(r"`([^`]*)`", cell)
        if literal is None:
            continue
        text = literal.group(1)
        if isinstance(default, int | float) and not isinstance(default, bool):
            assert float(text) == default, name
        else:
            assert text == documented_default(default), name
        checked += 1
    assert checked >= 20
