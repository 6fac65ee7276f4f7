"""The JSON report as printed: the contract in docs/report.md and schema/report.schema.json."""

from __future__ import annotations

import json

TYPE_CHECKING = False  # typing is not imported at run time: see docs/startup.md
if TYPE_CHECKING:
    from typing import Any


def render(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
