"""tezgah: a self-hostable FreeCAD server."""

__version__ = "0.1.0"
