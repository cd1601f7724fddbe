"""Signed tokens: round trip, tampering, purpose and secret separation, expiry, garbage."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest

from tezgah.core.errors import problem_body
from tezgah.core.signing import (
    MAX_TOKEN_LENGTH,
    ExpiredSignedToken,
    InvalidSignedToken,
    SignedTokens,
)

SECRET = "test-secret-key-0123456789abcdef0123"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=10)
DATA = {"file": "0f" * 32, "name": "Çerçeve ığdır.FCStd"}
URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


@pytest.fixture
def tokens() -> SignedTokens:
    return SignedTokens(SECRET, "download")


def decode(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_round_trip_returns_the_signed_data(tokens: SignedTokens) -> None:
    token = tokens.sign(DATA, LATER)
    assert tokens.verify(token, now=NOW) == DATA


def test_token_is_url_safe_without_padding_and_compact(tokens: SignedTokens) -> None:
    token = tokens.sign(DATA, LATER)
    assert URL_SAFE.fullmatch(token)
    assert "=" not in token
    assert len(token) < 200


def test_default_now_is_the_current_time(tokens: SignedTokens) -> None:
    fresh = tokens.sign(DATA, datetime.now(UTC) + timedelta(minutes=1))
    stale = tokens.sign(DATA, datetime.now(UTC) - timedelta(seconds=5))
    assert tokens.verify(fresh) == DATA
    with pytest.raises(ExpiredSignedToken):
        tokens.verify(stale)


def test_tampered_payload_is_invalid(tokens: SignedTokens) -> None:
    raw = decode(tokens.sign({"file": "a"}, LATER))
    forged = raw.replace(b'"a"', b'"b"')
    assert forged != raw
    with pytest.raises(InvalidSignedToken):
        tokens.verify(encode(forged), now=NOW)


def test_tampered_expiry_is_invalid(tokens: SignedTokens) -> None:
    raw = bytearray(decode(tokens.sign(DATA, LATER)))
    raw[19 + 3] ^= 0x01  # a high byte of the 8-byte expiry after version and mac
    with pytest.raises(InvalidSignedToken):
        tokens.verify(encode(bytes(raw)), now=NOW)


@pytest.mark.parametrize("position", [1, 10, 18])
def test_tampered_signature_is_invalid(tokens: SignedTokens, position: int) -> None:
    raw = bytearray(decode(tokens.sign(DATA, LATER)))
    raw[position] ^= 0x80
    with pytest.raises(InvalidSignedToken):
        tokens.verify(encode(bytes(raw)), now=NOW)


def test_truncated_token_is_invalid(tokens: SignedTokens) -> None:
    token = tokens.sign(DATA, LATER)
    with pytest.raises(InvalidSignedToken):
        tokens.verify(token[:-4], now=NOW)


def test_token_of_another_purpose_is_invalid(tokens: SignedTokens) -> None:
    token = SignedTokens(SECRET, "share").sign(DATA, LATER)
    with pytest.raises(InvalidSignedToken):
        tokens.verify(token, now=NOW)


def test_token_of_another_secret_is_invalid(tokens: SignedTokens) -> None:
    token = SignedTokens(SECRET + "x", "download").sign(DATA, LATER)
    with pytest.raises(InvalidSignedToken):
        tokens.verify(token, now=NOW)


def test_expired_token_raises_expired(tokens: SignedTokens) -> None:
    token = tokens.sign(DATA, LATER)
    assert tokens.verify(token, now=LATER - timedelta(seconds=1)) == DATA
    with pytest.raises(ExpiredSignedToken):
        tokens.verify(token, now=LATER)
    with pytest.raises(ExpiredSignedToken):
        tokens.verify(token, now=LATER + timedelta(days=365))


def test_expired_forgery_is_invalid_not_expired(tokens: SignedTokens) -> None:
    """Only a genuine token is told that it expired."""
    token = SignedTokens("another-secret", "download").sign(DATA, NOW - timedelta(hours=1))
    with pytest.raises(InvalidSignedToken):
        tokens.verify(token, now=NOW)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a",
        "not a token",
        "abc.def",
        "%%%%",
        "AAAA====",
        "AQ",  # the version byte alone
        "ÇĞÖŞÜ",
        "A" * 64,
        "A" * (MAX_TOKEN_LENGTH + 1),
    ],
)
def test_garbage_is_invalid(tokens: SignedTokens, token: str) -> None:
    with pytest.raises(InvalidSignedToken):
        tokens.verify(token, now=NOW)


def test_stray_characters_do_not_slip_through_the_decoder(tokens: SignedTokens) -> None:
    token = tokens.sign(DATA, LATER)
    for spoiled in (token + "=", token[:5] + "\n" + token[5:], token[:5] + "+" + token[6:]):
        with pytest.raises(InvalidSignedToken):
            tokens.verify(spoiled, now=NOW)


def test_non_canonical_spelling_is_invalid(tokens: SignedTokens) -> None:
    token = tokens.sign({"f": "x"}, LATER)
    if len(token) % 4 == 0:
        token = tokens.sign({"f": "xy"}, LATER)
    # The last character carries unused low bits: setting one decodes to the same bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = token[:-1] + alphabet[alphabet.index(token[-1]) + 1]
    assert decode(twin) == decode(token)
    with pytest.raises(InvalidSignedToken):
        tokens.verify(twin, now=NOW)


def test_valid_signature_over_non_string_data_is_invalid(tokens: SignedTokens) -> None:
    """Defence in depth: even a correctly signed payload must be a str -> str object."""
    raw = decode(tokens.sign({"a": "b"}, LATER))
    signed = raw[:1] + raw[19:27] + b'{"a":1}'
    forged = raw[:1] + tokens._mac(signed) + signed[1:]
    with pytest.raises(InvalidSignedToken):
        tokens.verify(encode(forged), now=NOW)


def test_sign_refuses_bad_input(tokens: SignedTokens) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        tokens.sign(DATA, datetime(2030, 1, 1))  # naive on purpose
    with pytest.raises(ValueError, match="too large"):
        tokens.sign({"x": "y" * MAX_TOKEN_LENGTH}, LATER)
    with pytest.raises(TypeError):
        tokens.sign({"x": 1}, LATER)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="empty"):
        SignedTokens("", "download")
    with pytest.raises(ValueError, match="empty"):
        SignedTokens(SECRET, "")


def test_errors_render_as_problems_with_link_codes() -> None:
    invalid = problem_body(InvalidSignedToken(), "en")
    expired = problem_body(ExpiredSignedToken(), "en")
    assert (invalid["status"], invalid["error_code"]) == (403, "LINK_INVALID")
    assert invalid["detail"] == "This link is invalid."
    assert (expired["status"], expired["error_code"]) == (410, "LINK_EXPIRED")
    assert expired["detail"] == "This link has expired. Ask for a new one."
