"""Fleet document -> JSON (no rich import: this is the fast path for 10,000 nodes)."""

from __future__ import annotations

import json

TYPE_CHECKING = False  # typing is not imported at run time: see docs/startup.md
if TYPE_CHECKING:
    from typing import Any


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
