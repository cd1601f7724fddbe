"""Set Turkish translations from a JSON object {msgid: msgstr}: ``python tools/translate.py F``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

CATALOG = Path(__file__).resolve().parents[1] / "src/tezgah/locale/tr/LC_MESSAGES/messages.po"


def main() -> None:
    translations: dict[str, str] = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    with CATALOG.open("rb") as handle:
        catalog = read_po(handle, locale="tr")
    for msgid, msgstr in translations.items():
        message = catalog.get(msgid)
        if message is None:
            raise SystemExit(f"unknown message id: {msgid!r} (run tools/sync_catalogs.py)")
        message.string = msgstr
    with CATALOG.open("wb") as handle:
        write_po(handle, catalog, sort_output=True, width=100)


if __name__ == "__main__":
    main()
