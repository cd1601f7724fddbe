"""Read what is inside an FCStd file without FreeCAD, safely.

An FCStd file is a zip archive: ``Document.xml`` (the objects and their properties), shapes as
OpenCASCADE BRep files the XML refers to, and, when saved by the GUI, ``GuiDocument.xml`` and
``thumbnails/Thumbnail.png``. Uploaded files are untrusted, so :func:`inspect_fcstd` reads one in
three guarded steps and turns every problem into an :class:`~tezgah.freecad.exceptions.FCStdError`:

1. **The archive, before any byte is decompressed.** The end record is read by hand first, so a
   central directory claiming millions of entries is refused before :mod:`zipfile` builds them.
   Then every entry is checked: names (no ``..``, absolute paths, backslashes, drive letters,
   control characters, duplicates), type (no symlinks or device files in the Unix mode bits), no
   encryption, only stored or deflated data, no overlapping data (the "non-recursive" zip bomb),
   and the declared sizes against :class:`Limits` (total size, per-entry and overall ratio).
2. **Every entry is then streamed with a hard cap**, counting the bytes as they come out of the
   decompressor, never trusting the declared sizes; entries are only counted and CRC-checked,
   except ``Document.xml`` (fed chunk by chunk to the XML parser) and the thumbnail. A zip stored
   inside the archive is never opened: nothing here recurses.
3. **Document.xml** is parsed with defusedxml's expat parser with document type declarations
   forbidden, so entity expansion ("billion laughs") and external entities cannot happen. The
   parser hands its events to a builder that keeps only the properties the inspection reads.

What it reports (plain frozen dataclasses; ``pydantic.TypeAdapter(FCStdInspection)`` serialises
them):

- the FreeCAD version that saved the file (``ProgramVersion``, ``SchemaVersion``), the document's
  label, metadata and unit system (``UnitSystem``, FreeCAD 0.21 and later);
- every object: name, label, type, links, expressions, quantities with their units, and its place
  in a **tree** derived from the links (see :func:`_assign_parents`);
- **spreadsheets** (``Spreadsheet::Sheet``): aliased cells with content, literal value and unit;
- **parameters**, the values a user is meant to change: spreadsheet aliases and the user-added
  (dynamic) properties of an ``App::VarSet`` or of any object that is not a scripted feature
  (see :func:`_object_parameters`);
- the embedded thumbnail, after checking that it really is a PNG of a sane size.

This is synchronous, CPU- and IO-bound code: call it from a worker thread.
"""

from __future__ import annotations

import math
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Final, NoReturn
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from tezgah.core.i18n import N_
from tezgah.freecad.exceptions import (
    FCStdBadThumbnail,
    FCStdCompressionRatio,
    FCStdCorrupt,
    FCStdEmptyDocument,
    FCStdMalformedXML,
    FCStdNoDocument,
    FCStdNotAZip,
    FCStdTooLarge,
    FCStdTooManyEntries,
    FCStdTooManyObjects,
    FCStdTruncated,
    FCStdUnsafeEntry,
    FCStdXMLForbidden,
)

MiB: Final = 1024 * 1024
DOCUMENT_XML: Final = "Document.xml"
THUMBNAIL_PNG: Final = "thumbnails/Thumbnail.png"
CHUNK_SIZE: Final = 64 * 1024

Scalar = bool | int | float | str


@dataclass(frozen=True, slots=True)
class Limits:
    """How much an FCStd file may hold. The defaults fit real documents with a wide margin."""

    #: Size of the FCStd file itself.
    max_archive_bytes: int = 256 * MiB
    #: Entries in the archive (a FreeCAD document has one BRep file per shape, plus a few).
    max_entries: int = 10_000
    #: Sum of every entry's uncompressed size.
    max_total_uncompressed: int = 512 * MiB
    #: Uncompressed/compressed ratio allowed per entry and for the whole archive ...
    max_compression_ratio: float = 200.0
    #: ... once the entry (or the whole) expands beyond this size. Small files may compress well.
    ratio_threshold: int = 1 * MiB
    #: Uncompressed size of Document.xml.
    max_document_xml: int = 64 * MiB
    #: Objects in the document.
    max_objects: int = 100_000
    #: XML nesting depth in Document.xml (FreeCAD writes about 8 levels).
    max_xml_depth: int = 64
    #: Size of the thumbnail PNG and its width and height in pixels (FreeCAD writes 128 x 128).
    max_thumbnail_bytes: int = 4 * MiB
    max_thumbnail_side: int = 2048
    #: Length of an entry name in characters.
    max_entry_name: int = 1024


@dataclass(frozen=True, slots=True)
class Quantity:
    """A property with a physical unit. Values are in FreeCAD's internal units (mm, kg, s, deg)."""

    name: str
    type: str
    value: float | None
    unit: str


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    type: str
    label: str
    #: The object this one sits under in the tree (None: a root). See :func:`_assign_parents`.
    parent: str | None
    children: list[str]
    #: Every object this one links to through a link property (the dependency graph; links
    #: made by expressions are in ``expressions``), in property order.
    links: list[str]
    #: Property path -> expression bound to it (``{"Length": "Params.length"}``).
    expressions: dict[str, str]
    quantities: list[Quantity]
    #: The archive entry holding the object's shape (a BRep file), when it has one.
    shape_file: str | None = None


