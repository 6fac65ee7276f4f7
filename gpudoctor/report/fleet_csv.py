"""Fleet document -> CSV: one row per node class, one verdict column per image.

The pivot is what spreadsheets and rollout tickets want: which classes can run
which image. Findings are joined as `RULE-ID:severity:nodes` in one cell.
Invalid report files follow as rows whose key is INVALID and whose findings
cell is `path: reason`, so a CSV consumer cannot miss them.
"""

from __future__ import annotations

import csv
import io
from typing import Any

CLASS_COLUMNS = (
    "key",
    "gpu_models",
    "driver_branch",
    "driver_cuda",
    "kernel_module",
    "topology",
    "nodes",
    "verdict",
)


def render(document: dict[str, Any]) -> str:
    images = [image["reference"] for image in document.get("images", [])]
    # An image that could not be fetched: its verdicts are unknown, and this column says why.
    failed = [image["reference"] for image in document.get("images", []) if image.get("error")]
    matrix = {(row["image"], row["class"]): row for row in document.get("matrix", [])}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [*CLASS_COLUMNS, "findings", *(f"image:{ref}" for ref in images), *(f"error:{ref}" for ref in failed)]
    )
    for node_class in document["classes"]:
        findings = ";".join(f"{f['rule_id']}:{f['severity']}:{f['nodes']}" for f in node_class["findings"])
        verdicts = [matrix[(ref, node_class["key"])]["verdict"] for ref in images]
        errors = [matrix[(ref, node_class["key"])].get("error", "") for ref in failed]
        writer.writerow([*(node_class[c] for c in CLASS_COLUMNS), findings, *verdicts, *errors])
    for item in document["invalid_reports"]:
        writer.writerow(["INVALID", "", "", "", "", "", 0, "", f"{item['path']}: {item['error']}"])
    return buffer.getvalue()
