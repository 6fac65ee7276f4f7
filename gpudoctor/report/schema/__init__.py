"""The JSON Schemas of every JSON document the CLI prints, shipped inside the package.

Each schema lives next to the code that builds its document; `load_schema(name)`
finds it by the document's name so tests and consumers need not know the layout.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parent.parent.parent

# Document name -> schema file, relative to the gpudoctor package.
SCHEMA_FILES: dict[str, str] = {
    "report": "report/schema/report.schema.json",  # scan, preflight
    "fleet": "fleet/schema/fleet.schema.json",
    "explain": "explain/schema/explain.schema.json",
    "kernels": "kernels/schema/kernels.schema.json",
    "rules-list": "report/schema/rules-list.schema.json",
}

SCHEMA_PATH = _PACKAGE / SCHEMA_FILES["report"]


def schema_path(name: str = "report") -> Path:
    try:
        return _PACKAGE / SCHEMA_FILES[name]
    except KeyError:
        raise KeyError(f"no JSON Schema named {name!r} (known: {', '.join(SCHEMA_FILES)})") from None


@lru_cache(maxsize=len(SCHEMA_FILES))
def load_schema(name: str = "report") -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return schema