@dataclass(frozen=True, slots=True)
class Parameter:
    """A value a user is meant to change: a spreadsheet alias or a user-added property."""

    object: str
    name: str
    source: str  # "spreadsheet" or "property"
    type: str
    value: Scalar | None
    unit: str | None = None
    group: str | None = None
    description: str | None = None
    expression: str | None = None
    read_only: bool = False
    #: The cell address of a spreadsheet alias (``"B1"``).
    cell: str | None = None


@dataclass(frozen=True, slots=True)
class SheetAlias:
    alias: str
    address: str
    #: The cell's content as FreeCAD stores it (``"=100mm"``, ``"12"``, ``"çelik"``).
    content: str
    #: The literal value when the content is one (a number, a quantity, a text); None when it is
    #: a formula that needs FreeCAD to evaluate (``"=length * 2"``).
    value: Scalar | None
    unit: str | None
    expression: str | None
    display_unit: str | None


@dataclass(frozen=True, slots=True)
class Spreadsheet:
    name: str
    label: str
    cell_count: int
    aliases: list[SheetAlias]


@dataclass(frozen=True, slots=True)
class Thumbnail:
    width: int
    height: int
    png: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class FCStdInspection:
    program_version: str | None
    schema_version: int | None
    file_version: int | None
    label: str | None
    #: The document's non-empty string properties (CreatedBy, CreationDate, License, ...).
    metadata: dict[str, str]
    unit_system: str | None
    objects: list[ObjectInfo]
    roots: list[str]
    parameters: list[Parameter]
    spreadsheets: list[Spreadsheet]
    #: Serialise without ``thumbnail.png``: the image is served on its own.
    thumbnail: Thumbnail | None
    has_thumbnail: bool
    entry_count: int
    #: Bytes actually decompressed from every entry (not the declared sizes).
    uncompressed_size: int
    compressed_size: int


def inspect_fcstd(
    source: str | os.PathLike[str] | IO[bytes], limits: Limits | None = None
) -> FCStdInspection:
    """Check and read an FCStd file given as a path or a seekable binary file object.

    Raises an :class:`~tezgah.freecad.exceptions.FCStdError` for anything wrong with the file;
    ``OSError`` only when the path itself cannot be opened (a server-side problem).
    """
    limits = limits or Limits()
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            return _inspect_stream(handle, limits)
    if not source.seekable():
        raise ValueError("inspect_fcstd needs a seekable file object")
    return _inspect_stream(source, limits)


def _inspect_stream(handle: IO[bytes], limits: Limits) -> FCStdInspection:
    archive_size = _check_end_record(handle, limits)
    with _open_zip(handle) as archive:
        entries = _check_entries(archive, limits, archive_size)
        contents = _read_entries(archive, entries, limits)
    document = contents.document
    if document is None:
        raise FCStdNoDocument(extra={"reason": "missing"})
    if not document.order:
        raise FCStdEmptyDocument()
    names = {info.filename for info in entries}
    return _build_inspection(document, contents, names, archive_size)


# ---------------------------------------------------------------------------------------------
# 1. The archive's structure, before decompressing anything
# ---------------------------------------------------------------------------------------------

_END_RECORD = struct.Struct("<4s4H2LH")
_END_RECORD_SIGNATURE: Final = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIGNATURE: Final = b"PK\x06\x07"
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_END_RECORD_SIGNATURE: Final = b"PK\x06\x06"
_LOCAL_HEADER_SIGNATURE: Final = b"PK\x03\x04"
_LOCAL_HEADER_SIZE: Final = 30
#: A central directory entry is 46 bytes plus its name and extra fields; this allows generous
#: names and extras while refusing a directory far larger than its entry limit needs.
_CENTRAL_DIRECTORY_BYTES_PER_ENTRY: Final = 1024


def _check_end_record(handle: IO[bytes], limits: Limits) -> int:
    """Check size, entry count and directory size from the end record; return the file size."""
    size = handle.seek(0, os.SEEK_END)
    if size > limits.max_archive_bytes:
        raise FCStdTooLarge(
            N_("The file is larger than the limit of {limit} bytes."),
            params={"limit": limits.max_archive_bytes},
            extra={"reason": "archive_size"},
        )
    if size == 0:
        raise FCStdNotAZip(N_("The file is empty."), extra={"reason": "empty"})
    position = _find_end_record(handle, size)
    if position is None:
        handle.seek(0)
        if handle.read(4) == _LOCAL_HEADER_SIGNATURE:
            raise FCStdTruncated()
        raise FCStdNotAZip()
    handle.seek(position)
    record = _END_RECORD.unpack(handle.read(_END_RECORD.size))
    entries, directory_size = _zip64_counts(handle, position) or (record[4], record[5])
    _check_directory_counts(entries, directory_size, limits)
    return size


def _find_end_record(handle: IO[bytes], size: int) -> int | None:
    """Where the end record starts, found the way :mod:`zipfile` finds it (so both read the same
    record): right at the end when the archive has no comment, else the last signature."""
    tail_start = max(0, size - _END_RECORD.size - 0xFFFF)
    handle.seek(tail_start)
    tail = handle.read(size - tail_start)
    last = tail[-_END_RECORD.size :]
    if len(last) == _END_RECORD.size and last[:4] == _END_RECORD_SIGNATURE and last[-2:] == b"\0\0":
        return size - _END_RECORD.size
    found = tail.rfind(_END_RECORD_SIGNATURE)
    if found < 0 or len(tail) - found < _END_RECORD.size:
        return None
    return tail_start + found


