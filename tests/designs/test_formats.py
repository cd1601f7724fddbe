"""Format detection from content: real files exported by FreeCAD, hand-built edge cases, and
content that must not pass for CAD."""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from tezgah.designs.formats import (
    HEAD_BYTES,
    MEDIA_TYPES,
    Detected,
    FileFormat,
    detect_format,
)

FREECADCMD = "/usr/lib/freecad/bin/freecadcmd-python3"

#: One FreeCAD run exports a fused box and cylinder in every format, plus a finely meshed sphere
#: whose ASCII STL and OBJ are larger than HEAD_BYTES (so only their head is looked at).
GENERATOR = r"""
import FreeCAD as App
import MeshPart
import Part

doc = App.newDocument("Formats")
box = doc.addObject("Part::Box", "Box")
cylinder = doc.addObject("Part::Cylinder", "Cylinder")
cylinder.Placement.Base = App.Vector(20, 0, 0)
doc.recompute()
shape = box.Shape.fuse(cylinder.Shape)
shape.exportStep(OUT + "/part.step")
shape.exportIges(OUT + "/part.iges")
shape.exportBrep(OUT + "/part.brep")
mesh = MeshPart.meshFromShape(Shape=shape, LinearDeflection=0.5)
mesh.write(OUT + "/part.stl")
mesh.write(OUT + "/part_ascii.stl", "AST")
mesh.write(OUT + "/part.obj")
doc.saveAs(OUT + "/part.FCStd")
sphere = MeshPart.meshFromShape(Shape=Part.makeSphere(10), LinearDeflection=0.01)
sphere.write(OUT + "/sphere_ascii.stl", "AST")
sphere.write(OUT + "/sphere.obj")
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports")
    # freecadcmd rewrites its user configuration on exit: give it a private home.
    env = {**os.environ, "FREECAD_USER_HOME": str(out / "home")}
    code = f"OUT = {str(out)!r}\n{GENERATOR}"
    result = subprocess.run(
        [FREECADCMD, "-c", code], env=env, cwd=out, capture_output=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return out


def detect(data: bytes) -> Detected | None:
    """What the upload path does: the head of the file and its size."""
    return detect_format(data[:HEAD_BYTES], len(data))


def format_of(data: bytes) -> FileFormat | None:
    detected = detect(data)
    return None if detected is None else detected.format


def make_zip(*entries: tuple[str, bytes], stream: io.BytesIO | None = None) -> bytes:
    buffer = stream or io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries:
            archive.writestr(name, content)
    return buffer.getvalue()


DOCUMENT_XML = b'<?xml version="1.0" encoding="utf-8"?>\n<Document SchemaVersion="4"/>\n'


def binary_stl(triangles: int, header: bytes = b"binary STL") -> bytes:
    facet = struct.pack("<12fH", *([0.0, 0.0, 1.0] + [0.0, 0.0, 0.0] * 3), 0)
    return header.ljust(80, b" ") + struct.pack("<L", triangles) + facet * triangles


ASCII_STL = b"""solid cube
  facet normal 0 0 1
    outer loop
      vertex 0 0 0
      vertex 1 0 0
      vertex 1 1 0
    endloop
  endfacet
