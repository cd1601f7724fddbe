"""Short-lived signed tokens that work without a session: download links for machines and
shared links.

A token is ``base64url(version | mac | exp | payload)`` without padding: ``exp`` is the expiry in
Unix seconds (8 bytes, big-endian), ``payload`` compact JSON of string pairs, ``mac`` a truncated
HMAC-SHA256 over everything else. The key is derived from the secret *and* the purpose, so a token
made for one purpose never validates for another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import struct
from collections.abc import Mapping
from datetime import UTC, datetime

from tezgah.core.errors import AppError
from tezgah.core.i18n import N_

VERSION = b"\x01"
MAC_BYTES = 18  # 144 bits: a multiple of 3, so the base64 text has no partial groups
EXPIRY = struct.Struct(">Q")
HEADER_BYTES = len(VERSION) + MAC_BYTES + EXPIRY.size
MAX_TOKEN_LENGTH = 2048
TOKEN_ALPHABET = re.compile(r"^[A-Za-z0-9_-]+$")
KEY_LABEL = b"tezgah-signed-token-v1\x00"


class InvalidSignedToken(AppError):
    status_code = 403
    error_code = "LINK_INVALID"
    title = N_("Forbidden")
    message = N_("This link is invalid.")


class ExpiredSignedToken(AppError):
    status_code = 410
    error_code = "LINK_EXPIRED"
    title = N_("Gone")
    message = N_("This link has expired. Ask for a new one.")


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # The alphabet is checked first: the decoder would otherwise skip stray characters.
    if not TOKEN_ALPHABET.fullmatch(text):
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # One token, one spelling: reject encodings whose unused trailing bits are set.
    if _b64encode(raw) != text:
        raise ValueError("non-canonical base64url")
    return raw


def _aware(moment: datetime) -> datetime:
    # A naive datetime would silently be read as local time.
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required")
    return moment


def _encode_payload(data: Mapping[str, str]) -> bytes:
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in data.items()):
        raise TypeError("signed token data must map strings to strings")
    return json.dumps(
        dict(data), separators=(",", ":"), sort_keys=True, ensure_ascii=False
    ).encode()


def _decode_payload(payload: bytes) -> dict[str, str]:
    try:
        data = json.loads(payload)
    except ValueError as exc:  # also UnicodeDecodeError
        raise InvalidSignedToken() from exc
    if not isinstance(data, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in data.items()
    ):
        raise InvalidSignedToken()
    return data


class SignedTokens:
    """Sign and verify tokens for one purpose (e.g. ``"download"``)."""

    def __init__(self, secret: str, purpose: str) -> None:
        if not secret or not purpose:
            raise ValueError("secret and purpose must not be empty")
        self._key = hmac.new(secret.encode(), KEY_LABEL + purpose.encode(), hashlib.sha256).digest()

    def _mac(self, signed: bytes) -> bytes:
        return hmac.new(self._key, signed, hashlib.sha256).digest()[:MAC_BYTES]

    def sign(self, data: Mapping[str, str], expires_at: datetime) -> str:
        expires = int(_aware(expires_at).timestamp())
        if expires < 0:
            raise ValueError("expires_at is before 1970")
        signed = VERSION + EXPIRY.pack(expires) + _encode_payload(data)
        token = _b64encode(VERSION + self._mac(signed) + signed[len(VERSION) :])
        if len(token) > MAX_TOKEN_LENGTH:
            # Never hand out a token that verify() would refuse.
            raise ValueError("signed token data is too large")
        return token

    def verify(self, token: str, now: datetime | None = None) -> dict[str, str]:
        """The signed data; raises InvalidSignedToken or ExpiredSignedToken."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidSignedToken()
        try:
            raw = _b64decode(token)
        except (ValueError, binascii.Error) as exc:
            raise InvalidSignedToken() from exc
        if len(raw) < HEADER_BYTES or raw[:1] != VERSION:
            raise InvalidSignedToken()
        mac, rest = raw[1 : 1 + MAC_BYTES], raw[1 + MAC_BYTES :]
        if not hmac.compare_digest(mac, self._mac(VERSION + rest)):
            raise InvalidSignedToken()
        # Only a genuine token learns that it has expired; anything else is just invalid.
        (expires,) = EXPIRY.unpack(rest[: EXPIRY.size])
        if _aware(now or datetime.now(UTC)).timestamp() >= expires:
            raise ExpiredSignedToken()
        return _decode_payload(rest[EXPIRY.size :])
