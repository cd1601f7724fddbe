"""The pure-Python FCStd inspector: real files made by FreeCAD, and hostile ones made by hand."""

from __future__ import annotations

import io
import random
import stat
import struct
import time
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from tezgah.core.errors import problem_body
from tezgah.freecad import fcstd
from tezgah.freecad.exceptions import FCStdError
from tezgah.freecad.fcstd import FCStdInspection, Limits, ObjectInfo, inspect_fcstd

MiB = 1024 * 1024

# ---------------------------------------------------------------------------------------------
# Helpers: archives, PNGs and XML made by hand
# ---------------------------------------------------------------------------------------------


def make_zip(
    entries: list[tuple[str | zipfile.ZipInfo, bytes]],
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name" is what some tests want
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return buffer.getvalue()


def design_with(design: bytes, *extra: tuple[str | zipfile.ZipInfo, bytes]) -> bytes:
    """A copy of a real FCStd file with more entries."""
    with zipfile.ZipFile(io.BytesIO(design)) as archive:
        entries: list[tuple[str | zipfile.ZipInfo, bytes]] = [
            (info.filename, archive.read(info)) for info in archive.infolist()
        ]
    return make_zip([*entries, *extra])


def document_xml(design: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(design)) as archive:
        return archive.read("Document.xml")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def make_png(width: int, height: int, *, ihdr: bytes | None = None) -> bytes:
    """A real RGB PNG with a gradient, written with zlib and struct."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((x % 256, y % 256, 128)) for x in range(width))
        for y in range(height)
    )
    header = ihdr if ihdr is not None else struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


CENTRAL_FIELDS = {
    "flag_bits": (8, "<H"),
    "compress_type": (10, "<H"),
    "compress_size": (20, "<I"),
    "file_size": (24, "<I"),
    "external_attr": (38, "<I"),
    "header_offset": (42, "<I"),
}


def central_entries(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset, name) of each central directory record, walked from the end record."""
    end = data.rfind(b"PK\x05\x06")
    count, _size, offset = struct.unpack_from("<HII", data, end + 10)
    for _ in range(count):
        assert data[offset : offset + 4] == b"PK\x01\x02"
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, offset + 28)
        yield offset, data[offset + 46 : offset + 46 + name_length]
        offset += 46 + name_length + extra_length + comment_length


def patch_central(data: bytes, name: str, **values: int) -> bytes:
    """Overwrite fields of one entry's central directory record (what zipfile trusts)."""
    patched = bytearray(data)
    for offset, entry_name in central_entries(data):
        if entry_name == name.encode():
            for field, value in values.items():
                position, fmt = CENTRAL_FIELDS[field]
                struct.pack_into(fmt, patched, offset + position, value)
            return bytes(patched)
    raise AssertionError(f"no entry {name}")


def patch_entry_count(data: bytes, count: int) -> bytes:
    patched = bytearray(data)
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", patched, end + 8, count, count)
    return bytes(patched)


def fcstd_xml(objects: str, object_data: str = "", properties: str = "") -> bytes:
    return (
        "<?xml version='1.0' encoding='utf-8'?>\n"
        '<Document SchemaVersion="4" ProgramVersion="1.0R39109 (Git)" FileVersion="1">'
        f"<Properties>{properties}</Properties>"
        f"<Objects>{objects}</Objects><ObjectData>{object_data}</ObjectData></Document>"
    ).encode()


def link_property(name: str, kind: str, *targets: str) -> str:
    links = "".join(f'<Link value="{target}"/>' for target in targets)
    return f'<Property name="{name}" type="{kind}"><LinkList>{links}</LinkList></Property>'


def object_data(name: str, *properties: str) -> str:
    return f'<Object name="{name}"><Properties>{"".join(properties)}</Properties></Object>'


def inspect_bytes(data: bytes, limits: Limits | None = None) -> FCStdInspection:
    return inspect_fcstd(io.BytesIO(data), limits)


def refused(data: bytes, code: str, limits: Limits | None = None) -> FCStdError:
    with pytest.raises(FCStdError) as caught:
        inspect_bytes(data, limits)
    assert caught.value.error_code == code, (caught.value.error_code, caught.value.extra)
    return caught.value


class CountingReader(io.RawIOBase):
    """A seekable file that records which bytes were read from it."""

    def __init__(self, data: bytes) -> None:
        self.inner = io.BytesIO(data)
        self.bytes_read = 0
        self.ranges: list[tuple[int, int]] = []

    def read_within(self, start: int, end: int) -> int:
        """How many of the bytes read lie in [start, end)."""
        return sum(max(0, min(end, stop) - max(start, begin)) for begin, stop in self.ranges)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        position = self.inner.tell()
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        self.bytes_read += len(data)
        self.ranges.append((position, position + len(data)))
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.inner.seek(offset, whence)

    def tell(self) -> int:
        return self.inner.tell()