def _zip64_counts(handle: IO[bytes], position: int) -> tuple[int, int] | None:
    """Counts from the zip64 end record, which :mod:`zipfile` uses whenever its locator sits just
    before the end record (whatever the end record says)."""
    locator_at = position - _ZIP64_LOCATOR.size
    record_at = locator_at - _ZIP64_END_RECORD.size
    if record_at < 0:
        return None
    handle.seek(record_at)
    data = handle.read(_ZIP64_END_RECORD.size + _ZIP64_LOCATOR.size)
    if data[_ZIP64_END_RECORD.size :][:4] != _ZIP64_LOCATOR_SIGNATURE:
        return None
    record = _ZIP64_END_RECORD.unpack_from(data)
    if record[0] != _ZIP64_END_RECORD_SIGNATURE:
        return None
    return record[7], record[8]


def _check_directory_counts(entries: int, directory_size: int, limits: Limits) -> None:
    if entries > limits.max_entries:
        raise FCStdTooManyEntries(params={"limit": limits.max_entries})
    if directory_size > max(limits.max_entries, 1) * _CENTRAL_DIRECTORY_BYTES_PER_ENTRY:
        raise FCStdTooManyEntries(
            params={"limit": limits.max_entries}, extra={"reason": "directory_size"}
        )


def _open_zip(handle: IO[bytes]) -> zipfile.ZipFile:
    handle.seek(0)
    try:
        return zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, struct.error) as exc:
        raise FCStdCorrupt(extra={"reason": "central_directory"}) from exc


_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_ALLOWED_COMPRESSION: Final = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_ENCRYPTION_FLAGS: Final = 0x0001 | 0x0040 | 0x2000  # encrypted, strong encryption, masked CD


def _check_entries(
    archive: zipfile.ZipFile, limits: Limits, archive_size: int
) -> list[zipfile.ZipInfo]:
    entries = archive.infolist()
    if len(entries) > limits.max_entries:
        raise FCStdTooManyEntries(params={"limit": limits.max_entries})
    seen: set[str] = set()
    for info in entries:
        _check_entry_name(info.orig_filename, limits)
        _check_entry_kind(info)
        folded = info.filename.casefold()
        if folded in seen:
            _unsafe(
                info,
                N_("The archive holds the entry {entry} more than once."),
                "duplicate",
            )
        seen.add(folded)
    _check_declared_sizes(entries, limits)
    _check_no_overlap(entries, archive_size)
    return entries


def _display(name: str) -> str:
    """An entry name fit for an error message: printable and short."""
    shown = "".join(char if char.isprintable() else "?" for char in name[:120])
    return shown + ("…" if len(name) > 120 else "")


def _unsafe(info: zipfile.ZipInfo | str, message: str, reason: str) -> NoReturn:
    name = info if isinstance(info, str) else info.orig_filename
    raise FCStdUnsafeEntry(
        message,
        params={"entry": _display(name)},
        extra={"reason": reason, "entry": _display(name)},
    )


def _check_entry_name(name: str, limits: Limits) -> None:
    if name.startswith("/"):
        _unsafe(name, N_("The archive entry {entry} has an absolute path."), "absolute_path")
    if "\\" in name or _DRIVE_LETTER.match(name):
        _unsafe(name, N_("The archive entry {entry} has a Windows-style path."), "windows_path")
    parts = name.split("/")
    if ".." in parts:
        _unsafe(
            name,
            N_("The archive entry {entry} points outside the archive (path traversal)."),
            "path_traversal",
        )
    if parts[-1] == "":  # a directory entry: "thumbnails/"
        parts = parts[:-1]
    invalid = (
        not parts
        or len(name) > limits.max_entry_name
        or any(part in ("", ".") for part in parts)
        or any(ord(char) < 32 or ord(char) == 127 for char in name)
    )
    if invalid:
        _unsafe(name, N_("The archive entry {entry} has an invalid name."), "invalid_name")


def _check_entry_kind(info: zipfile.ZipInfo) -> None:
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        _unsafe(info, N_("The archive entry {entry} is a symbolic link."), "symlink")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        _unsafe(info, N_("The archive entry {entry} is not a regular file."), "special_file")
    if info.flag_bits & _ENCRYPTION_FLAGS:
        _unsafe(info, N_("The archive entry {entry} is encrypted."), "encrypted")
    if info.compress_type not in _ALLOWED_COMPRESSION:
        _unsafe(
            info,
            N_("The archive entry {entry} uses an unsupported compression method."),
            "compression_method",
        )


def _check_declared_sizes(entries: list[zipfile.ZipInfo], limits: Limits) -> None:
    """Refuse what the central directory admits to; the streaming step catches lies."""
    total = sum(info.file_size for info in entries)
    if total > limits.max_total_uncompressed:
        _too_large_total(limits)
    for info in entries:
        _check_ratio(info.file_size, info.compress_size, limits)
        if info.filename == DOCUMENT_XML and info.file_size > limits.max_document_xml:
            _too_large_document(limits)
    _check_ratio(total, sum(info.compress_size for info in entries), limits)


def _check_ratio(uncompressed: int, compressed: int, limits: Limits) -> None:
    if uncompressed <= limits.ratio_threshold:
        return
    if uncompressed > limits.max_compression_ratio * max(compressed, 1):
        raise FCStdCompressionRatio(params={"limit": f"{limits.max_compression_ratio:g}"})


