"""Extract message ids from src/ and merge them into the en and tr catalogs.

Run after adding or changing a message: ``python tools/sync_catalogs.py``. New Turkish entries
come out empty; ``tests/core/test_i18n.py`` fails until each one is translated.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
LOCALE = ROOT / "src" / "tezgah" / "locale"
TEMPLATE = LOCALE / "messages.pot"


def extract() -> Catalog:
    subprocess.run(  # noqa: S603 - fixed arguments
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            str(ROOT / "babel.cfg"),
            "-k",
            "_",
            "-k",
            "N_",
            "--no-location",
            "--omit-header",
            "--sort-output",
            "-o",
            str(TEMPLATE),
            str(ROOT / "src"),
        ],
        check=True,
        capture_output=True,
    )
    with TEMPLATE.open("rb") as handle:
        return read_po(handle)


def merge(language: str, template: Catalog) -> None:
    path = LOCALE / language / "LC_MESSAGES" / "messages.po"
    existing: dict[str, str] = {}
    if path.exists():
        with path.open("rb") as handle:
            existing = {str(m.id): str(m.string) for m in read_po(handle) if m.id}
    catalog = Catalog(locale=language, project="tezgah", charset="utf-8")
    for message in template:
        if not message.id:
            continue
        msgid = str(message.id)
        translated = existing.get(msgid, "")
        if language == "en" and not translated:
            translated = msgid
        catalog.add(msgid, translated)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        write_po(handle, catalog, omit_header=False, sort_output=True, width=100)


def main() -> None:
    template = extract()
    merge("en", template)
    merge("tr", template)


if __name__ == "__main__":
    main()
