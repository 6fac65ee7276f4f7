"""Fleet document -> JSON (no rich import: this is the fast path for 10,000 nodes)."""

from __future__ import annotations

import json
from typing import Any


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