def _too_large_total(limits: Limits) -> NoReturn:
    raise FCStdTooLarge(
        N_("The archive expands to more than {limit} bytes."),
        params={"limit": limits.max_total_uncompressed},
        extra={"reason": "uncompressed_size"},
    )


def _too_large_document(limits: Limits) -> NoReturn:
    raise FCStdTooLarge(
        N_("Document.xml is larger than the limit of {limit} bytes."),
        params={"limit": limits.max_document_xml},
        extra={"reason": "document_xml"},
    )


def _check_no_overlap(entries: list[zipfile.ZipInfo], archive_size: int) -> None:
    """Each entry's data must end before the next one starts and inside the file.

    Overlapping entries that share one compressed stream make a small archive expand to
    gigabytes without any single entry looking unusual.
    """
    ordered = sorted(entries, key=lambda info: info.header_offset)
    if ordered and ordered[0].header_offset < 0:
        raise FCStdCorrupt(extra={"reason": "central_directory"})
    for current, following in zip(ordered, [*ordered[1:], None], strict=True):
        end = current.header_offset + _LOCAL_HEADER_SIZE + current.compress_size
        limit = archive_size if following is None else following.header_offset
        if end > limit:
            _unsafe(
                current,
                N_("The archive entry {entry} overlaps another one."),
                "overlapping",
            )


# ---------------------------------------------------------------------------------------------
# 2. Streaming every entry with a hard cap
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Contents:
    document: _Document | None = None
    thumbnail: Thumbnail | None = None
    uncompressed: int = 0


class DecompressionBudget:
    """Bytes decompressed so far, across every entry."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.used = 0

    def spend(self, count: int) -> None:
        self.used += count
        if self.used > self.limits.max_total_uncompressed:
            _too_large_total(self.limits)


def _read_entries(
    archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], limits: Limits
) -> _Contents:
    contents = _Contents()
    budget = DecompressionBudget(limits)
    for info in entries:
        if info.is_dir():
            continue
        if info.filename == DOCUMENT_XML:
            chunks = _stream_entry(archive, info, limits, budget, limits.max_document_xml)
            contents.document = _parse_document(chunks, limits)
        elif info.filename == THUMBNAIL_PNG:
            contents.thumbnail = _read_thumbnail(archive, info, limits, budget)
        else:
            for _chunk in _stream_entry(archive, info, limits, budget, None):
                pass
    contents.uncompressed = budget.used
    return contents


def _stream_entry(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    limits: Limits,
    budget: DecompressionBudget,
    cap: int | None,
) -> Iterator[bytes]:
    """Yield an entry's bytes as they are decompressed, counting them against every limit."""
    try:
        with archive.open(info) as stream:
            yield from capped_chunks(stream.read, info.compress_size, limits, budget, cap)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as exc:
        raise FCStdCorrupt(
            N_("The archive entry {entry} is damaged and cannot be read."),
            params={"entry": _display(info.filename)},
            extra={"reason": "entry_data", "entry": _display(info.filename)},
        ) from exc


def capped_chunks(
    read: Callable[[int], bytes],
    compressed_size: int,
    limits: Limits,
    budget: DecompressionBudget,
    cap: int | None,
) -> Iterator[bytes]:
    """Chunks from ``read`` until it returns nothing, refusing as soon as a limit is passed.

    This does not rely on the declared uncompressed size at all: the count is of the bytes that
    actually came out, compared with the compressed size (what the archive really spends).
    """
    count = 0
    while chunk := read(CHUNK_SIZE):
        count += len(chunk)
        budget.spend(len(chunk))
        if cap is not None and count > cap:
            raise FCStdTooLarge(params={"limit": cap}, extra={"reason": "entry_size"})
        _check_ratio(count, compressed_size, limits)
        yield chunk


def _read_thumbnail(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits, budget: DecompressionBudget
) -> Thumbnail:
    if info.file_size > limits.max_thumbnail_bytes:
        _bad_thumbnail("too_large")
    try:
        data = b"".join(_stream_entry(archive, info, limits, budget, limits.max_thumbnail_bytes))
    except FCStdTooLarge as exc:
        if exc.extra.get("reason") != "entry_size":
            raise
        _bad_thumbnail("too_large")
    return check_png(data, limits)


def _bad_thumbnail(reason: str) -> NoReturn:
    raise FCStdBadThumbnail(extra={"reason": reason})


_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_PNG_CHUNK_HEAD = struct.Struct(">I4s")
_PNG_IHDR = struct.Struct(">IIBBBBB")
#: Allowed bit depths per PNG colour type (PNG specification, table 11.1).
_PNG_BIT_DEPTHS: Final = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}


def check_png(data: bytes, limits: Limits) -> Thumbnail:
    """Check a PNG's structure without decoding it: signature, IHDR first and sane, every chunk's
    length and CRC, at least one IDAT, IEND last. Bytes after IEND are dropped."""
    if not data.startswith(_PNG_SIGNATURE):
        _bad_thumbnail("signature")
    position, width, height, has_data = len(_PNG_SIGNATURE), 0, 0, False
    while True:
        kind, body, position = _png_chunk(data, position)
        if width == 0:
            width, height = _png_header(kind, body, limits)
        elif kind == b"IDAT":
            has_data = True
        elif kind == b"IEND":
            break
    if not has_data:
        _bad_thumbnail("no_image_data")
    return Thumbnail(width=width, height=height, png=data[:position])


