"""Errors of the design hub, each with a stable code and a message in both languages."""

from __future__ import annotations

from tezgah.core.errors import AppError, Conflict, NotFound, PayloadTooLarge
from tezgah.core.i18n import N_


class DesignNotFound(NotFound):
    error_code = "DESIGN_NOT_FOUND"
    message = N_("The design was not found.")


class VersionNotFound(NotFound):
    error_code = "VERSION_NOT_FOUND"
    message = N_("The version was not found.")


class CategoryNotFound(NotFound):
    error_code = "CATEGORY_NOT_FOUND"
    message = N_("The category was not found.")


class ReviewNotFound(NotFound):
    error_code = "REVIEW_NOT_FOUND"
    message = N_("The review was not found.")


class ShareLinkNotFound(NotFound):
    error_code = "SHARE_LINK_NOT_FOUND"
    message = N_("The share link was not found, has expired or was revoked.")


class ThumbnailNotFound(NotFound):
    error_code = "THUMBNAIL_NOT_FOUND"
    message = N_("This design has no thumbnail.")


class SlugTaken(Conflict):
    error_code = "SLUG_TAKEN"
    message = N_("Another design in this workspace already uses the slug '{slug}'.")


class CategorySlugTaken(Conflict):
    error_code = "CATEGORY_SLUG_TAKEN"
    message = N_("Another category already uses the slug '{slug}'.")


class CategoryCycle(Conflict):
    error_code = "CATEGORY_CYCLE"
    message = N_("A category cannot be moved under itself or one of its descendants.")


class CategoryInUse(Conflict):
    error_code = "CATEGORY_HAS_CHILDREN"
    message = N_("The category has subcategories; move or delete them first.")


class UnknownCategories(AppError):
    status_code = 422
    error_code = "UNKNOWN_CATEGORY"
    title = N_("Validation failed")
    message = N_("These categories do not exist: {ids}.")


class NotDeleted(Conflict):
    error_code = "DESIGN_NOT_DELETED"
    message = N_("The design is not in the trash.")


class RestoreWindowOver(AppError):
    status_code = 410
    error_code = "RESTORE_WINDOW_OVER"
    title = N_("Gone")
    message = N_("The design was deleted more than {days} days ago and can no longer be restored.")


class UnsupportedFileFormat(AppError):
    status_code = 415
    error_code = "UNSUPPORTED_FILE_FORMAT"
    title = N_("Unsupported media type")
    message = N_(
        "The file is not a supported CAD format (FCStd, STEP, STL, OBJ, BREP, IGES); "
        "its content was checked, not its name."
    )


class EmptyFile(AppError):
    status_code = 422
    error_code = "EMPTY_FILE"
    title = N_("Validation failed")
    message = N_("The file is empty.")


class FileTooLarge(PayloadTooLarge):
    error_code = "FILE_TOO_LARGE"
    message = N_("The file is larger than {limit} bytes. Use a resumable (tus) upload.")


class UploadNotReady(Conflict):
    error_code = "UPLOAD_NOT_FINISHED"
    message = N_("The upload has not received all its bytes yet.")


class UploadAlreadyUsed(Conflict):
    error_code = "UPLOAD_ALREADY_ATTACHED"
    message = N_("The upload belongs to another workspace or was already attached.")


class BadVersionRequest(AppError):
    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"
    title = N_("Unsupported media type")
    message = N_("Send JSON with an upload_id, or multipart/form-data with a file.")


class MissingFilePart(AppError):
    status_code = 422
    error_code = "FILE_REQUIRED"
    title = N_("Validation failed")
    message = N_("The form has no 'file' part.")


class OwnDesignReview(AppError):
    status_code = 403
    error_code = "OWN_DESIGN_REVIEW"
    title = N_("Forbidden")
    message = N_("Members of the design's workspace cannot review it.")


class AlreadyReplied(Conflict):
    error_code = "ALREADY_REPLIED"
    message = N_("This review already has a reply.")


class AlreadyReported(Conflict):
    error_code = "ALREADY_REPORTED"
    message = N_("You have already reported this review.")


class NotReviewAuthor(AppError):
    status_code = 403
    error_code = "NOT_REVIEW_AUTHOR"
    title = N_("Forbidden")
    message = N_("Only the review's author can delete it.")


class ShareLinkPinRequired(AppError):
    status_code = 401
    error_code = "SHARE_PIN_REQUIRED"
    title = N_("Unauthorized")
    message = N_("This link is protected by a PIN: send it in the X-Share-Pin header.")


class ShareLinkPinWrong(AppError):
    status_code = 401
    error_code = "SHARE_PIN_WRONG"
    title = N_("Unauthorized")
    message = N_("The PIN is wrong.")


class ShareLinkNoDownload(AppError):
    status_code = 403
    error_code = "SHARE_LINK_VIEW_ONLY"
    title = N_("Forbidden")
    message = N_("This link allows viewing only, not downloading.")


class ExpiryInPast(AppError):
    status_code = 422
    error_code = "EXPIRY_IN_PAST"
    title = N_("Validation failed")
    message = N_("The expiry must be in the future.")


class NoVersionYet(Conflict):
    error_code = "NO_VERSION"
    message = N_("The design has no file yet.")
