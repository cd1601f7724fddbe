"""Settings: every knob comes from the environment (prefix ``TEZGAH_``) or a ``.env`` file.

The run mode follows from what is configured: a ``redis_url`` turns on Redis-backed cache, rate
limits and events; a PostgreSQL ``database_url`` swaps SQLite for PostgreSQL; ``s3_bucket`` moves
blobs to an S3-compatible store. Nothing else in the code asks "which mode am I in".
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Values that ship in docs and examples: accepted in development, refused in production.
INSECURE_SECRET_VALUES = frozenset({"", "change-me", "changeme", "secret", "dev-secret-change-me"})
DEV_SECRET_KEY = "dev-secret-change-me"  # noqa: S105 - a known, refused-in-production default
MIN_PRODUCTION_SECRET_LENGTH = 32


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class InsecureConfigurationError(ValueError):
    """Raised at start-up when production would run with a missing or default secret."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class OIDCProvider(BaseModel):
    """One OpenID Connect identity provider (discovery from ``issuer``)."""

    # At most 15 characters: the login method "oidc:<name>" is stored with each refresh token.
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,14}$")
    issuer: str
    client_id: str
    client_secret: SecretStr = SecretStr("")
    scopes: str = "openid email profile"
    display_name: str = ""
    # Providers such as GitHub speak plain OAuth2: endpoints given here skip discovery.
    authorize_url: str = ""
    token_url: str = ""
    userinfo_url: str = ""
    # Plain OAuth2 providers that keep verified addresses apart (GitHub: .../user/emails, a list
    # of {"email", "primary", "verified"}); the primary verified address is used.
    emails_url: str = ""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TEZGAH_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    env: Environment = Environment.development
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    base_url: str = "http://127.0.0.1:8000"
    var_dir: Path = Path("var")

    database_url: str = ""
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_max_overflow: int = Field(default=10, ge=0, le=200)
    database_pool_timeout: float = Field(default=10.0, gt=0)
    database_echo: bool = False

    redis_url: str = ""
    redis_key_prefix: str = "tezgah:"
    # Connections each process may open to Redis; a request that finds them all busy waits
    # up to the pool timeout for one instead of failing at once.
    redis_max_connections: int = Field(default=64, ge=1, le=10_000)
    redis_pool_timeout: float = Field(default=5.0, gt=0)

    storage_dir: Path | None = None
    s3_bucket: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr = SecretStr("")
    s3_secret_access_key: SecretStr = SecretStr("")

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_hosts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    gzip_min_bytes: int = Field(default=1024, ge=0)
    https: bool = False
    hsts_max_age: int = Field(default=63_072_000, ge=0)

    default_language: str = "en"
    log_level: str = "INFO"
    log_json: bool = True

    metrics_enabled: bool = True
    cache_default_ttl: int = Field(default=60, ge=1)
    rate_limit_default: str = "600/minute"

    # Identity and access (tezgah.auth).
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=30 * 86_400, ge=300)
    jwt_issuer: str = "tezgah"
    jwt_audience: str = "tezgah-api"
    # "kid:secret,kid:secret": the first signs, all verify (rotation). Empty: one key derived
    # from the secret key.
    jwt_keys: SecretStr = SecretStr("")
    # None: required in production, optional elsewhere (a new account may log in at once).
    require_email_verification: bool | None = None
    # Argon2id at OWASP's first recommended setting (m=47104 KiB, t=1, p=1): one core per hash.
    argon2_time_cost: int = Field(default=1, ge=1, le=20)
    argon2_memory_cost_kib: int = Field(default=47_104, ge=1024, le=4_194_304)
    argon2_parallelism: int = Field(default=1, ge=1, le=16)
    # Hashes computed at once; None: one fewer than the CPUs, so requests keep a core.
    password_hash_concurrency: int | None = Field(default=None, ge=1, le=64)
    password_min_length: int = Field(default=10, ge=8, le=128)
    email_token_ttl_seconds: int = Field(default=86_400, ge=60)
    password_reset_ttl_seconds: int = Field(default=3_600, ge=60)
    invitation_ttl_seconds: int = Field(default=7 * 86_400, ge=60)
    mfa_challenge_ttl_seconds: int = Field(default=300, ge=30, le=3_600)
    rate_limit_login_ip: str = "20/minute"
    rate_limit_login_account: str = "10/minute"
    rate_limit_register_ip: str = "10/hour"
    rate_limit_refresh: str = "60/minute"
    rate_limit_password_reset: str = "5/hour"  # noqa: S105 - a rate, not a secret
    rate_limit_mfa: str = "10/minute"
    lockout_threshold: int = Field(default=5, ge=1)
    lockout_base_seconds: int = Field(default=30, ge=1)
    lockout_max_seconds: int = Field(default=3_600, ge=1)
    cookie_secure: bool | None = None  # None: follows TEZGAH_HTTPS
    # OpenID Connect providers, JSON: [{"name": "keycloak", "issuer": "...", "client_id": "...",
    # "client_secret": "...", "scopes": "openid email profile"}]
    oidc_providers: list[OIDCProvider] = Field(default_factory=list)

    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65_535)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_timeout: float = Field(default=10.0, gt=0)
    mail_from: str = "tezgah <no-reply@localhost>"
    mail_poll_seconds: float = Field(default=5.0, gt=0)

    # Resumable uploads (tus): the largest file, the bytes a workspace may hold in uploads
    # (unfinished and finished), and how long an unfinished upload lives after its last write.
    upload_max_bytes: int = Field(default=2 * 1024**3, ge=1)
    upload_quota_bytes: int = Field(default=20 * 1024**3, ge=1)
    upload_expiry_seconds: int = Field(default=86_400, ge=1)
    # Housekeeping (expired uploads, designs past the trash window, unused blobs): how often
    # each server process looks for due work; 0 turns it off (run `tezgah maintenance` instead).
    maintenance_interval_seconds: int = Field(default=3600, ge=0)

    freecad_command: Path = Path("/usr/lib/freecad/bin/freecadcmd-python3")
    freecad_lib_dir: Path = Path("/usr/lib/freecad/lib")
    freecad_mod_dir: Path = Path("/usr/share/freecad/Mod")

    @field_validator("cors_origins", "trusted_hosts", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_origin(cls, value: list[str]) -> list[str]:
        # Credentials are allowed for listed origins; "*" together with credentials is unsafe.
        if "*" in value:
            raise ValueError("TEZGAH_CORS_ORIGINS must list explicit origins, not '*'")
        return value

    @field_validator("default_language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in ("en", "tr"):
            raise ValueError("TEZGAH_DEFAULT_LANGUAGE must be 'en' or 'tr'")
        return value

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.env is not Environment.production:
            return self
        secret = self.secret_key.get_secret_value()
        if secret.strip().lower() in INSECURE_SECRET_VALUES:
            raise InsecureConfigurationError(
                "TEZGAH_SECRET_KEY is missing or a known default; production refuses to start"
            )
        if len(secret) < MIN_PRODUCTION_SECRET_LENGTH:
            raise InsecureConfigurationError(
                f"TEZGAH_SECRET_KEY must be at least {MIN_PRODUCTION_SECRET_LENGTH} characters"
            )
        if self.s3_bucket and not self.s3_secret_access_key.get_secret_value():
            raise InsecureConfigurationError(
                "TEZGAH_S3_SECRET_ACCESS_KEY is required in production when S3 is configured"
            )
        return self

    # Derived values: the mode follows from what is configured.
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.var_dir / 'tezgah.sqlite3').as_posix()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def effective_storage_dir(self) -> Path:
        return self.storage_dir if self.storage_dir is not None else self.var_dir / "blobs"

    @property
    def upload_dir(self) -> Path:
        return self.var_dir / "uploads"

    @property
    def is_production(self) -> bool:
        return self.env is Environment.production

    @property
    def email_verification_required(self) -> bool:
        if self.require_email_verification is None:
            return self.is_production
        return self.require_email_verification

    @property
    def secure_cookies(self) -> bool:
        return self.https if self.cookie_secure is None else self.cookie_secure


@lru_cache
def get_settings() -> Settings:
    return Settings()