def data_range(data: bytes, name: str) -> tuple[int, int]:
    """Where an entry's compressed data lies in the archive."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    return start, start + info.compress_size


def by_name(result: FCStdInspection) -> dict[str, ObjectInfo]:
    return {info.name: info for info in result.objects}


# ---------------------------------------------------------------------------------------------
# What a real FreeCAD file holds
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def design(design_path: Path) -> FCStdInspection:
    return inspect_fcstd(design_path)


def test_version_document_and_archive_facts(design: FCStdInspection, design_bytes: bytes) -> None:
    assert design.program_version is not None
    assert design.program_version.startswith("0.20")
    assert design.schema_version == 4
    assert design.file_version == 1
    assert design.label == "design"  # saveAs names the document after the file
    assert design.metadata["License"] == "All rights reserved"
    assert "CreationDate" in design.metadata
    assert design.unit_system is None  # FreeCAD 0.20 keeps no unit system in the document
    with zipfile.ZipFile(io.BytesIO(design_bytes)) as archive:
        infos = archive.infolist()
    assert design.entry_count == len(infos) >= 2
    assert design.uncompressed_size == sum(info.file_size for info in infos)
    assert design.compressed_size == len(design_bytes)
    assert design.thumbnail is None
    assert design.has_thumbnail is False


def test_objects_types_and_turkish_labels(design: FCStdInspection) -> None:
    objects = by_name(design)
    expected = {
        "Params": ("Spreadsheet::Sheet", "Ölçüler"),
        "Box": ("Part::Box", "Gövde Işık"),
        "Cylinder": ("Part::Cylinder", "Delik"),
        "Cut": ("Part::Cut", "Kesim"),
        "Group": ("App::DocumentObjectGroup", "Parçalar"),
        "Settings": ("App::FeaturePython", "Ayarlar"),
        "Assembly": ("App::Part", "Montaj"),
        "Body": ("PartDesign::Body", "Body"),
        "Sketch": ("Sketcher::SketchObject", "Sketch"),
        "Pad": ("PartDesign::Pad", "Pad"),
        "Scripted": ("App::FeaturePython", "Scripted"),
    }
    for name, (kind, label) in expected.items():
        assert (objects[name].type, objects[name].label) == (kind, label)
    assert [info.name for info in design.objects][:5] == [
        "Params",
        "Box",
        "Cylinder",
        "Cut",
        "Group",
    ]
    assert len(design.objects) == 26  # with two origins, each with three axes and three planes


def test_tree_follows_groups_and_consumed_inputs(design: FCStdInspection) -> None:
    objects = by_name(design)
    assert objects["Cut"].children == ["Box", "Cylinder"]
    assert objects["Box"].parent == objects["Cylinder"].parent == "Cut"
    assert (objects["Group"].children, objects["Cut"].parent) == (["Cut"], "Group")
    # A PartDesign body: the pad shows its sketch, the origin keeps its axes and planes.
    assert objects["Body"].parent == "Assembly"
    assert objects["Pad"].parent == "Body"
    assert objects["Sketch"].parent == "Pad"
    assert set(objects["Body"].children) == {"Pad", "Origin001"}
    assert objects["Origin001"].children == [
        "X_Axis001", "Y_Axis001", "Z_Axis001", "XY_Plane001", "XZ_Plane001", "YZ_Plane001"
    ]  # fmt: skip
    assert set(objects["Assembly"].children) == {"Body", "Origin"}
    # Attachment is a reference: the attached sketch stays at the top, linked to the box.
    assert objects["Sketch001"].parent is None
    assert objects["Sketch001"].links == ["Box"]
    assert design.roots == ["Params", "Group", "Settings", "Assembly", "Sketch001", "Scripted"]
    # The tree is consistent: every child names its parent and every object hangs off a root.
    for info in design.objects:
        for child in info.children:
            assert objects[child].parent == info.name
        seen, node = set(), info
        while node.parent is not None:
            assert node.name not in seen
            seen.add(node.name)
            node = objects[node.parent]
        assert node.name in design.roots


def test_links_expressions_quantities_and_shapes(design: FCStdInspection) -> None:
    objects = by_name(design)
    assert objects["Cut"].links == ["Box", "Cylinder"]
    assert objects["Body"].links[:2] == ["Sketch", "Pad"]
    assert objects["Box"].expressions == {"Length": "Params.length", "Width": "Params.width"}
    assert objects["Cylinder"].expressions == {"Radius": "Params.hole_d / 2"}
    box = {quantity.name: (quantity.value, quantity.unit) for quantity in objects["Box"].quantities}
    assert box == {"Height": (30.0, "mm"), "Length": (100.0, "mm"), "Width": (60.0, "mm")}
    cylinder = {quantity.name: quantity for quantity in objects["Cylinder"].quantities}
    assert (cylinder["Radius"].value, cylinder["Radius"].unit) == (6.0, "mm")
    assert (cylinder["Angle"].value, cylinder["Angle"].unit) == (360.0, "deg")
    assert cylinder["Angle"].type == "App::PropertyAngle"
    assert objects["Cut"].shape_file is not None
    assert objects["Cut"].shape_file.endswith(".brp")
    assert objects["Params"].shape_file is None


def test_spreadsheet_aliases(design: FCStdInspection) -> None:
    [sheet] = design.spreadsheets
    assert (sheet.name, sheet.label, sheet.cell_count) == ("Params", "Ölçüler", 9)
    aliases = {alias.alias: alias for alias in sheet.aliases}
    assert list(aliases) == ["length", "width", "hole_d", "malzeme", "double_length"]
    length = aliases["length"]
    assert (length.address, length.content, length.value, length.unit) == (
        "B1",
        "=100mm",
        100,
        "mm",
    )
    # FreeCAD stores the typed "60 mm" as a formula too.
    assert (aliases["width"].content, aliases["width"].value, aliases["width"].unit) == (
        "=60mm",
        60,
        "mm",
    )
    assert (aliases["hole_d"].value, aliases["hole_d"].unit) == (12, None)
    assert aliases["malzeme"].value == "çelik"
    formula = aliases["double_length"]
    assert (formula.value, formula.expression) == (None, "length * 2")


def test_parameters_from_aliases_and_property_bags(design: FCStdInspection) -> None:
    parameters = {(p.object, p.name): p for p in design.parameters}
    assert set(parameters) == {
        ("Params", "length"),
        ("Params", "width"),
        ("Params", "hole_d"),
        ("Params", "malzeme"),
        ("Params", "double_length"),
        ("Settings", "Thickness"),
        ("Settings", "Count"),
        ("Settings", "Malzeme"),
        ("Settings", "Aci"),
        ("Settings", "Enabled"),
        ("Settings", "Finish"),
        ("Settings", "Scale"),
        ("Settings", "Locked"),
        ("Assembly", "Offset"),
    }  # not the hidden property, nor the scripted object's "Depth"
    length = parameters["Params", "length"]
    assert (length.source, length.type, length.value, length.unit, length.cell) == (
        "spreadsheet",
        "Spreadsheet::Cell",
        100,
        "mm",
        "B1",
    )
    thickness = parameters["Settings", "Thickness"]
    assert (thickness.source, thickness.type, thickness.value, thickness.unit) == (
        "property",
        "App::PropertyLength",
        5.0,
        "mm",
    )
    assert (thickness.group, thickness.description) == ("Parametreler", "plate thickness")
    assert parameters["Settings", "Count"].value == 3
    assert parameters["Settings", "Malzeme"].value == "Alüminyum"
    assert parameters["Settings", "Malzeme"].description == "malzeme adı"
    assert (parameters["Settings", "Aci"].value, parameters["Settings", "Aci"].unit) == (
        45.0,
        "deg",
    )
    assert parameters["Settings", "Enabled"].value is True
    assert parameters["Settings", "Enabled"].group == "Seçenekler"
    assert parameters["Settings", "Finish"].value == "parlak"
    scale = parameters["Settings", "Scale"]
    assert (scale.value, scale.expression) == (1.5, "Params.hole_d / 8")
    assert parameters["Settings", "Locked"].read_only is True
    assert parameters["Settings", "Thickness"].read_only is False
    assert (parameters["Assembly", "Offset"].value, parameters["Assembly", "Offset"].unit) == (
        2.5,
        "mm",
    )
    assert [p.object for p in design.parameters][:5] == ["Params"] * 5


def test_path_and_file_object_give_the_same_result(
    design: FCStdInspection, design_bytes: bytes
) -> None:
    assert inspect_bytes(design_bytes) == design
    with pytest.raises(ValueError, match="seekable"):
        inspect_fcstd(NotSeekable(design_bytes))


class NotSeekable(io.BytesIO):
    def seekable(self) -> bool:
        return False


def test_inspection_serialises_to_json(design: FCStdInspection, design_bytes: bytes) -> None:
    adapter = TypeAdapter(FCStdInspection)
    plain = adapter.dump_python(design, mode="json")
    assert plain["objects"][1]["label"] == "Gövde Işık"
    assert plain["roots"] == design.roots
    with_thumbnail = inspect_bytes(
        design_with(design_bytes, ("thumbnails/Thumbnail.png", make_png(4, 4)))
    )
    body = adapter.dump_json(with_thumbnail, exclude={"thumbnail": {"png"}})
    assert b'"thumbnail":{"width":4,"height":4}' in body


def test_empty_document_saved_by_freecad(empty_document_path: Path) -> None:
    with pytest.raises(FCStdError) as caught:
        inspect_fcstd(empty_document_path)
    assert caught.value.error_code == "FCSTD_EMPTY_DOCUMENT"
    assert caught.value.status_code == 422


# ---------------------------------------------------------------------------------------------
# Thumbnails
# ---------------------------------------------------------------------------------------------


def test_real_thumbnail_is_returned_as_png_bytes(design_bytes: bytes) -> None:
    image = make_png(128, 96)
    data = design_with(design_bytes, ("thumbnails/", b""), ("thumbnails/Thumbnail.png", image))
    result = inspect_bytes(data)
    assert result.thumbnail is not None
    assert result.has_thumbnail is True
    assert (result.thumbnail.width, result.thumbnail.height) == (128, 96)
    assert result.thumbnail.png == image
    assert len(result.objects) == 26


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"GIF89a not a png at all", "signature"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "crc"),
        (make_png(8, 8)[:-20], "truncated"),
        (make_png(8, 8, ihdr=struct.pack(">IIBBBBB", 100_000, 8, 8, 2, 0, 0, 0)), "dimensions"),
        (make_png(8, 8, ihdr=struct.pack(">IIBBBBB", 8, 8, 7, 2, 0, 0, 0)), "header"),
        (
            b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + png_chunk(b"IEND", b""),
            "no_image_data",
        ),
        (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IDAT", b"x") + png_chunk(b"IEND", b""), "header"),
    ],
)
def test_fake_thumbnails_are_refused(design_bytes: bytes, content: bytes, reason: str) -> None:
    error = refused(
        design_with(design_bytes, ("thumbnails/Thumbnail.png", content)), "FCSTD_BAD_THUMBNAIL"
    )
    assert error.extra["reason"] == reason


def test_oversized_thumbnail_is_refused(design_bytes: bytes) -> None:
    data = design_with(design_bytes, ("thumbnails/Thumbnail.png", make_png(64, 64)))
    error = refused(data, "FCSTD_BAD_THUMBNAIL", Limits(max_thumbnail_bytes=100))
    assert error.extra["reason"] == "too_large"
    error = refused(data, "FCSTD_BAD_THUMBNAIL", Limits(max_thumbnail_side=32))
    assert error.extra["reason"] == "dimensions"


# ---------------------------------------------------------------------------------------------
# Hostile archives
# ---------------------------------------------------------------------------------------------


def test_not_a_zip_empty_and_truncated(design_bytes: bytes) -> None:
    assert refused(b"", "FCSTD_NOT_A_ZIP").extra["reason"] == "empty"
    refused(b"solid Box\nfacet normal 0 0 1\n" * 50, "FCSTD_NOT_A_ZIP")
    refused(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "FCSTD_NOT_A_ZIP")
    refused(design_bytes[: len(design_bytes) // 2], "FCSTD_TRUNCATED")


def test_damaged_central_directory_and_entry_data(design_bytes: bytes) -> None:
    end = design_bytes.rfind(b"PK\x05\x06")
    directory_at = struct.unpack_from("<I", design_bytes, end + 16)[0]
    broken = bytearray(design_bytes)
    broken[directory_at : directory_at + 4] = b"XXXX"
    refused(bytes(broken), "FCSTD_CORRUPT")
    # Flip bytes inside Document.xml's compressed data: a deflate or CRC error.
    damaged = bytearray(design_bytes)
    with zipfile.ZipFile(io.BytesIO(design_bytes)) as archive:
        info = archive.getinfo("Document.xml")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    damaged[start : start + 64] = bytes(64)
    error = refused(bytes(damaged), "FCSTD_CORRUPT")
    assert error.extra == {"reason": "entry_data", "entry": "Document.xml"}


def test_zip_without_document_xml() -> None:
    refused(make_zip([("PartShape.brp", b"DBRep_DrawableShape\n")]), "FCSTD_NO_DOCUMENT")
    # Only the exact top-level name counts.
    refused(
        make_zip([("sub/Document.xml", fcstd_xml('<Object type="App::Part" name="P"/>'))]),
        "FCSTD_NO_DOCUMENT",
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../../etc/cron.d/evil", "path_traversal"),
        ("thumbnails/../../evil.png", "path_traversal"),
        ("/etc/passwd", "absolute_path"),
        ("C:/Windows/evil.dll", "windows_path"),
        ("thumbnails\\..\\evil.png", "windows_path"),
        ("a//b.brp", "invalid_name"),
        ("./Document.xml", "invalid_name"),
        ("bad\x07name.brp", "invalid_name"),
        ("x" * 2000, "invalid_name"),
    ],
)
def test_unsafe_entry_names(design_bytes: bytes, name: str, reason: str) -> None:
    error = refused(design_with(design_bytes, (name, b"data")), "FCSTD_UNSAFE_ENTRY")
    assert error.extra["reason"] == reason
    assert len(error.extra["entry"]) <= 121
    assert error.extra["entry"].isprintable()


def test_nul_in_an_entry_name(design_bytes: bytes) -> None:
    data = design_with(design_bytes, ("evilQname.brp", b"data"))
    assert data.count(b"evilQname") == 2  # local header and central directory
    error = refused(data.replace(b"evilQname", b"evil\x00name"), "FCSTD_UNSAFE_ENTRY")
    assert error.extra["reason"] == "invalid_name"


def test_symlinks_and_special_files(design_bytes: bytes) -> None:
    link = zipfile.ZipInfo("PartShape9.brp")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    error = refused(design_with(design_bytes, (link, b"/etc/passwd")), "FCSTD_UNSAFE_ENTRY")
    assert error.extra["reason"] == "symlink"
    fifo = zipfile.ZipInfo("pipe")
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    error = refused(design_with(design_bytes, (fifo, b"")), "FCSTD_UNSAFE_ENTRY")
    assert error.extra["reason"] == "special_file"


def test_encrypted_entry(design_bytes: bytes) -> None:
    data = patch_central(design_bytes, "Document.xml", flag_bits=0x1)
    error = refused(data, "FCSTD_UNSAFE_ENTRY")
    assert error.extra == {"reason": "encrypted", "entry": "Document.xml"}


def test_unsupported_compression(design_bytes: bytes) -> None:
    data = make_zip([("Document.xml", document_xml(design_bytes))], zipfile.ZIP_BZIP2)
    assert refused(data, "FCSTD_UNSAFE_ENTRY").extra["reason"] == "compression_method"


def test_duplicate_entries(design_bytes: bytes) -> None:
    fake = fcstd_xml('<Object type="App::Part" name="Other"/>')
    for name in ("Document.xml", "document.XML"):
        error = refused(design_with(design_bytes, (name, fake)), "FCSTD_UNSAFE_ENTRY")
        assert error.extra["reason"] == "duplicate"


def test_overlapping_entries(design_bytes: bytes) -> None:
    """Two directory records pointing at one local file: the non-recursive zip bomb's trick."""
    data = design_with(design_bytes, ("PartShape9.brp", b"x" * 5000))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        first = archive.getinfo("Document.xml").header_offset
    error = refused(
        patch_central(data, "PartShape9.brp", header_offset=first), "FCSTD_UNSAFE_ENTRY"
    )
    assert error.extra["reason"] == "overlapping"