def _png_chunk(data: bytes, position: int) -> tuple[bytes, bytes, int]:
    if position + 12 > len(data):
        _bad_thumbnail("truncated")
    length, kind = _PNG_CHUNK_HEAD.unpack_from(data, position)
    end = position + 8 + length
    if length > 0x7FFFFFFF or end + 4 > len(data):
        _bad_thumbnail("truncated")
    body = data[position + 8 : end]
    (crc,) = struct.unpack_from(">I", data, end)
    if zlib.crc32(kind + body) != crc:
        _bad_thumbnail("crc")
    return kind, body, end + 4


def _png_header(kind: bytes, body: bytes, limits: Limits) -> tuple[int, int]:
    if kind != b"IHDR" or len(body) != _PNG_IHDR.size:
        _bad_thumbnail("header")
    width, height, depth, colour, compression, filtering, interlace = _PNG_IHDR.unpack(body)
    if not (0 < width <= limits.max_thumbnail_side and 0 < height <= limits.max_thumbnail_side):
        _bad_thumbnail("dimensions")
    valid = (
        depth in _PNG_BIT_DEPTHS.get(colour, set())
        and compression == 0
        and filtering == 0
        and interlace in (0, 1)
    )
    if not valid:
        _bad_thumbnail("header")
    return width, height


# ---------------------------------------------------------------------------------------------
# 3. Document.xml, parsed one object at a time
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Document:
    attributes: dict[str, str] = field(default_factory=dict)
    properties: Element | None = None
    order: list[str] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)
    data: dict[str, Element] = field(default_factory=dict)


