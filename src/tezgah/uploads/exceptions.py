"""Errors of the uploads domain. Every tus error carries ``Tus-Resumable``; the statuses the tus
protocol prescribes (409, 410, 412, 413, 415, 460) keep their problem+json bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tezgah.core.errors import AppError
from tezgah.core.i18n import N_

TUS_VERSION = "1.0.0"


class TusError(AppError):
    def __init__(
        self,
        message: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            message, params=params, headers={"Tus-Resumable": TUS_VERSION, **(headers or {})}
        )


class UploadNotFound(TusError):
    status_code = 404
    error_code = "UPLOAD_NOT_FOUND"
    title = N_("Not found")
    message = N_("The upload was not found.")


class UploadExpired(TusError):
    status_code = 410
    error_code = "UPLOAD_EXPIRED"
    title = N_("Gone")
    message = N_("The upload has expired. Start a new upload.")


class UploadOffsetMismatch(TusError):
    status_code = 409
    error_code = "UPLOAD_OFFSET_MISMATCH"
    title = N_("Conflict")
    message = N_("Upload-Offset {given} does not match the upload's offset {expected}.")


class UploadBusy(TusError):
    status_code = 409
    error_code = "UPLOAD_BUSY"
    title = N_("Conflict")
    message = N_("Another request is writing to this upload. Try again shortly.")


class UploadChecksumMismatch(TusError):
    status_code = 460
    error_code = "UPLOAD_CHECKSUM_MISMATCH"
    title = N_("Checksum mismatch")
    message = N_("The chunk does not match its Upload-Checksum; it was discarded.")


class UnsupportedChecksum(TusError):
    status_code = 400
    error_code = "UNSUPPORTED_CHECKSUM"
    message = N_("Upload-Checksum must be 'sha256 <base64 digest>'.")


class TusVersionUnsupported(TusError):
    status_code = 412
    error_code = "TUS_VERSION_UNSUPPORTED"
    title = N_("Precondition failed")
    message = N_("Only tus protocol version {version} is supported.")


class InvalidUploadHeader(TusError):
    status_code = 400
    error_code = "INVALID_UPLOAD_HEADER"
    message = N_("The {header} header is missing or invalid.")


class UploadTooLarge(TusError):
    status_code = 413
    error_code = "UPLOAD_TOO_LARGE"
    title = N_("Payload too large")
    message = N_("The upload is larger than the limit of {limit} bytes.")


class UploadQuotaExceeded(TusError):
    status_code = 413
    error_code = "UPLOAD_QUOTA_EXCEEDED"
    title = N_("Payload too large")
    message = N_("The workspace's upload quota of {limit} bytes would be exceeded.")


class UploadContentType(TusError):
    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"
    title = N_("Unsupported media type")
    message = N_("Send the request body as {expected}.")