def test_too_many_entries_refused_from_the_end_record() -> None:
    entries: list[tuple[str | zipfile.ZipInfo, bytes]] = [(f"e{i}", b"") for i in range(10_001)]
    data = make_zip(entries, zipfile.ZIP_STORED)
    reader = CountingReader(data)
    with pytest.raises(FCStdError) as caught:
        inspect_fcstd(reader)
    assert (caught.value.error_code, caught.value.status_code) == ("FCSTD_TOO_MANY_ENTRIES", 413)
    # Refused from the end record: the central directory (about 0.5 MB) was never read.
    assert reader.bytes_read < 70_000 < len(data)


def test_too_many_entries_when_the_end_record_lies() -> None:
    document = fcstd_xml('<Object type="App::Part" name="P"/>')
    entries: list[tuple[str | zipfile.ZipInfo, bytes]] = [(f"e{i}", b"") for i in range(60)]
    data = make_zip([("Document.xml", document), *entries])
    assert inspect_bytes(data, Limits(max_entries=61)).entry_count == 61
    refused(data, "FCSTD_TOO_MANY_ENTRIES", Limits(max_entries=50))
    lying = patch_entry_count(data, 1)
    refused(lying, "FCSTD_TOO_MANY_ENTRIES", Limits(max_entries=50))  # counted after opening
    error = refused(lying, "FCSTD_TOO_MANY_ENTRIES", Limits(max_entries=2))
    assert error.extra["reason"] == "directory_size"  # 61 records cannot fit in 2 entries' room


