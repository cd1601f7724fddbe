"""Request and response models of the identity domain.

Input models forbid unknown fields, so a registration cannot smuggle ``is_superuser`` or a
verified flag in (mass assignment); output models declare every field they show, so a password
or key hash can never leak.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from tezgah.auth.permissions import Role

Language = Literal["en", "tr"]
Password = Field(min_length=1, max_length=256)


class StrictInput(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class RegisterIn(StrictInput):
    email: EmailStr = Field(max_length=320)
    password: str = Password
    display_name: str = Field(min_length=1, max_length=100, pattern=r"\S")
    language: Language = "en"


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    display_name: str
    language: str
    is_active: bool
    is_superuser: bool
    email_verified: bool
    mfa_enabled: bool
    created_at: datetime
    last_login_at: datetime | None


class ProfileUpdate(StrictInput):
    display_name: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"\S")
    language: Language | None = None


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int = Field(description="Seconds until the access token expires.")


class MFAChallenge(BaseModel):
    mfa_required: Literal[True] = True
    mfa_token: str = Field(description="Send it with a code to /api/v1/auth/mfa/verify.")
    expires_in: int


class RefreshIn(StrictInput):
    refresh_token: str = Field(min_length=1, max_length=512)


class MFAVerifyIn(StrictInput):
    mfa_token: str = Field(min_length=1, max_length=2048)
    code: str = Field(min_length=6, max_length=32, description="A 6-digit code or a recovery code.")


class SessionLoginIn(StrictInput):
    email: EmailStr = Field(max_length=320)
    password: str = Password


class SessionOut(BaseModel):
    csrf_token: str = Field(description="Send it as X-CSRF-Token on unsafe requests.")
    user: UserOut


class EmailIn(StrictInput):
    email: EmailStr = Field(max_length=320)


class TokenIn(StrictInput):
    token: str = Field(min_length=1, max_length=512)


class PasswordResetIn(StrictInput):
    token: str = Field(min_length=1, max_length=512)
    new_password: str = Password


class PasswordChangeIn(StrictInput):
    current_password: str = Password
    new_password: str = Password


class ReauthIn(StrictInput):
    password: str = Password


class MFASetupOut(BaseModel):
    secret: str = Field(description="Base32 secret, shown once.")
    otpauth_uri: str
    qr_png_data_uri: str = Field(description="The otpauth URI as a PNG QR code (data: URI).")


class MFACodeIn(StrictInput):
    code: str = Field(min_length=6, max_length=8, pattern=r"^\d{6,8}$")


class MFAReauthIn(StrictInput):
    password: str = Password
    code: str = Field(min_length=6, max_length=32)


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str] = Field(description="Ten single-use codes, shown once.")


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"


class MembershipSummary(BaseModel):
    workspace_id: uuid.UUID
    slug: str
    name: str
    is_personal: bool
    role: Role


class WorkspaceIn(StrictInput):
    name: str = Field(min_length=1, max_length=100, pattern=r"\S")
    slug: str | None = Field(
        default=None, min_length=2, max_length=64, pattern=r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$"
    )


class WorkspaceUpdate(StrictInput):
    name: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"\S")


class WorkspaceOut(BaseModel):
    id: uuid.UUID
    slug: str
    name: str
    is_personal: bool
    role: Role
    created_at: datetime


class MemberOut(BaseModel):
    user_id: uuid.UUID
    display_name: str
    email: str
    role: Role
    joined_at: datetime


class MemberUpdate(StrictInput):
    role: Role


class InvitationIn(StrictInput):
    email: EmailStr = Field(max_length=320)
    role: Role = Role.viewer


class InvitationOut(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    email: str
    role: Role
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None


class ApiKeyIn(StrictInput):
    name: str = Field(min_length=1, max_length=100, pattern=r"\S")
    scopes: list[str] = Field(min_length=1, max_length=20)
    expires_at: datetime | None = Field(default=None, description="Optional expiry (UTC).")


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    prefix: str = Field(description="Public part of the key, to recognise it in lists.")
    scopes: list[str]
    created_by_id: uuid.UUID
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself: shown once, stored only as a hash.")


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    occurred_at: datetime
    event: str
    outcome: str
    actor_user_id: uuid.UUID | None
    actor_api_key_id: uuid.UUID | None
    subject_user_id: uuid.UUID | None
    workspace_id: uuid.UUID | None
    target_type: str | None
    target_id: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, object]


class AdminUserUpdate(StrictInput):
    is_active: bool | None = None
    is_superuser: bool | None = None
