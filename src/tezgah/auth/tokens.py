"""Signed access tokens (JWT) and opaque secrets (refresh tokens, API keys, emailed tokens).

Access tokens are HS256 JWTs with ``iss``, ``aud``, ``exp``, ``iat``, ``jti``, ``sub`` and a
``typ`` claim; decoding accepts only the algorithms in :data:`ALGORITHMS` and only keys of the
key ring (by ``kid``), so a token signed with an old key keeps working during a rotation and a
token with ``alg=none`` or an unknown key never does. Everything else is an opaque random string
stored as a keyed hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

import jwt
import orjson

from tezgah.core.config import Settings

ALGORITHMS = ["HS256"]
MIN_KEY_BYTES = 32
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti", "typ"]
API_KEY_PREFIX = "tzk"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class TokenError(Exception):
    """A token that is malformed, expired, of the wrong type or not ours."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    secret: bytes


def _derived_key(secret_key: str, label: str) -> bytes:
    return hmac.new(secret_key.encode(), label.encode(), hashlib.sha256).digest()


def parse_key_ring(settings: Settings) -> list[SigningKey]:
    """``kid:secret,kid:secret`` from settings (first one signs); default: one derived key."""
    raw = settings.jwt_keys.get_secret_value().strip()
    if not raw:
        derived = _derived_key(settings.secret_key.get_secret_value(), "tezgah-jwt-v1")
        return [SigningKey("k1", derived)]
    keys: list[SigningKey] = []
    for item in raw.split(","):
        kid, sep, secret = item.strip().partition(":")
        if not sep or not kid or len(secret.encode()) < MIN_KEY_BYTES:
            raise ValueError(
                f"TEZGAH_JWT_KEYS: each entry is kid:secret with a {MIN_KEY_BYTES}+ byte secret"
            )
        keys.append(SigningKey(kid, secret.encode()))
    return keys


class TokenService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = parse_key_ring(settings)
        self.keys_by_id = {key.kid: key for key in self.keys}
        self._hash_key = _derived_key(settings.secret_key.get_secret_value(), "tezgah-secrets-v1")

    # JWTs -------------------------------------------------------------------------------------
    def issue(self, subject: str, token_type: str, ttl_seconds: int, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "sub": subject,
            "iat": now,
            "exp": now + ttl_seconds,
            "jti": uuid.uuid4().hex,
            "typ": token_type,
            **claims,
        }
        key = self.keys[0]
        return jwt.encode(payload, key.secret, algorithm=ALGORITHMS[0], headers={"kid": key.kid})

    def decode(self, token: str, token_type: str) -> dict[str, Any]:
        header = unverified_header(token)
        key = self.keys_by_id.get(str(header.get("kid", "")))
        if key is None or header.get("alg") not in ALGORITHMS:
            raise TokenError("unknown key or algorithm")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.secret,
                algorithms=ALGORITHMS,
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=5,
            )
        except jwt.PyJWTError as exc:
            raise TokenError(type(exc).__name__) from exc
        if claims.get("typ") != token_type:
            raise TokenError("wrong token type")
        return claims

    # Opaque secrets ---------------------------------------------------------------------------
    def hash_secret(self, value: str) -> str:
        """Keyed hash of a high-entropy secret: a stolen table is useless without the key."""
        return hmac.new(self._hash_key, value.encode(), hashlib.sha256).hexdigest()

    def new_secret(self, nbytes: int = 32) -> tuple[str, str]:
        """(secret, its hash)."""
        value = secrets.token_urlsafe(nbytes)
        return value, self.hash_secret(value)

    def sign(self, value: str) -> str:
        digest = hmac.new(self._hash_key, value.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()


MAX_HEADER_SEGMENT = 512


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, read only to pick the key: PyJWT then checks everything, header
    included, against that key. (PyJWT's own reader parses the whole token a second time.)"""
    segment = token.split(".", 1)[0]
    if not segment or len(segment) > MAX_HEADER_SEGMENT or token.count(".") != 2:
        raise TokenError("malformed")
    try:
        header = orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise TokenError("malformed") from exc
    if not isinstance(header, dict):
        raise TokenError("malformed")
    return header


def base62(data: bytes, length: int) -> str:
    number = int.from_bytes(data, "big")
    chars = []
    for _ in range(length):
        number, remainder = divmod(number, 62)
        chars.append(BASE62[remainder])
    return "".join(chars)


def _checksum(body: str) -> str:
    return base62(zlib.crc32(body.encode()).to_bytes(4, "big"), 6)


def new_api_key() -> tuple[str, str, str]:
    """(full key, public prefix, secret part). Format ``tzk_<prefix>_<secret><crc>``: a scanner
    recognises it by its prefix and checks the CRC before any lookup."""
    prefix = base62(secrets.token_bytes(8), 10)
    secret = base62(secrets.token_bytes(24), 32)
    body = f"{API_KEY_PREFIX}_{prefix}_{secret}"
    return body + _checksum(body), prefix, secret


def split_api_key(key: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed key with a valid checksum, else None."""
    parts = key.split("_")
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(parts[1]) != 10:
        return None
    tail = parts[2]
    if len(tail) != 38 or any(char not in BASE62 for char in parts[1] + tail):
        return None
    body, checksum = key[:-6], key[-6:]
    if not hmac.compare_digest(_checksum(body), checksum):
        return None
    return parts[1], tail[:-6]