def test_archive_too_large(design_bytes: bytes) -> None:
    error = refused(design_bytes, "FCSTD_TOO_LARGE", Limits(max_archive_bytes=1000))
    assert (error.status_code, error.extra["reason"]) == (413, "archive_size")


def test_total_uncompressed_size_limit(design_bytes: bytes) -> None:
    noise = zlib.compress(b"random enough") * 30_000  # compresses poorly: no ratio alarm
    data = design_with(design_bytes, ("PartShape9.brp", noise))
    error = refused(data, "FCSTD_TOO_LARGE", Limits(max_total_uncompressed=len(noise)))
    assert error.extra["reason"] == "uncompressed_size"
    # A declared size of 4 GiB is refused from the directory alone, under the default limits.
    huge = patch_central(data, "PartShape9.brp", file_size=0xFFFF_FFF0)
    assert refused(huge, "FCSTD_TOO_LARGE").extra["reason"] == "uncompressed_size"


def test_document_xml_size_limit(design_bytes: bytes) -> None:
    error = refused(design_bytes, "FCSTD_TOO_LARGE", Limits(max_document_xml=10_000))
    assert error.extra["reason"] == "document_xml"


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """128 MiB of zeros in about 130 KB: a 1000:1 entry beside a real-looking Document.xml."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("Document.xml", fcstd_xml('<Object type="App::Part" name="P"/>'))
        with archive.open("PartShape.brp", "w") as entry:
            zeros = bytes(MiB)
            for _ in range(128):
                entry.write(zeros)
    return buffer.getvalue()


def test_zip_bomb_is_refused_without_decompressing_it(zip_bomb: bytes) -> None:
    assert len(zip_bomb) < 200_000
    reader = CountingReader(zip_bomb)
    started = time.perf_counter()
    with pytest.raises(FCStdError) as caught:
        inspect_fcstd(reader)
    assert caught.value.error_code == "FCSTD_COMPRESSION_RATIO"
    assert caught.value.params == {"limit": "200"}
    assert time.perf_counter() - started < 0.5
    # Only the end record and the central directory were read, none of the compressed data.
    # (The end record is searched for in the file's last 64 KiB, which hold the entry's end.)
    start, end = data_range(zip_bomb, "PartShape.brp")
    assert end - start > 100_000
    assert reader.read_within(start, end - 65_536) == 0


def test_zip_bomb_with_lying_sizes_stops_at_the_declared_size(zip_bomb: bytes) -> None:
    """The directory claims 1 MiB: nothing past it is decompressed, and the lie is caught."""
    lying = patch_central(zip_bomb, "PartShape.brp", file_size=MiB)
    reader = CountingReader(lying)
    started = time.perf_counter()
    with pytest.raises(FCStdError) as caught:
        inspect_fcstd(reader)
    assert caught.value.error_code == "FCSTD_CORRUPT"  # the CRC of the first MiB cannot match
    assert caught.value.extra["entry"] == "PartShape.brp"
    assert time.perf_counter() - started < 0.5


def test_understated_sizes_are_read_no_further_than_declared(design_bytes: bytes) -> None:
    """An entry claiming 100 KB but holding 2 MiB (of incompressible data): reading stops near
    the claimed size and the mismatch is refused."""
    noise = random.Random(7).randbytes(2 * MiB)
    data = design_with(design_bytes, ("PartShape9.brp", noise))
    lying = patch_central(data, "PartShape9.brp", file_size=100_000)
    reader = CountingReader(lying)
    with pytest.raises(FCStdError) as caught:
        inspect_fcstd(reader)
    assert (caught.value.error_code, caught.value.extra["entry"]) == (
        "FCSTD_CORRUPT",
        "PartShape9.brp",
    )
    start, end = data_range(lying, "PartShape9.brp")
    assert end - start > 2 * MiB
    assert reader.read_within(start, end - 65_536) < 100_000 + 2 * 65_536


def test_one_bomb_entry_among_incompressible_ones(design_bytes: bytes) -> None:
    """The whole archive's ratio is low; the one entry's record alone gives it away."""
    noise = random.Random(3).randbytes(4 * MiB)
    data = design_with(design_bytes, ("PartShape8.brp", noise), ("PartShape9.brp", bytes(2 * MiB)))
    reader = CountingReader(data)
    with pytest.raises(FCStdError) as caught:
        inspect_fcstd(reader)
    assert caught.value.error_code == "FCSTD_COMPRESSION_RATIO"
    start, end = data_range(data, "PartShape8.brp")
    assert reader.read_within(start, end - 65_536) == 0  # refused before reading any entry


def test_many_small_entries_with_a_high_overall_ratio() -> None:
    """No single entry passes the per-entry threshold; the archive as a whole does."""
    limits = Limits(ratio_threshold=MiB)
    document = fcstd_xml('<Object type="App::Part" name="P"/>')
    entries: list[tuple[str | zipfile.ZipInfo, bytes]] = [
        (f"PartShape{i}.brp", bytes(MiB - 1)) for i in range(4)
    ]
    data = make_zip([("Document.xml", document), *entries])
    assert refused(data, "FCSTD_COMPRESSION_RATIO", limits).status_code == 422


def test_nested_zip_is_never_opened(design_bytes: bytes, zip_bomb: bytes) -> None:
    result = inspect_bytes(design_with(design_bytes, ("attachments/bomb.zip", zip_bomb)))
    # The inner archive is counted as the bytes it is, never expanded.
    assert result.uncompressed_size == inspect_bytes(design_bytes).uncompressed_size + len(zip_bomb)


class EndlessZeros:
    """A decompressor that lies: it keeps producing bytes whatever the archive declared."""

    def __init__(self) -> None:
        self.produced = 0

    def read(self, size: int) -> bytes:
        self.produced += size
        return bytes(size)


def test_streaming_cap_counts_bytes_not_declarations() -> None:
    limits = Limits()
    stream = EndlessZeros()
    with pytest.raises(FCStdError) as caught:
        for _chunk in fcstd.capped_chunks(
            stream.read, 1000, limits, fcstd.DecompressionBudget(limits), None
        ):
            pass
    assert caught.value.error_code == "FCSTD_COMPRESSION_RATIO"
    assert stream.produced <= limits.ratio_threshold + fcstd.CHUNK_SIZE
    # With a believable compressed size, the per-entry cap and then the total budget stop it.
    stream = EndlessZeros()
    with pytest.raises(FCStdError) as caught:
        for _chunk in fcstd.capped_chunks(
            stream.read, 10 * MiB, limits, fcstd.DecompressionBudget(limits), MiB
        ):
            pass
    assert (caught.value.error_code, caught.value.extra["reason"]) == (
        "FCSTD_TOO_LARGE",
        "entry_size",
    )
    assert stream.produced <= MiB + fcstd.CHUNK_SIZE
    small = Limits(max_total_uncompressed=2 * MiB)
    budget = fcstd.DecompressionBudget(small)
    with pytest.raises(FCStdError) as caught:
        for _chunk in fcstd.capped_chunks(EndlessZeros().read, 10 * MiB, small, budget, None):
            pass
    assert caught.value.extra["reason"] == "uncompressed_size"
    assert budget.used <= 2 * MiB + fcstd.CHUNK_SIZE


# ---------------------------------------------------------------------------------------------
# Hostile or broken Document.xml
# ---------------------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE Document [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Document SchemaVersion="4" ProgramVersion="0.20R"><Objects>
<Object type="App::Part" name="P"/></Objects><ObjectData><Object name="P"><Properties>
<Property name="Label" type="App::PropertyString"><String value="&lol9;"/></Property>
</Properties></Object></ObjectData></Document>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE Document [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<Document SchemaVersion="4" ProgramVersion="0.20R"><Objects>
<Object type="App::Part" name="P"/></Objects><ObjectData><Object name="P"><Properties>
<Property name="Label" type="App::PropertyString"><String value="&secret;"/></Property>
</Properties></Object></ObjectData></Document>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE Document SYSTEM "http://127.0.0.1:9/evil.dtd">
<Document SchemaVersion="4" ProgramVersion="0.20R"><Objects>
<Object type="App::Part" name="P"/></Objects></Document>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE Document [<!ENTITY % remote SYSTEM "file:///etc/passwd"> %remote;]>
<Document/>"""