endsolid cube
"""

OBJ = b"""# Blender v2.93 OBJ File: ''
mtllib cube.mtl
o Cube
v 1.000000 1.000000 -1.000000
v 1.000000 -1.000000 -1.000000
v 1.000000 1.000000 1.000000
vt 0.625000 0.500000
vn 0.0000 1.0000 0.0000
usemtl Material
s off
f 1/1/1 2/1/1 3/1/1
"""


def iges(line_end: bytes = b"\n", second_letter: bytes = b"G") -> bytes:
    records = [
        b"Made by a test".ljust(72) + b"S      1",
        b"1H,,1H;,4Htest,8Htest.igs;".ljust(72) + second_letter + b"      1",
        b"S      1G      1D      0P      0".ljust(72) + b"T      1",
    ]
    return line_end.join(records) + line_end


# ---------------------------------------------------------------------------------------------
# Real files exported by FreeCAD
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("part.FCStd", FileFormat.fcstd),
        ("part.step", FileFormat.step),
        ("part.iges", FileFormat.iges),
        ("part.brep", FileFormat.brep),
        ("part.stl", FileFormat.stl),
        ("part_ascii.stl", FileFormat.stl),
        ("part.obj", FileFormat.obj),
        ("sphere_ascii.stl", FileFormat.stl),
        ("sphere.obj", FileFormat.obj),
    ],
)
def test_real_freecad_exports_are_detected(exported: Path, name: str, expected: FileFormat) -> None:
    data = (exported / name).read_bytes()
    assert detect(data) == Detected(format=expected, media_type=MEDIA_TYPES[expected])


def test_large_real_exports_are_detected_from_the_head_alone(exported: Path) -> None:
    for name in ("sphere_ascii.stl", "sphere.obj"):
        size = (exported / name).stat().st_size
        assert size > HEAD_BYTES, name
        with (exported / name).open("rb") as handle:
            head = handle.read(HEAD_BYTES)
        assert detect_format(head, size) is not None, name


def test_real_text_exports_survive_windows_line_ends(exported: Path) -> None:
    for name, expected in (("part.step", FileFormat.step), ("part.iges", FileFormat.iges)):
        data = (exported / name).read_bytes().replace(b"\n", b"\r\n")
        assert format_of(data) is expected, name


def test_real_binary_stl_with_a_byte_more_is_not_stl(exported: Path) -> None:
    data = (exported / "part.stl").read_bytes()
    assert format_of(data) is FileFormat.stl
    assert format_of(data + b"\0") is None


def test_content_wins_over_a_misleading_name(exported: Path, tmp_path: Path) -> None:
    misnamed = tmp_path / "drawing.step"
    misnamed.write_bytes((exported / "part.stl").read_bytes())
    assert format_of(misnamed.read_bytes()) is FileFormat.stl


# ---------------------------------------------------------------------------------------------
# FCStd
# ---------------------------------------------------------------------------------------------


def test_zip_with_document_xml_first_is_fcstd() -> None:
    data = make_zip(("Document.xml", DOCUMENT_XML), ("PartShape.brp", b"CASCADE Topology V1"))
    assert detect(data) == Detected(FileFormat.fcstd, "application/x-extension-fcstd")


def test_document_xml_after_other_entries_is_found_by_walking_the_headers() -> None:
    data = make_zip(("GuiDocument.xml", b"<Document/>" * 100), ("Document.xml", DOCUMENT_XML))
    assert format_of(data) is FileFormat.fcstd


def test_fcstd_larger_than_the_head() -> None:
    noise = random.Random(1).randbytes(3 * HEAD_BYTES)
    data = make_zip(("Document.xml", DOCUMENT_XML), ("PartShape.brp", noise))
    assert len(data) > HEAD_BYTES
    assert format_of(data) is FileFormat.fcstd


def test_document_xml_beyond_the_head_is_not_seen() -> None:
    noise = random.Random(2).randbytes(HEAD_BYTES)  # random bytes do not deflate
    data = make_zip(("PartShape.brp", noise), ("Document.xml", DOCUMENT_XML))
    assert format_of(data) is None


def test_walk_stops_at_an_entry_with_a_data_descriptor() -> None:
    class Unseekable(io.BytesIO):
        """zipfile writes sizes after the data (flag bit 3) when it cannot seek back."""

        def seek(self, offset: int, whence: int = 0, /) -> int:
            raise io.UnsupportedOperation("seek")

    data = make_zip(("a.txt", b"a"), ("Document.xml", DOCUMENT_XML), stream=Unseekable())
    assert zipfile.ZipFile(io.BytesIO(data)).infolist()[0].flag_bits & 0x08
    assert format_of(data) is None
    # ... but Document.xml as the first entry (FreeCAD's order) is seen before the walk stops.
    first = make_zip(("Document.xml", DOCUMENT_XML), ("a.txt", b"a"), stream=Unseekable())
    assert format_of(first) is FileFormat.fcstd


@pytest.mark.parametrize(
    "entries",
    [
        [("readme.txt", b"just a zip")],
        [("[Content_Types].xml", b"<Types/>"), ("word/document.xml", b"<w:document/>")],
        [("[Content_Types].xml", b"<Types/>"), ("3D/3dmodel.model", b"<model/>")],
        [("sub/Document.xml", DOCUMENT_XML)],
        [("document.xml", DOCUMENT_XML)],
    ],
    ids=["plain", "docx", "3mf", "nested-document", "wrong-case"],
)
def test_other_zips_are_not_fcstd(entries: list[tuple[str, bytes]]) -> None:
    assert format_of(make_zip(*entries)) is None


def test_truncated_zip_header_is_not_fcstd() -> None:
    data = make_zip(("Document.xml", DOCUMENT_XML))
    assert format_of(data[:40]) is None  # the name is cut after 10 of its 12 bytes


# ---------------------------------------------------------------------------------------------
# STEP, IGES, BREP
# ---------------------------------------------------------------------------------------------


def test_step_with_bom_and_leading_whitespace() -> None:
    data = b"\xef\xbb\xbf\n  ISO-10303-21;\r\nHEADER;\r\nFILE_DESCRIPTION((''),'2;1');\r\n"
    assert detect(data) == Detected(FileFormat.step, "model/step")


@pytest.mark.parametrize(
    "data",
    [
        b"ISO-10303-21;\nDATA;\n#1=CARTESIAN_POINT('',(0.,0.,0.));\n",
        b"HEADER;\nISO-10303-21;\n",
        b"A STEP file starts with ISO-10303-21; then HEADER;",
    ],
)
def test_step_lookalikes(data: bytes) -> None:
    assert format_of(data) is None


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r", b""])
def test_iges_with_any_line_end(line_end: bytes) -> None:
    assert detect(iges(line_end)) == Detected(FileFormat.iges, "model/iges")


def test_iges_start_section_must_be_followed_by_the_global_section() -> None:
    assert format_of(iges(second_letter=b"D")) is None


def test_iges_records_must_be_80_columns() -> None:
    assert format_of(iges().replace(b"Made by a test", b"Made by a test!")) is None


def test_iges_first_record_must_be_numbered_one() -> None:
    assert format_of(iges().replace(b"S      1", b"S      2", 1)) is None


@pytest.mark.parametrize(
    "data",
    [
        b"DBRep_DrawableShape\n\nCASCADE Topology V1, (c) Matra-Datavision\nLocations 0\n",
        b"CASCADE Topology V3, (c) Open Cascade\nLocations 0\n",
    ],
)
def test_brep(data: bytes) -> None:
    assert detect(data) == Detected(FileFormat.brep, MEDIA_TYPES[FileFormat.brep])


def test_brep_needs_a_topology_version() -> None:
    assert format_of(b"DBRep_DrawableShape\n\nLocations 0\n") is None
    assert format_of(b"CASCADE Topology, (c) Matra-Datavision\n") is None


# ---------------------------------------------------------------------------------------------
# STL
# ---------------------------------------------------------------------------------------------


def test_binary_stl() -> None:
    assert detect(binary_stl(12)) == Detected(FileFormat.stl, "model/stl")


def test_binary_stl_whose_header_starts_with_solid() -> None:
    data = binary_stl(3, header=b"solid x\n facet normal 0 0 1\n  vertex 0 0 0\n")
    assert format_of(data) is FileFormat.stl
    # The size is no longer explained, and ASCII STL has no NUL bytes.
    assert format_of(data + bytes(50)) is None


def test_binary_stl_with_wrong_triangle_count() -> None:
    data = bytearray(binary_stl(12))
    data[80:84] = struct.pack("<L", 13)
    assert format_of(bytes(data)) is None


def test_stl_header_without_triangles() -> None:
    assert format_of(binary_stl(0)) is None  # 84 bytes, count zero: any such file would match
    assert format_of(binary_stl(1)[:83]) is None


@pytest.mark.parametrize(
    "data",
    [
        ASCII_STL,
        ASCII_STL.upper(),
        b"\xef\xbb\xbf\r\n" + ASCII_STL.replace(b"\n", b"\r\n"),
        ASCII_STL.replace(b"solid cube", b"solid", 1),
    ],
    ids=["plain", "upper-case", "bom-crlf", "unnamed"],
)
def test_ascii_stl(data: bytes) -> None:
    assert detect(data) == Detected(FileFormat.stl, "model/stl")


@pytest.mark.parametrize(
    "data",
    [
        b"solid cube\nendsolid cube\n",
        b"solid ground, nothing else\n",
        b"solidarity\n  facet normal 0 0 1\n    vertex 0 0 0\n",
        b"a solid\n  facet normal 0 0 1\n    vertex 0 0 0\n",
    ],
    ids=["no-facets", "prose", "solid-prefix-of-a-word", "solid-not-first"],
)
def test_ascii_stl_lookalikes(data: bytes) -> None:
    assert format_of(data) is None


# ---------------------------------------------------------------------------------------------
# OBJ
# ---------------------------------------------------------------------------------------------


def test_obj() -> None:
    assert detect(OBJ) == Detected(FileFormat.obj, "model/obj")


def test_obj_with_vertex_colours_and_continued_lines() -> None:
    data = b"v 0 0 0 1 0.5 0\nv 1 0 0\nv 0 1 0\nf 1 2 \\\n  3\n"
    assert format_of(data) is FileFormat.obj


def test_obj_cut_mid_line_by_the_head() -> None:
    lines = b"".join(b"v %d.5 %d.25 -%d.125\n" % (i, i, i) for i in range(5000))
    assert len(lines) > HEAD_BYTES
    head = lines[:HEAD_BYTES]
    assert not head.endswith(b"\n")
    assert detect_format(head, len(lines)) == Detected(FileFormat.obj, "model/obj")


def test_obj_tolerates_unknown_statements_after_the_checked_lines() -> None:
    data = b"v 0 0 0\n" * 50 + b"vendor_extension 1\nf 1 2 3\n"
    assert format_of(data) is FileFormat.obj
    assert format_of(b"vendor_extension 1\n" + b"v 0 0 0\n" * 50) is None


@pytest.mark.parametrize(
    "data",
    [
        b"o cube\ng side\nusemtl red\n",
        b"# only a comment\n",
        b"v is for vendetta\n",
        b"v 1 2\nf 1 1 1\n",
        b"v 1 2 3\nhello world\n",
        b"Dear reader,\nv 1 2 3\n",
    ],
    ids=["no-vertex", "comment", "words", "two-coordinates", "unknown-keyword", "prose-first"],
)
def test_obj_lookalikes(data: bytes) -> None:
    assert format_of(data) is None


# ---------------------------------------------------------------------------------------------
# Not CAD at all
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 83, 84, 134, 4096, 3 * HEAD_BYTES])
def test_random_bytes(size: int) -> None:
    assert format_of(random.Random(size).randbytes(size)) is None


@pytest.mark.parametrize(
    "data",
    [
        b"hello",
        b"hello\n" * 100,
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
        + bytes(100),
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
        b'<?xml version="1.0"?>\n<Document SchemaVersion="4"/>\n',
        bytes(4096),
    ],
    ids=["hello", "text", "png", "pdf", "bare-document-xml", "zeros"],
)
def test_not_cad(data: bytes) -> None:
    assert format_of(data) is None


def test_empty_file() -> None:
    assert detect_format(b"", 0) is None


def test_every_format_has_a_media_type() -> None:
    assert set(MEDIA_TYPES) == set(FileFormat)
    assert all(value.count("/") == 1 for value in MEDIA_TYPES.values())
