"""Errors of the identity domain, each with a stable code and a message in both languages."""

from __future__ import annotations

from tezgah.core.errors import (
    AppError,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from tezgah.core.i18n import N_


class InvalidCredentials(Unauthorized):
    error_code = "INVALID_CREDENTIALS"
    message = N_("The email or password is incorrect.")


class InvalidToken(Unauthorized):
    error_code = "INVALID_TOKEN"
    message = N_("The token is invalid or has expired.")


class RefreshTokenReused(Unauthorized):
    error_code = "REFRESH_TOKEN_REUSED"
    message = N_("This refresh token was already used; every session of this login was ended.")


class AccountLocked(AppError):
    status_code = 429
    error_code = "ACCOUNT_LOCKED"
    title = N_("Too many requests")
    message = N_("Too many failed attempts. Try again in {retry_after} seconds.")


class AccountInactive(Unauthorized):
    error_code = "ACCOUNT_INACTIVE"
    message = N_("This account is deactivated.")


class EmailNotVerified(Forbidden):
    error_code = "EMAIL_NOT_VERIFIED"
    message = N_("Verify your email address before signing in.")


class EmailTaken(Conflict):
    error_code = "EMAIL_TAKEN"
    message = N_("An account with this email address already exists.")


class WeakPassword(AppError):
    status_code = 422
    error_code = "WEAK_PASSWORD"
    title = N_("Validation failed")
    message = N_("The password does not meet the password policy.")


class WrongPassword(AppError):
    status_code = 403
    error_code = "WRONG_PASSWORD"
    title = N_("Forbidden")
    message = N_("The current password is incorrect.")


class InvalidMFACode(Unauthorized):
    error_code = "INVALID_MFA_CODE"
    message = N_("The authentication code is incorrect or was already used.")


class MFAAlreadyEnabled(Conflict):
    error_code = "MFA_ALREADY_ENABLED"
    message = N_("Two-factor authentication is already on.")


class MFANotEnrolled(Conflict):
    error_code = "MFA_NOT_ENROLLED"
    message = N_("Start two-factor enrolment first.")


class MFANotEnabled(Conflict):
    error_code = "MFA_NOT_ENABLED"
    message = N_("Two-factor authentication is not on.")


class CSRFFailed(Forbidden):
    error_code = "CSRF_FAILED"
    message = N_("The CSRF token is missing or does not match this session.")


class APIKeyNotAllowed(Forbidden):
    error_code = "API_KEY_NOT_ALLOWED"
    message = N_("API keys cannot be used for this; sign in as a person.")


class MissingPermission(Forbidden):
    error_code = "MISSING_PERMISSION"
    message = N_("Your role in this workspace does not allow this ({permission}).")


class SuperuserRequired(Forbidden):
    error_code = "SUPERUSER_REQUIRED"
    message = N_("Only administrators of this server may do this.")


class WorkspaceNotFound(NotFound):
    error_code = "WORKSPACE_NOT_FOUND"
    message = N_("The workspace was not found.")


class UserNotFound(NotFound):
    error_code = "USER_NOT_FOUND"
    message = N_("The user was not found.")


class MemberNotFound(NotFound):
    error_code = "MEMBER_NOT_FOUND"
    message = N_("This person is not a member of the workspace.")


class InvitationNotFound(NotFound):
    error_code = "INVITATION_NOT_FOUND"
    message = N_("The invitation was not found.")


class ApiKeyNotFound(NotFound):
    error_code = "API_KEY_NOT_FOUND"
    message = N_("The API key was not found.")


class SlugTaken(Conflict):
    error_code = "SLUG_TAKEN"
    message = N_("The address '{slug}' is already taken.")


class LastOwner(Conflict):
    error_code = "LAST_OWNER"
    message = N_("A workspace needs at least one owner.")


class PersonalWorkspace(Conflict):
    error_code = "PERSONAL_WORKSPACE"
    message = N_("A personal workspace cannot be shared or deleted.")


class AlreadyMember(Conflict):
    error_code = "ALREADY_MEMBER"
    message = N_("This person is already a member of the workspace.")


class RoleTooHigh(Forbidden):
    error_code = "ROLE_TOO_HIGH"
    message = N_("You cannot give or change a role above your own.")


class InvitationInvalid(AppError):
    status_code = 400
    error_code = "INVITATION_INVALID"
    message = N_("The invitation is invalid, expired, or already used.")


class InvitationForSomeoneElse(Forbidden):
    error_code = "INVITATION_FOR_SOMEONE_ELSE"
    message = N_("This invitation was sent to another email address.")


class InvalidScopes(AppError):
    status_code = 422
    error_code = "INVALID_SCOPES"
    title = N_("Validation failed")
    message = N_("These scopes cannot be given to this key: {scopes}.")


# OpenID Connect / OAuth2 sign-in ------------------------------------------------------------


class OIDCProviderNotFound(NotFound):
    error_code = "OIDC_PROVIDER_NOT_FOUND"
    message = N_("No sign-in provider named '{provider}' is configured.")


class OIDCStateInvalid(AppError):
    status_code = 400
    error_code = "OIDC_STATE_INVALID"
    message = N_("This sign-in attempt is unknown or has expired. Start the sign-in again.")


class OIDCRedirectInvalid(AppError):
    status_code = 400
    error_code = "OIDC_REDIRECT_INVALID"
    message = N_("The redirect target must be a path on this site, such as /designs.")


class OIDCProviderError(AppError):
    status_code = 400
    error_code = "OIDC_PROVIDER_ERROR"
    message = N_("The sign-in provider did not sign you in ({error}).")


class OIDCTokenExchangeFailed(Unauthorized):
    error_code = "OIDC_TOKEN_EXCHANGE_FAILED"
    message = N_("The sign-in provider refused the sign-in code. Start the sign-in again.")


class OIDCIDTokenInvalid(Unauthorized):
    error_code = "OIDC_ID_TOKEN_INVALID"
    message = N_("The ID token from the sign-in provider is invalid.")


class OIDCProfileInvalid(Unauthorized):
    error_code = "OIDC_PROFILE_INVALID"
    message = N_("The sign-in provider did not say who you are.")


class OIDCEmailNotVerified(Forbidden):
    error_code = "OIDC_EMAIL_NOT_VERIFIED"
    message = N_(
        "The sign-in provider has not confirmed your email address; accounts are linked only "
        "by confirmed addresses."
    )


class OIDCAccountUnverified(Conflict):
    error_code = "OIDC_ACCOUNT_UNVERIFIED"
    message = N_(
        "An account with this email address exists, but the address is not confirmed yet. "
        "Confirm it with the mail we sent, then sign in with this provider again."
    )


class OIDCProviderUnavailable(ServiceUnavailable):
    error_code = "OIDC_PROVIDER_UNAVAILABLE"
    message = N_("The sign-in provider cannot be reached. Try again shortly.")


class CannotDemoteSelf(Conflict):
    error_code = "CANNOT_DEMOTE_SELF"
    message = N_("You cannot deactivate yourself or give up your own administrator role here.")