@pytest.mark.parametrize(
    "document", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY]
)
def test_dtds_and_entities_are_refused(document: bytes) -> None:
    started = time.perf_counter()
    error = refused(make_zip([("Document.xml", document)]), "FCSTD_XML_FORBIDDEN")
    assert time.perf_counter() - started < 0.5
    assert error.extra["reason"] == "DTDForbidden"
    assert "root:" not in error.detail("en")  # nothing of /etc/passwd leaks into the message


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"<Document><Objects><Object type='App::Part' name='P'/>", "syntax"),
        (b"<Document><Objects></Document>", "syntax"),
        (b"", "syntax"),
        (b"\xff\xfe garbage \x00\x01", "syntax"),
        (b"<html><body>hello</body></html>", "not_a_document"),
        (b"<Document><Objects><Object name='P'/></Objects></Document>", "object_declaration"),
        (
            b"<Document><Objects><Object type='A' name='P'/><Object type='B' name='P'/>"
            b"</Objects></Document>",
            "object_declaration",
        ),
        (b"<Document>" + b"<a>" * 100 + b"</a>" * 100 + b"</Document>", "too_deep"),
        (b"<?xml version='1.0' encoding='klingon'?><Document/>", "encoding"),
    ],
)
def test_malformed_document_xml(document: bytes, reason: str) -> None:
    error = refused(make_zip([("Document.xml", document)]), "FCSTD_MALFORMED_XML")
    assert error.extra["reason"] == reason


