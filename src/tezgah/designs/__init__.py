"""Designs: versioned CAD files, categories, tags, reviews and share links."""
