"""Two-factor authentication: TOTP (RFC 6238) with single-use recovery codes.

The TOTP secret is stored encrypted (Fernet, key derived from the server secret); a code is
accepted once (the step of the last accepted code is remembered) within one step of clock drift.
Recovery codes are random, shown once and stored as keyed hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets

import pyotp
import segno
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.ext.asyncio import AsyncSession

from tezgah.auth import audit, repository
from tezgah.auth.audit import RequestMeta
from tezgah.auth.exceptions import InvalidMFACode, MFAAlreadyEnabled, MFANotEnabled, MFANotEnrolled
from tezgah.auth.kit import AuthKit
from tezgah.auth.models import RecoveryCode, User
from tezgah.auth.schemas import MFASetupOut
from tezgah.core.db import utcnow

ISSUER = "tezgah"
RECOVERY_CODE_COUNT = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i look-alikes
VALID_WINDOW = 1  # one 30 s step either side


def _fernet(kit: AuthKit) -> Fernet:
    key = hmac.new(
        kit.settings.secret_key.get_secret_value().encode(), b"tezgah-mfa-v1", hashlib.sha256
    ).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(kit: AuthKit, secret: str) -> str:
    return _fernet(kit).encrypt(secret.encode()).decode()


def decrypt(kit: AuthKit, token: str) -> str:
    return _fernet(kit).decrypt(token.encode()).decode()


def qr_data_uri(uri: str) -> str:
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="png", scale=5, border=2)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def start_enrolment(kit: AuthKit, user: User) -> MFASetupOut:
    if user.mfa_enabled:
        raise MFAAlreadyEnabled()
    secret = pyotp.random_base32()
    user.mfa_pending_secret = encrypt(kit, secret)
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    return MFASetupOut(secret=secret, otpauth_uri=uri, qr_png_data_uri=qr_data_uri(uri))


def _matching_step(secret: str, code: str) -> int | None:
    """The time step a code belongs to, within the drift window; None if it matches none."""
    totp = pyotp.TOTP(secret)
    now_step = totp.timecode(utcnow())
    for offset in range(-VALID_WINDOW, VALID_WINDOW + 1):
        step = now_step + offset
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes(kit: AuthKit, user: User) -> tuple[list[str], list[RecoveryCode]]:
    codes = [
        "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10))
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    rows = [RecoveryCode(user_id=user.id, code_hash=kit.tokens.hash_secret(code)) for code in codes]
    return [f"{code[:5]}-{code[5:]}" for code in codes], rows


async def confirm_enrolment(
    session: AsyncSession, kit: AuthKit, meta: RequestMeta, user: User, code: str
) -> list[str]:
    if user.mfa_enabled:
        raise MFAAlreadyEnabled()
    if user.mfa_pending_secret is None:
        raise MFANotEnrolled()
    secret = decrypt(kit, user.mfa_pending_secret)
    step = _matching_step(secret, code)
    if step is None:
        raise InvalidMFACode()
    user.mfa_secret = user.mfa_pending_secret
    user.mfa_pending_secret = None
    user.mfa_enabled_at = utcnow()
    user.mfa_last_step = step
    codes = await replace_recovery_codes(session, kit, user)
    audit.record(session, "mfa.enabled", meta, actor_user_id=user.id)
    return codes


async def replace_recovery_codes(session: AsyncSession, kit: AuthKit, user: User) -> list[str]:
    await repository.delete_recovery_codes(session, user.id)
    codes, rows = new_recovery_codes(kit, user)
    session.add_all(rows)
    return codes


def _normalise_recovery(code: str) -> str:
    return code.replace("-", "").replace(" ", "").lower()


async def check_code(session: AsyncSession, kit: AuthKit, user: User, code: str) -> bool:
    """A current TOTP code not used before, or an unused recovery code (then spent)."""
    code = code.strip()
    if user.mfa_secret is None:
        return False
    if code.isdigit() and len(code) == 6:
        try:
            secret = decrypt(kit, user.mfa_secret)
        except InvalidToken:
            return False
        step = _matching_step(secret, code)
        if step is None or (user.mfa_last_step is not None and step <= user.mfa_last_step):
            return False
        # Compare-and-set: of two requests racing with one code, only one gets it.
        return await repository.claim_totp_step(session, user.id, step)
    wanted = kit.tokens.hash_secret(_normalise_recovery(code))
    for row in await repository.unused_recovery_codes(session, user.id):
        if hmac.compare_digest(row.code_hash, wanted):
            return await repository.claim_recovery_code(session, row.id, utcnow())
    return False


async def require_code(session: AsyncSession, kit: AuthKit, user: User, code: str) -> None:
    if not user.mfa_enabled:
        raise MFANotEnabled()
    if not await check_code(session, kit, user, code):
        raise InvalidMFACode()


async def disable(
    session: AsyncSession, kit: AuthKit, meta: RequestMeta, user: User, code: str
) -> None:
    await require_code(session, kit, user, code)
    user.mfa_secret = None
    user.mfa_pending_secret = None
    user.mfa_enabled_at = None
    user.mfa_last_step = None
    await repository.delete_recovery_codes(session, user.id)
    audit.record(session, "mfa.disabled", meta, actor_user_id=user.id)