def test_bulky_properties_are_not_kept_in_memory() -> None:
    """A sketch's geometry or a long number list streams past without being built."""
    items = "".join(f'<F v="{i}.5"/>' for i in range(200_000))
    data = object_data(
        "P",
        f'<Property name="Values" type="App::PropertyFloatList"><FloatList>{items}</FloatList>'
        "</Property>",
        '<Property name="Label" type="App::PropertyString"><String value="Liste"/></Property>',
    )
    archive = make_zip(
        [("Document.xml", fcstd_xml('<Object type="Part::Feature" name="P"/>', data))]
    )
    tracemalloc.start()
    try:
        result = inspect_bytes(archive)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.objects[0].label == "Liste"
    assert peak < 8 * MiB  # the list alone would take about 50 MiB as elements


def test_document_xml_cut_in_the_middle(design_bytes: bytes) -> None:
    xml = document_xml(design_bytes)
    error = refused(make_zip([("Document.xml", xml[: len(xml) // 2])]), "FCSTD_MALFORMED_XML")
    assert error.extra["reason"] == "syntax"
    assert error.extra["line"] > 1


def test_document_xml_without_objects(design_bytes: bytes) -> None:
    refused(make_zip([("Document.xml", fcstd_xml(""))]), "FCSTD_EMPTY_DOCUMENT")
    refused(make_zip([("Document.xml", b"<Document/>")]), "FCSTD_EMPTY_DOCUMENT")


def test_object_limit(design_bytes: bytes) -> None:
    error = refused(design_bytes, "FCSTD_TOO_MANY_OBJECTS", Limits(max_objects=5))
    assert error.status_code == 413
    assert error.params == {"limit": 5}


def test_link_cycles_still_give_a_tree() -> None:
    """Hand-made links that FreeCAD would never save: groups inside each other, a feature
    consuming itself, two features consuming each other, links to unknown objects."""
    objects = "".join(
        f'<Object type="{kind}" name="{name}"/>'
        for name, kind in [
            ("G1", "App::DocumentObjectGroup"),
            ("G2", "App::DocumentObjectGroup"),
            ("A", "Part::Feature"),
            ("B", "Part::Feature"),
        ]
    )
    data = "".join(
        [
            object_data("G1", link_property("Group", "App::PropertyLinkList", "G2", "A")),
            object_data("G2", link_property("Group", "App::PropertyLinkList", "G1")),
            object_data("A", link_property("Base", "App::PropertyLink", "A", "B", "Nowhere")),
            object_data("B", link_property("Base", "App::PropertyLink", "A")),
        ]
    )
    result = inspect_bytes(make_zip([("Document.xml", fcstd_xml(objects, data))]))
    objects_by_name = by_name(result)
    assert result.roots
    for info in result.objects:
        node, steps = info, 0
        while node.parent is not None:
            node, steps = objects_by_name[node.parent], steps + 1
            assert steps <= len(result.objects)
    assert objects_by_name["A"].links == ["A", "B"]  # the unknown "Nowhere" is dropped


def test_consumed_inputs_move_only_within_their_container() -> None:
    """A feature takes its inputs under it when they are top-level or its siblings, the first
    consumer winning; an input kept in another group stays there."""
    objects = "".join(
        f'<Object type="{kind}" name="{name}"/>'
        for name, kind in [
            ("Left", "App::DocumentObjectGroup"),
            ("Right", "App::DocumentObjectGroup"),
            ("Shared", "Part::Box"),
            ("Sibling", "Part::Box"),
            ("Loose", "Part::Box"),
            ("Fusion", "Part::MultiFuse"),
            ("Mirror", "Part::Mirroring"),
            ("Outer", "Part::Cut"),
            ("Inner", "Part::Fillet"),
            ("Piece", "Part::Box"),
        ]
    )
    data = "".join(
        [
            object_data("Left", link_property("Group", "App::PropertyLinkList", "Shared")),
            object_data(
                "Right", link_property("Group", "App::PropertyLinkList", "Sibling", "Fusion")
            ),
            object_data(
                "Fusion",
                link_property("Shapes", "App::PropertyLinkList", "Shared", "Sibling", "Loose"),
            ),
            object_data("Mirror", link_property("Source", "App::PropertyLink", "Loose")),
            object_data("Outer", link_property("Base", "App::PropertyLink", "Piece", "Inner")),
            object_data("Inner", link_property("Base", "App::PropertyLink", "Piece")),
        ]
    )
    result = inspect_bytes(make_zip([("Document.xml", fcstd_xml(objects, data))]))
    objects_by_name = by_name(result)
    assert objects_by_name["Shared"].parent == "Left"
    assert objects_by_name["Fusion"].children == ["Sibling", "Loose"]
    assert objects_by_name["Fusion"].links == ["Shared", "Sibling", "Loose"]
    assert objects_by_name["Mirror"].children == []
    assert objects_by_name["Mirror"].links == ["Loose"]
    # Inner becomes Piece's sibling under Outer, but Outer used Piece first.
    assert objects_by_name["Outer"].children == ["Piece", "Inner"]
    assert objects_by_name["Inner"].children == []
    assert result.roots == ["Left", "Right", "Mirror", "Outer"]


def test_unit_system_and_custom_enumerations() -> None:
    """FreeCAD 0.21+ stores the document's unit system as an enumeration with its names."""
    unit_system = (
        '<Property name="UnitSystem" type="App::PropertyEnumeration">'
        '<Integer value="1" CustomEnum="true"/><CustomEnumList count="2">'
        '<Enum value="Standard (mm, kg, s, degree)"/><Enum value="MKS (m, kg, s, degree)"/>'
        "</CustomEnumList></Property>"
    )
    objects = '<Object type="App::VarSet" name="VarSet"/>'
    bag = object_data(
        "VarSet",
        '<Property name="Width" type="App::PropertyLength" group="Base" doc="" attr="0" ro="0"'
        ' hide="0" status="2097152"><Float value="12.5"/></Property>',
        '<Property name="Depth" type="App::PropertyQuantity" status="2097152">'
        '<Float value="inf"/></Property>',
        '<Property name="Label" type="App::PropertyString">'
        '<String value="Değişkenler"/></Property>',
    )
    result = inspect_bytes(make_zip([("Document.xml", fcstd_xml(objects, bag, unit_system))]))
    assert result.unit_system == "MKS (m, kg, s, degree)"
    assert result.program_version == "1.0R39109 (Git)"
    assert result.objects[0].label == "Değişkenler"
    parameters = {p.name: p for p in result.parameters}
    assert (parameters["Width"].value, parameters["Width"].unit) == (12.5, "mm")
    assert parameters["Width"].group == "Base"
    assert parameters["Depth"].value is None  # not finite: never a JSON-breaking float


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("=100mm", (100, "mm", None)),
        ("= 2.5 mm/s", (2.5, "mm/s", None)),
        ("=-1e3 kg*m^2", (-1000.0, "kg*m^2", None)),
        ("=45°", (45, "°", None)),
        ("12", (12, None, None)),
        ("0.5", (0.5, None, None)),
        ("'007", ("007", None, None)),
        ("12 apples", ("12 apples", None, None)),
        ("çelik", ("çelik", None, None)),
        ("=length * 2", (None, None, "length * 2")),
        ("=Params.width + 3mm", (None, None, "Params.width + 3mm")),
    ],
)
def test_cell_values(content: str, expected: tuple[Any, ...]) -> None:
    assert fcstd.cell_value(content) == expected


# ---------------------------------------------------------------------------------------------
# Errors as clients see them
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "code", "status"),
    [
        (lambda design: b"", "FCSTD_NOT_A_ZIP", 422),
        (lambda design: design[: len(design) // 2], "FCSTD_TRUNCATED", 422),
        (lambda design: design_with(design, ("../x", b"")), "FCSTD_UNSAFE_ENTRY", 422),
        (lambda design: make_zip([("a", b"")]), "FCSTD_NO_DOCUMENT", 422),
    ],
)
def test_errors_are_localized_problems(
    design_bytes: bytes, make: Callable[[bytes], bytes], code: str, status: int
) -> None:
    error = refused(make(design_bytes), code)
    english, turkish = problem_body(error, "en"), problem_body(error, "tr")
    assert (english["error_code"], english["status"]) == (code, status)
    assert english["type"] == "urn:tezgah:problem:" + code.lower().replace("_", "-")
    assert turkish["detail"] != english["detail"]
    assert "{" not in turkish["detail"]
    assert turkish["title"] == "Geçersiz FreeCAD dosyası"