class _DocumentBuilder:
    """XML parser target keeping only what the inspection needs.

    The document's ``<Properties>`` and each ``<ObjectData>/<Object>`` are built as small element
    trees; everything else (dependencies, text, whitespace) is dropped as it streams past, and so
    is the content of the properties the inspection never reads (sketch geometry, constraint and
    number lists, toolpaths), which is most of a large document.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.document = _Document()
        self.path: list[str] = []
        self.builder: TreeBuilder | None = None
        self.captured_at = 0
        self.skipped_below: int | None = None
        self.object_data = 0

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.path.append(tag)
        depth = len(self.path)
        if depth > self.limits.max_xml_depth:
            raise FCStdMalformedXML(extra={"reason": "too_deep"})
        if self.builder is not None:
            self._forward_start(self.builder, depth, tag, attrib)
        elif depth == 1:
            self._root(tag, attrib)
        elif depth == 3 and self.path[1] == "Objects" and tag == "Object":
            self._declare_object(attrib)
        elif self._captures(depth, tag):
            self.builder, self.captured_at = TreeBuilder(), depth
            self.builder.start(tag, attrib)

    def _forward_start(
        self, builder: TreeBuilder, depth: int, tag: str, attrib: dict[str, str]
    ) -> None:
        if self.skipped_below is not None and depth > self.skipped_below:
            return
        builder.start(tag, attrib)
        # Document/ObjectData/Object/Properties/Property
        is_object_property = depth == self.captured_at + 2 and self.captured_at == 3
        if is_object_property and tag == "Property" and not _content_needed(attrib):
            self.skipped_below = depth

    def _root(self, tag: str, attrib: dict[str, str]) -> None:
        if tag != "Document":
            raise FCStdMalformedXML(extra={"reason": "not_a_document", "root": _display(tag)})
        self.document.attributes = dict(attrib)

    def _captures(self, depth: int, tag: str) -> bool:
        if depth == 2 and tag == "Properties":
            return True
        if depth == 3 and self.path[1] == "ObjectData" and tag == "Object":
            self.object_data += 1
            if self.object_data > self.limits.max_objects:
                raise FCStdTooManyObjects(params={"limit": self.limits.max_objects})
            return True
        return False

    def _declare_object(self, attrib: dict[str, str]) -> None:
        name, kind = attrib.get("name", ""), attrib.get("type", "")
        if not name or not kind or name in self.document.types:
            raise FCStdMalformedXML(extra={"reason": "object_declaration"})
        if len(self.document.order) >= self.limits.max_objects:
            raise FCStdTooManyObjects(params={"limit": self.limits.max_objects})
        self.document.order.append(name)
        self.document.types[name] = kind

    def end(self, tag: str) -> None:
        depth = len(self.path)
        if self.builder is not None and (self.skipped_below is None or depth <= self.skipped_below):
            self.skipped_below = None
            element = self.builder.end(tag)
            if depth == self.captured_at:
                self.builder = None
                self._store(element)
        self.path.pop()

    def _store(self, element: Element) -> None:
        if element.tag == "Properties":
            self.document.properties = element
            return
        name = element.get("name", "")
        if name in self.document.types and name not in self.document.data:
            self.document.data[name] = element

    def data(self, text: str) -> None:
        pass  # FreeCAD keeps every value in attributes

    def close(self) -> _Document:
        return self.document


#: Object property types whose content the inspection reads (besides links, quantities, the
#: label and user-added properties).
_READ_PROPERTY_TYPES: Final = frozenset(
    {
        "App::PropertyExpressionEngine",
        "App::PropertyPythonObject",
        "Part::PropertyPartShape",
        "Spreadsheet::PropertySheet",
    }
)


def _content_needed(attrib: dict[str, str]) -> bool:
    kind = attrib.get("type", "")
    return (
        "Link" in kind
        or kind in _READ_PROPERTY_TYPES
        or kind in QUANTITY_UNITS
        or attrib.get("name") == "Label"
        or "group" in attrib
        or bool((_int(attrib.get("status")) or 0) & _STATUS_DYNAMIC)
    )


def _parse_document(chunks: Iterator[bytes], limits: Limits) -> _Document:
    builder = _DocumentBuilder(limits)
    parser = DefusedXMLParser(target=builder, forbid_dtd=True)
    try:
        for chunk in chunks:
            parser.feed(chunk)
        parser.close()
    except DefusedXmlException as exc:
        raise FCStdXMLForbidden(extra={"reason": type(exc).__name__}) from exc
    except ParseError as exc:
        line, column = exc.position
        raise FCStdMalformedXML(extra={"reason": "syntax", "line": line, "column": column}) from exc
    except (ValueError, LookupError) as exc:  # unknown encodings and the like
        raise FCStdMalformedXML(extra={"reason": "encoding"}) from exc
    return builder.document


# ---------------------------------------------------------------------------------------------
# From parsed elements to the inspection
# ---------------------------------------------------------------------------------------------

#: Property types with a unit, and FreeCAD's internal unit for each (values are stored in it).
QUANTITY_UNITS: Final[dict[str, str]] = {
    "App::PropertyLength": "mm",
    "App::PropertyDistance": "mm",
    "App::PropertyAngle": "deg",
    "App::PropertyArea": "mm^2",
    "App::PropertyVolume": "mm^3",
    "App::PropertySpeed": "mm/s",
    "App::PropertyAcceleration": "mm/s^2",
    "App::PropertyForce": "mm*kg/s^2",
    "App::PropertyPressure": "kg/(mm*s^2)",
    "App::PropertyFrequency": "1/s",
    "App::PropertyElectricPotential": "mm^2*kg/(s^3*A)",
    "App::PropertyVacuumPermittivity": "s^4*A^2/(mm^3*kg)",
    "App::PropertyTime": "s",
    "App::PropertyMass": "kg",
    "App::PropertyTemperature": "K",
    "App::PropertyElectricCurrent": "A",
}

#: Link properties in the tree sense: FreeCAD's "local" and "child" scopes. Global, hidden and
#: cross-document (XLink) links are references, not ownership.
_TREE_LINK_TYPES: Final = frozenset(
    f"App::PropertyLink{suffix}{scope}"
    for suffix in ("", "List", "Sub", "SubList")
    for scope in ("", "Child")
)
#: Containers: group members and a part's or body's origin.
_CONTAINMENT_PROPERTIES: Final = frozenset({"Group", "OriginFeatures", "Origin"})
#: Local links that point at something used, not owned: attachment and sketch references,
#: PartDesign's previous feature and tip, reference axes and faces, materials.
_REFERENCE_PROPERTIES: Final = frozenset(
    {
        "Support",
        "AttachmentSupport",
        "ExternalGeometry",
        "BaseFeature",
        "Tip",
        "ReferenceAxis",
        "UpToFace",
        "UpToShape",
        "Material",
    }
)
_DOCUMENT_METADATA: Final = (
    "CreatedBy",
    "CreationDate",
    "LastModifiedBy",
    "LastModifiedDate",
    "Company",
    "Comment",
    "License",
    "LicenseURL",
    "Id",
    "Uid",
)
_STATUS_READ_ONLY: Final = 1 << 2
_STATUS_HIDDEN: Final = 1 << 3
_STATUS_DYNAMIC: Final = 1 << 21


def _build_inspection(
    document: _Document, contents: _Contents, entry_names: set[str], archive_size: int
) -> FCStdInspection:
    document_properties = _properties(document.properties)
    objects = _objects(document, entry_names)
    sheets = {name: sheet for name in document.order if (sheet := _spreadsheet(name, document))}
    return FCStdInspection(
        program_version=document.attributes.get("ProgramVersion"),
        schema_version=_int(document.attributes.get("SchemaVersion")),
        file_version=_int(document.attributes.get("FileVersion")),
        label=_string_value(document_properties.get("Label")),
        metadata=_metadata(document_properties),
        unit_system=_unit_system(document_properties.get("UnitSystem")),
        objects=objects,
        roots=[info.name for info in objects if info.parent is None],
        parameters=[
            parameter
            for name in document.order
            for parameter in _object_parameters(name, document, sheets.get(name))
        ],
        spreadsheets=list(sheets.values()),
        thumbnail=contents.thumbnail,
        has_thumbnail=contents.thumbnail is not None,
        entry_count=len(entry_names),
        uncompressed_size=contents.uncompressed,
        compressed_size=archive_size,
    )


def _properties(container: Element | None) -> dict[str, Element]:
    """Property name -> ``<Property>`` element; transient ``<_Property>`` entries hold nothing."""
    if container is None:
        return {}
    return {prop.get("name", ""): prop for prop in container.iterfind("Property")}


def _object_properties(name: str, document: _Document) -> dict[str, Element]:
    data = document.data.get(name)
    return {} if data is None else _properties(data.find("Properties"))


def _metadata(properties: dict[str, Element]) -> dict[str, str]:
    values = {key: _string_value(properties.get(key)) for key in _DOCUMENT_METADATA}
    return {key: value for key, value in values.items() if value}


def _unit_system(prop: Element | None) -> str | None:
    value = _scalar_value(prop) if prop is not None else None
    return value if isinstance(value, str) and value else None


def _objects(document: _Document, entry_names: set[str]) -> list[ObjectInfo]:
    properties = {name: _object_properties(name, document) for name in document.order}
    known = set(document.order)
    containment = {
        name: _targets(props, known, containment=True) for name, props in properties.items()
    }
    inputs = {name: _targets(props, known, containment=False) for name, props in properties.items()}
    parents = _assign_parents(document.order, containment, inputs)
    return [
        ObjectInfo(
            name=name,
            type=document.types[name],
            label=_string_value(properties[name].get("Label")) or name,
            parent=parents.get(name),
            children=[
                child
                for child in dict.fromkeys([*containment[name], *inputs[name]])
                if parents.get(child) == name
            ],
            links=_all_links(properties[name], known),
            expressions=_expressions(properties[name].get("ExpressionEngine")),
            quantities=_quantities(properties[name]),
            shape_file=_shape_file(properties[name], entry_names),
        )
        for name in document.order
    ]


def _link_names(prop: Element) -> Iterator[str]:
    """Targets of a link property: ``<Link value>`` (link, list), ``<LinkSub value>``,
    ``<Link obj>`` (sub-list). Cross-document ``<XLink>`` elements are not followed."""
    for element in prop.iter():
        if element.tag in ("Link", "LinkSub"):
            target = element.get("value") or element.get("obj")
            if target:
                yield target


def _targets(props: dict[str, Element], known: set[str], *, containment: bool) -> list[str]:
    found: list[str] = []
    for name, prop in props.items():
        if prop.get("type") not in _TREE_LINK_TYPES or name in _REFERENCE_PROPERTIES:
            continue
        if (name in _CONTAINMENT_PROPERTIES) == containment:
            found.extend(target for target in _link_names(prop) if target in known)
    return list(dict.fromkeys(found))


def _all_links(props: dict[str, Element], known: set[str]) -> list[str]:
    found = (
        target
        for prop in props.values()
        if prop.get("type", "").startswith("App::PropertyLink")
        for target in _link_names(prop)
    )
    return list(dict.fromkeys(target for target in found if target in known))


def _assign_parents(
    order: list[str], containment: dict[str, list[str]], inputs: dict[str, list[str]]
) -> dict[str, str]:
    """Derive a tree from the links, as FreeCAD's tree view shows it.

    A document is a graph, not a tree; this gives every object at most one parent:

    1. **Containment** first: an object listed in a group's ``Group`` (DocumentObjectGroup,
       App::Part, PartDesign Body), an origin's ``OriginFeatures`` or a part's ``Origin`` sits
       under that container (the first one, in document order).
    2. **Consumption** then: a feature's local-scope link inputs (a Cut's ``Base`` and ``Tool``, a
       Pad's ``Profile``, a MultiFuse's ``Shapes``) move under the feature when they are
       top-level or share its container, the first consumer in document order winning. So a Pad
       shows its sketch and a grouped Cut its box and cylinder, while an origin axis a feature
       merely refers to stays in its origin. Reference links (attachment ``Support``,
       ``BaseFeature``, ``Tip``, sketch ``ExternalGeometry``, ...), global, hidden and
       cross-document links never make a parent.
    3. A cycle (only a hand-made file has one) is broken so every object is reachable from a root.
    """
    parents: dict[str, str] = {}
    for owner in order:
        for child in containment[owner]:
            if child != owner and child not in parents:
                parents[child] = owner
    consumed: set[str] = set()
    for owner in order:
        for child in inputs[owner]:
            if (
                child != owner
                and child not in consumed
                and parents.get(child) in (None, parents.get(owner))
            ):
                parents[child] = owner
                consumed.add(child)
    _break_cycles(order, parents)
    return parents


def _break_cycles(order: list[str], parents: dict[str, str]) -> None:
    done: set[str] = set()
    for start in order:
        path: dict[str, None] = {}
        node: str | None = start
        while node is not None and node not in done and node not in path:
            path[node] = None
            node = parents.get(node)
        if node is not None and node in path:
            del parents[node]  # the walk came back to itself: make this node a root
        done.update(path)


def _expressions(prop: Element | None) -> dict[str, str]:
    if prop is None:
        return {}
    return {
        expression.get("path", "").lstrip("."): expression.get("expression", "")
        for expression in prop.iter("Expression")
        if expression.get("path")
    }


def _quantities(props: dict[str, Element]) -> list[Quantity]:
    return [
        Quantity(name=name, type=kind, value=_float(_first_value(prop)), unit=unit)
        for name, prop in props.items()
        if (unit := QUANTITY_UNITS.get(kind := prop.get("type", ""))) is not None
    ]


def _shape_file(props: dict[str, Element], entry_names: set[str]) -> str | None:
    shape = props.get("Shape")
    part = shape.find("Part") if shape is not None else None
    file = part.get("file") if part is not None else None
    return file if file in entry_names else None


# --- parameters ------------------------------------------------------------------------------


def _object_parameters(
    name: str, document: _Document, sheet: Spreadsheet | None
) -> list[Parameter]:
    """The values a user is meant to change on one object.

    - a ``Spreadsheet::Sheet``: every aliased cell;
    - any other object: its user-added (dynamic) properties that are not hidden, links or
      containers, i.e. FreeCAD 0.22+'s ``App::VarSet``, or a "property bag" made by adding
      properties to an ``App::FeaturePython`` without a proxy, an ``App::Part``, a group, ...
      A scripted object (its ``Proxy`` names a Python class: Draft, CAM, add-on features) is
      skipped: its properties are defined by code, not added by the user.
    """
    if sheet is not None:
        return [_alias_parameter(name, alias) for alias in sheet.aliases]
    props = _object_properties(name, document)
    if _is_scripted(props):
        return []
    expressions = _expressions(props.get("ExpressionEngine"))
    return [
        _property_parameter(name, prop_name, prop, expressions.get(prop_name))
        for prop_name, prop in props.items()
        if _is_user_property(prop)
    ]


def _is_scripted(props: dict[str, Element]) -> bool:
    proxy = props.get("Proxy")
    python = proxy.find("Python") if proxy is not None else None
    return python is not None and bool(python.get("class"))


def _status(prop: Element) -> int:
    return _int(prop.get("status")) or 0


def _is_user_property(prop: Element) -> bool:
    kind = prop.get("type", "")
    dynamic = "group" in prop.attrib or bool(_status(prop) & _STATUS_DYNAMIC)
    hidden = prop.get("hide") == "1" or bool(_status(prop) & _STATUS_HIDDEN)
    reference = "Link" in kind or kind in (
        "App::PropertyPythonObject",
        "App::PropertyExpressionEngine",
    )
    return dynamic and not hidden and not reference


def _property_parameter(owner: str, name: str, prop: Element, expression: str | None) -> Parameter:
    kind = prop.get("type", "")
    return Parameter(
        object=owner,
        name=name,
        source="property",
        type=kind,
        value=_scalar_value(prop),
        unit=QUANTITY_UNITS.get(kind),
        group=prop.get("group") or None,
        description=prop.get("doc") or None,
        expression=expression,
        read_only=prop.get("ro") == "1" or bool(_status(prop) & _STATUS_READ_ONLY),
    )


def _alias_parameter(sheet: str, alias: SheetAlias) -> Parameter:
    return Parameter(
        object=sheet,
        name=alias.alias,
        source="spreadsheet",
        type="Spreadsheet::Cell",
        value=alias.value,
        unit=alias.unit,
        expression=alias.expression,
        cell=alias.address,
    )


# --- spreadsheets ----------------------------------------------------------------------------

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_UNIT_WORD = r"[A-Za-zµ°\"'′″]+(?:\^-?\d+)?"
_LITERAL = re.compile(
    rf"^\s*(?P<number>{_NUMBER})\s*(?P<unit>{_UNIT_WORD}(?:\s*[*/]\s*{_UNIT_WORD})*)?\s*$"
)


def _spreadsheet(name: str, document: _Document) -> Spreadsheet | None:
    if document.types[name] != "Spreadsheet::Sheet":
        return None
    props = _object_properties(name, document)
    cells = [
        cell
        for prop in props.values()
        if prop.get("type") == "Spreadsheet::PropertySheet"
        for cell in prop.iter("Cell")
    ]
    return Spreadsheet(
        name=name,
        label=_string_value(props.get("Label")) or name,
        cell_count=len(cells),
        aliases=[_sheet_alias(cell) for cell in cells if cell.get("alias")],
    )


def _sheet_alias(cell: Element) -> SheetAlias:
    content = cell.get("content", "")
    value, unit, expression = cell_value(content)
    return SheetAlias(
        alias=cell.get("alias", ""),
        address=cell.get("address", ""),
        content=content,
        value=value,
        unit=unit,
        expression=expression,
        display_unit=cell.get("displayUnit") or None,
    )


def cell_value(content: str) -> tuple[Scalar | None, str | None, str | None]:
    """(value, unit, expression) of a spreadsheet cell's stored content.

    ``"=100mm"`` -> (100, "mm", None); ``"12"`` -> (12, None, None); ``"'007"`` -> ("007", ...);
    ``"çelik"`` -> ("çelik", None, None); ``"=length * 2"`` -> (None, None, "length * 2"): a
    formula is left to FreeCAD, only literals are read here.
    """
    if content.startswith("'"):
        return content[1:], None, None
    formula = content.startswith("=")
    literal = _LITERAL.match(content[1:] if formula else content)
    if literal is not None and (formula or literal["unit"] is None):
        number = _number(literal["number"])
        if number is not None:
            return number, literal["unit"], None
    if formula:
        return None, None, content[1:].strip()
    return content, None, None


# --- property values -------------------------------------------------------------------------


def _first_value(prop: Element) -> str | None:
    child = next(iter(prop), None)
    return None if child is None else child.get("value")


def _scalar_value(prop: Element | None) -> Scalar | None:
    """The value of a scalar property from its first child element; None for anything else
    (vectors, placements, lists, links, shapes)."""
    child = None if prop is None else next(iter(prop), None)
    if prop is None or child is None:
        return None
    raw = child.get("value")
    if child.tag == "Float":
        return _float(raw)
    if child.tag == "Integer":
        return _enumeration_value(prop, _int(raw))
    if child.tag == "Bool":
        return raw == "true" if raw in ("true", "false") else None
    if child.tag in ("String", "Path", "Uuid"):
        return raw
    return None


def _enumeration_value(prop: Element, index: int | None) -> Scalar | None:
    names = [enum.get("value", "") for enum in prop.iterfind("CustomEnumList/Enum")]
    if index is not None and names:
        return names[index] if 0 <= index < len(names) else None
    return index


def _string_value(prop: Element | None) -> str | None:
    value = _scalar_value(prop)
    return value if isinstance(value, str) else None


def _float(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _int(raw: str | None) -> int | None:
    if raw is None or len(raw) > 32:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _number(raw: str) -> int | float | None:
    if re.fullmatch(r"[+-]?\d+", raw):
        return _int(raw)
    return _float(raw)
