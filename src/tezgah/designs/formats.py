"""Which CAD format a file is, told from its first bytes and never from its name.

A file name is whatever the client typed; the bytes are what FreeCAD will be asked to open, so
the format and the media type the server stores and serves are derived from the content alone.
:func:`detect_format` reads at most :data:`HEAD_BYTES` leading bytes (plus the file's size, which
a binary STL's header must agree with) and answers ``None`` for anything it does not recognise:
a wrong guess would hand FreeCAD an importer for the wrong format, so the rules below prefer
refusing an odd file to accepting random text or binary data.

Checked in this order, strongest signature first:

- **FCStd**: a zip archive whose local file headers, walked through the head, include a
  ``Document.xml`` entry at the root (FreeCAD writes it first). Any other zip (``.3mf``,
  ``.docx``, a plain archive) is not FCStd.
- **Binary STL**: an 80-byte header, a little-endian triangle count and 50 bytes per triangle;
  the count must account for the file's size exactly. This goes before ASCII STL because many
  exporters start the binary header with ``solid`` too.
- **STEP** (ISO 10303-21), **IGES** (80-column records), **BREP** (OpenCASCADE's text format),
  **ASCII STL**, then **OBJ** (Wavefront): text formats, told apart by their first keywords.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class FileFormat(StrEnum):
    fcstd = "fcstd"
    step = "step"
    stl = "stl"
    obj = "obj"
    brep = "brep"
    iges = "iges"


@dataclass(frozen=True, slots=True)
class Detected:
    format: FileFormat
    media_type: str


#: How many leading bytes :func:`detect_format` needs at most.
HEAD_BYTES: Final = 64 * 1024

MEDIA_TYPES: dict[FileFormat, str] = {
    # Not registered with IANA; this is the type FreeCAD's own desktop integration (shared MIME
    # info, icon ``application-x-extension-fcstd``) declares, so it is the one clients know.
    FileFormat.fcstd: "application/x-extension-fcstd",
    # Registered with IANA.
    FileFormat.step: "model/step",
    FileFormat.iges: "model/iges",
    FileFormat.stl: "model/stl",
    FileFormat.obj: "model/obj",
    # Not registered and no common convention exists: an unregistered ("x-") type under
    # "model/", named after OpenCASCADE's native boundary-representation format.
    FileFormat.brep: "model/x-brep",
}


def detect_format(head: bytes, size: int) -> Detected | None:
    """The format of a file from its first ``min(size, HEAD_BYTES)`` bytes and its total size.

    ``None`` means "not a supported CAD format" (an empty file included).
    """
    head = head[:HEAD_BYTES]
    if size <= 0 or not head:
        return None
    if _is_fcstd(head):
        return _detected(FileFormat.fcstd)
    if _is_binary_stl(head, size):
        return _detected(FileFormat.stl)
    if b"\0" in head:
        return None  # every text format below is NUL-free; binary data stops here
    text = _strip_bom(head)
    if _is_step(text):
        return _detected(FileFormat.step)
    if _is_iges(text):
        return _detected(FileFormat.iges)
    if _is_brep(text):
        return _detected(FileFormat.brep)
    if _is_ascii_stl(text):
        return _detected(FileFormat.stl)
    if _is_obj(text, complete=len(head) >= size):
        return _detected(FileFormat.obj)
    return None


def _detected(file_format: FileFormat) -> Detected:
    return Detected(format=file_format, media_type=MEDIA_TYPES[file_format])


def _strip_bom(head: bytes) -> bytes:
    """Text editors on Windows like to start UTF-8 files with a byte order mark."""
    return head.removeprefix(b"\xef\xbb\xbf")


# ---------------------------------------------------------------------------------------------
# FCStd: a zip archive holding Document.xml
# ---------------------------------------------------------------------------------------------

#: signature, version needed, flags, method, time, date, CRC-32, compressed and uncompressed size,
#: name length, extra field length: the fixed 30 bytes before every entry's name and data.
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_HEADER_SIGNATURE: Final = b"PK\x03\x04"
#: Bit 3: sizes and CRC follow the data instead of sitting in the header, so the next header's
#: position is unknown.
_DATA_DESCRIPTOR_FLAG: Final = 0x0008
#: A compressed size of 0xFFFFFFFF means the real size is in a zip64 extra field.
_ZIP64_SIZE: Final = 0xFFFFFFFF
_FCSTD_DOCUMENT: Final = b"Document.xml"


def _is_fcstd(head: bytes) -> bool:
    """A zip whose entries, as far as the head shows them, include a root ``Document.xml``."""
    return _FCSTD_DOCUMENT in _zip_entry_names(head)


def _zip_entry_names(head: bytes) -> Iterator[bytes]:
    """Entry names from the local file headers that fit in ``head``, in archive order.

    Stops at anything but a complete local header, or at an entry whose data size the header
    does not give (data descriptor, zip64): the next header's position is then unknown.
    """
    offset = 0
    while offset + _LOCAL_HEADER.size <= len(head):
        signature, _, flags, _, _, _, _, compressed_size, _, name_length, extra_length = (
            _LOCAL_HEADER.unpack_from(head, offset)
        )
        name_start = offset + _LOCAL_HEADER.size
        if signature != _LOCAL_HEADER_SIGNATURE or name_start + name_length > len(head):
            return
        yield head[name_start : name_start + name_length]
        if flags & _DATA_DESCRIPTOR_FLAG or compressed_size == _ZIP64_SIZE:
            return
        offset = name_start + name_length + extra_length + compressed_size


# ---------------------------------------------------------------------------------------------
# STL, binary: 80-byte header, uint32 triangle count, 50 bytes per triangle
# ---------------------------------------------------------------------------------------------

_STL_HEADER_BYTES: Final = 80
_STL_TRIANGLE_BYTES: Final = 50
_STL_COUNT = struct.Struct("<L")


def _is_binary_stl(head: bytes, size: int) -> bool:
    """The triangle count must explain the file's size to the byte (and be at least one, or any
    84-byte file with a zero count would pass)."""
    data_start = _STL_HEADER_BYTES + _STL_COUNT.size
    if size < data_start or len(head) < data_start:
        return False
    triangles: int = _STL_COUNT.unpack_from(head, _STL_HEADER_BYTES)[0]
    return triangles > 0 and data_start + _STL_TRIANGLE_BYTES * triangles == size


# ---------------------------------------------------------------------------------------------
# Text formats
# ---------------------------------------------------------------------------------------------

_STEP_MAGIC: Final = b"ISO-10303-21;"
_STEP_HEADER: Final = b"HEADER;"


def _is_step(text: bytes) -> bool:
    """ISO 10303-21 files open with their magic keyword, then the HEADER section."""
    body = text.lstrip()
    return body.startswith(_STEP_MAGIC) and _STEP_HEADER in body[len(_STEP_MAGIC) :]


_IGES_RECORD: Final = 80
_IGES_LETTER: Final = 72  # column 73: the section letter
_IGES_SEQUENCE = re.compile(rb" *0*1")  # columns 74-80 of the first record: sequence number 1


def _is_iges(text: bytes) -> bool:
    """IGES is fixed 80-column records; column 73 holds the section letter. A file opens with
    its Start section (``S``, first record numbered 1), followed by the Global section (``G``)."""
    records = _iges_records(text)
    first = next(records, b"")
    if not _iges_record_ok(first, b"S") or not _IGES_SEQUENCE.fullmatch(first[_IGES_LETTER + 1 :]):
        return False
    for record in records:
        if not _iges_record_ok(record, b"S"):
            return _iges_record_ok(record, b"G")
    return False  # the head ended inside the Start section


def _iges_records(text: bytes) -> Iterator[bytes]:
    """Lines (LF, CRLF or CR), or plain 80-byte slices for files written without line ends."""
    if not any(end in text[: _IGES_RECORD + 1] for end in (b"\n", b"\r")):
        for start in range(0, len(text) - _IGES_RECORD + 1, _IGES_RECORD):
            yield text[start : start + _IGES_RECORD]
        return
    yield from text.splitlines()


def _iges_record_ok(record: bytes, letter: bytes) -> bool:
    return len(record) == _IGES_RECORD and record[_IGES_LETTER : _IGES_LETTER + 1] == letter


#: ``BRepTools::Write`` output: FreeCAD's exportBrep writes the ``DBRep_DrawableShape`` line first,
#: OpenCASCADE itself starts at the ``CASCADE Topology V<version>`` line. (The binary BREP of
#: ``BinTools`` is not supported.)
_BREP = re.compile(rb"(?:DBRep_DrawableShape\s+)?CASCADE Topology V\d")


def _is_brep(text: bytes) -> bool:
    return _BREP.match(text.lstrip()) is not None


_STL_SOLID = re.compile(rb"solid(?:\s|$)", re.IGNORECASE)
_STL_FACET = re.compile(rb"^\s*facet\s+normal\s", re.IGNORECASE | re.MULTILINE)
_STL_VERTEX = re.compile(rb"^\s*(?:vertex\s|endsolid\b)", re.IGNORECASE | re.MULTILINE)


def _is_ascii_stl(text: bytes) -> bool:
    """``solid name`` followed by at least one ``facet normal`` and a ``vertex`` (or the closing
    ``endsolid``): a bare "solid" line is just a word."""
    body = text.lstrip()
    return (
        _STL_SOLID.match(body) is not None
        and _STL_FACET.search(body) is not None
        and _STL_VERTEX.search(body) is not None
    )


#: Every statement of the OBJ specification (polygons, free-form geometry, grouping, display).
_OBJ_KEYWORDS: Final = frozenset(
    b"v vt vn vp f l p g o s mg mtllib usemtl cstype deg bmat step curv curv2 surf parm trim "
    b"hole scrv sp end con bevel c_interp d_interp lod usemap maplib shadow_obj trace_obj "
    b"ctech stech call csh".split()
)
#: How many statements must all be OBJ keywords before the file is taken for OBJ.
_OBJ_CHECKED_LINES: Final = 50


def _is_obj(text: bytes, *, complete: bool) -> bool:
    """The first statements must all be OBJ keywords, and the head must hold a vertex with
    numeric coordinates: a text file that merely starts with a "v" or "o" word is not a mesh."""
    has_vertex = False
    for index, words in enumerate(_obj_statements(text, complete)):
        if index < _OBJ_CHECKED_LINES and words[0] not in _OBJ_KEYWORDS:
            return False
        if words[0] == b"v":
            if not _obj_vertex_ok(words):
                return False
            has_vertex = True
        if has_vertex and index + 1 >= _OBJ_CHECKED_LINES:
            break
    return has_vertex


def _obj_statements(text: bytes, complete: bool) -> Iterator[list[bytes]]:
    """The words of each statement: comments and blank lines skipped, ``\\``-continued lines
    joined, and the head's last line dropped when the file goes on past it (it may be cut)."""
    lines = text.splitlines()
    if not complete and lines:
        lines.pop()
    pending = b""
    for line in lines:
        content = pending + line.split(b"#", 1)[0]
        if content.rstrip().endswith(b"\\"):
            pending = content.rstrip()[:-1] + b" "
            continue
        pending = b""
        words = content.split()
        if words:
            yield words


def _obj_vertex_ok(words: list[bytes]) -> bool:
    """``v x y z [w]``, or ``v x y z r g b`` with vertex colours: three to seven numbers."""
    if not 4 <= len(words) <= 8:
        return False
    try:
        for word in words[1:]:
            float(word)
    except ValueError:
        return False
    return True
