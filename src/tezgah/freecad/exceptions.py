"""Errors of the FCStd reader: each a stable ``error_code`` clients can act on.

An uploaded FCStd is untrusted. Whatever is wrong with it ends in one of these (a 4xx problem
response), never in a crash or an unbounded amount of work. ``extra`` carries machine-readable
detail (``reason``, ``entry``) next to the localized message.
"""

from __future__ import annotations

from tezgah.core.errors import AppError
from tezgah.core.i18n import N_


class FCStdError(AppError):
    """Base of the FCStd reader's errors: the file is not a FreeCAD document we accept."""

    status_code = 422
    error_code = "FCSTD_INVALID"
    title = N_("Invalid FreeCAD file")
    message = N_("The file is not a valid FreeCAD document.")


class FCStdNotAZip(FCStdError):
    error_code = "FCSTD_NOT_A_ZIP"
    message = N_("The file is not a FreeCAD document: FCStd files are zip archives.")


class FCStdTruncated(FCStdError):
    error_code = "FCSTD_TRUNCATED"
    message = N_("The file is incomplete: the end of the archive is missing. Upload it again.")


class FCStdCorrupt(FCStdError):
    error_code = "FCSTD_CORRUPT"
    message = N_("The archive is damaged and cannot be read.")


class FCStdUnsafeEntry(FCStdError):
    error_code = "FCSTD_UNSAFE_ENTRY"
    message = N_("The archive holds an entry that is not allowed: {entry}.")


class FCStdTooLarge(FCStdError):
    status_code = 413
    error_code = "FCSTD_TOO_LARGE"
    title = N_("File too large")
    message = N_("The document is larger than the limit of {limit} bytes.")


class FCStdTooManyEntries(FCStdError):
    status_code = 413
    error_code = "FCSTD_TOO_MANY_ENTRIES"
    title = N_("File too large")
    message = N_("The archive holds more than {limit} files.")


class FCStdTooManyObjects(FCStdError):
    status_code = 413
    error_code = "FCSTD_TOO_MANY_OBJECTS"
    title = N_("File too large")
    message = N_("The document holds more than {limit} objects.")


class FCStdCompressionRatio(FCStdError):
    error_code = "FCSTD_COMPRESSION_RATIO"
    message = N_(
        "The archive expands more than {limit} times its compressed size, "
        "which is typical of a zip bomb."
    )


class FCStdXMLForbidden(FCStdError):
    error_code = "FCSTD_XML_FORBIDDEN"
    message = N_(
        "Document.xml uses XML features that are refused for safety "
        "(document type declarations, entities or external references)."
    )


class FCStdMalformedXML(FCStdError):
    error_code = "FCSTD_MALFORMED_XML"
    message = N_("Document.xml is not a well-formed FreeCAD document.")


class FCStdNoDocument(FCStdError):
    error_code = "FCSTD_NO_DOCUMENT"
    message = N_("The archive has no Document.xml: it is not a FreeCAD document.")


class FCStdEmptyDocument(FCStdError):
    error_code = "FCSTD_EMPTY_DOCUMENT"
    message = N_("The FreeCAD document holds no objects. Was it saved before it was finished?")


class FCStdBadThumbnail(FCStdError):
    error_code = "FCSTD_BAD_THUMBNAIL"
    message = N_("The document's thumbnail is not a valid PNG image.")
