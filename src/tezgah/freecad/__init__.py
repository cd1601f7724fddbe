"""FreeCAD documents: a safe pure-Python FCStd reader; FreeCAD itself runs only in workers."""
