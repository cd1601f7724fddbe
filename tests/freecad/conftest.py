"""Real FCStd files, made once per session by FreeCAD itself (``freecadcmd-python3 -c``).

One FreeCAD run writes every file (start-up costs about a second): ``design.FCStd`` (a Part box and
cylinder driven by spreadsheet aliases, cut into each other inside a group; a property bag; an
App::Part holding a PartDesign body with a padded sketch; a sketch attached to the box; a scripted
Python feature) and ``empty.FCStd`` (a document saved with no object). Headless FreeCAD writes no
thumbnail; the tests add one to copies of these files.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

FREECADCMD = "/usr/lib/freecad/bin/freecadcmd-python3"

GENERATOR = r"""
import FreeCAD as App
import Part
import Sketcher

doc = App.newDocument("Tasarim")
sheet = doc.addObject("Spreadsheet::Sheet", "Params")
sheet.Label = "Ölçüler"
cells = [("length", "=100 mm"), ("width", "60 mm"), ("hole_d", "12"), ("malzeme", "çelik")]
for row, (alias, content) in enumerate(cells, start=1):
    sheet.set(f"A{row}", alias)
    sheet.set(f"B{row}", content)
    sheet.setAlias(f"B{row}", alias)
sheet.set("B5", "=length * 2")
sheet.setAlias("B5", "double_length")

box = doc.addObject("Part::Box", "Box")
box.Label = "Gövde Işık"
box.setExpression("Length", "Params.length")
box.setExpression("Width", "Params.width")
box.Height = 30
cylinder = doc.addObject("Part::Cylinder", "Cylinder")
cylinder.Label = "Delik"
cylinder.setExpression("Radius", "Params.hole_d / 2")
cylinder.Height = 40
cylinder.Placement.Base = App.Vector(50, 30, -5)
cut = doc.addObject("Part::Cut", "Cut")
cut.Label = "Kesim"
cut.Base = box
cut.Tool = cylinder
group = doc.addObject("App::DocumentObjectGroup", "Group")
group.Label = "Parçalar"
group.addObject(cut)

bag = doc.addObject("App::FeaturePython", "Settings")
bag.Label = "Ayarlar"
bag.addProperty("App::PropertyLength", "Thickness", "Parametreler", "plate thickness")
bag.Thickness = 5
bag.addProperty("App::PropertyInteger", "Count", "Parametreler", "how many")
bag.Count = 3
bag.addProperty("App::PropertyString", "Malzeme", "Parametreler", "malzeme adı")
bag.Malzeme = "Alüminyum"
bag.addProperty("App::PropertyAngle", "Aci", "Parametreler")
bag.Aci = 45
bag.addProperty("App::PropertyBool", "Enabled", "Seçenekler")
bag.Enabled = True
bag.addProperty("App::PropertyEnumeration", "Finish", "Seçenekler")
bag.Finish = ["mat", "parlak"]
bag.Finish = "parlak"
bag.addProperty("App::PropertyFloat", "Scale", "Seçenekler")
bag.setExpression("Scale", "Params.hole_d / 8")
bag.addProperty("App::PropertyLength", "Hidden", "Seçenekler", "", 0, False, True)
bag.addProperty("App::PropertyLength", "Locked", "Seçenekler", "", 0, True, False)
bag.Locked = 7

assembly = doc.addObject("App::Part", "Assembly")
assembly.Label = "Montaj"
assembly.addProperty("App::PropertyDistance", "Offset", "Parametreler", "gap")
assembly.Offset = 2.5
body = doc.addObject("PartDesign::Body", "Body")
assembly.addObject(body)
sketch = body.newObject("Sketcher::SketchObject", "Sketch")
corners = [App.Vector(0, 0, 0), App.Vector(20, 0, 0), App.Vector(20, 10, 0), App.Vector(0, 10, 0)]
for i in range(4):
    sketch.addGeometry(Part.LineSegment(corners[i], corners[(i + 1) % 4]))
pad = body.newObject("PartDesign::Pad", "Pad")
pad.Profile = sketch
pad.Length = 4

attached = doc.addObject("Sketcher::SketchObject", "Sketch001")
attached.Support = (box, ["Face6"])
attached.MapMode = "FlatFace"


class Widget:
    def __init__(self, obj):
        obj.Proxy = self
        obj.addProperty("App::PropertyLength", "Depth", "Widget", "defined by code")
        obj.Depth = 3

    def execute(self, obj):
        pass


scripted = doc.addObject("App::FeaturePython", "Scripted")
Widget(scripted)

doc.recompute()
hole_volume = 3.141592653589793 * 6 ** 2 * 30
assert abs(cut.Shape.Volume - (100 * 60 * 30 - hole_volume)) < 1e-6, cut.Shape.Volume
assert abs(pad.Shape.Volume - 800) < 1e-6, pad.Shape.Volume
assert abs(bag.Scale - 1.5) < 1e-12, bag.Scale
doc.saveAs(OUT + "/design.FCStd")
App.newDocument("Bos").saveAs(OUT + "/empty.FCStd")
"""


@pytest.fixture(scope="session")
def freecad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fcstd")
    # freecadcmd rewrites its user configuration on exit: give it a private home.
    env = {**os.environ, "FREECAD_USER_HOME": str(out / "home")}
    code = f"OUT = {str(out)!r}\n{GENERATOR}"
    result = subprocess.run(
        [FREECADCMD, "-c", code], env=env, cwd=out, capture_output=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return out


@pytest.fixture(scope="session")
def design_path(freecad_files: Path) -> Path:
    return freecad_files / "design.FCStd"


@pytest.fixture(scope="session")
def design_bytes(design_path: Path) -> bytes:
    return design_path.read_bytes()


@pytest.fixture(scope="session")
def empty_document_path(freecad_files: Path) -> Path:
    return freecad_files / "empty.FCStd"
