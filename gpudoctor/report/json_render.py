"""A document as printed in JSON: scan and preflight reports (the contract in docs/report.md and
schema/report.schema.json), the fleet document and the explain report. No rich import: this is
the fast path for 10,000-node fleets."""

from __future__ import annotations

import json
from typing import Any


def render(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
