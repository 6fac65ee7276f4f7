"""Fleet document -> one self-contained HTML page (`gpudoctor fleet ... --format html -o fleet.html`).

The page: a summary line, the class x image matrix coloured by verdict (each cell opens its
findings with fix and refs; each class opens its node findings and worst nodes), the what-if
diff and the rollout plan when asked for, and the invalid files. Layout in
templates/fleet.html.j2; this module only shapes the document for it.
"""

from __future__ import annotations

from typing import Any

from gpudoctor.exitcodes import RUNS
from gpudoctor.report.fleet_labels import class_labels, image_labels
from gpudoctor.report.html_page import render_page


def _cells(document: dict[str, Any], images: list[str]) -> dict[tuple[int, int], dict[str, Any]]:
    matrix = {(row["image"], row["class"]): row for row in document.get("matrix", [])}
    cells = {}
    for row_index, node_class in enumerate(document["classes"]):
        for column, image in enumerate(images):
            cell = matrix.get((image, node_class["key"]))
            if cell is not None:
                cells[(row_index, column)] = cell
    return cells


def summary(document: dict[str, Any]) -> str:
    classes, nodes = len(document["classes"]), document["nodes_total"]
    text = f"{nodes} nodes in {classes} classes"
    images = document.get("images", [])
    if images:
        runs = sum(1 for row in document["matrix"] if row["verdict"] in RUNS)
        text += f"; {len(images)} image(s): {runs} of {len(document['matrix'])} image x class cells run"
    if document["invalid_total"]:
        text += f"; {document['invalid_total']} invalid report file(s)"
    return text


def render(document: dict[str, Any]) -> str:
    images = [image["reference"] for image in document.get("images", [])]
    return render_page(
        "fleet.html.j2",
        document=document,
        summary=summary(document),
        images=images,
        image_label=image_labels(images),
        class_label=class_labels(document["classes"]),
        cells=_cells(document, images),
        image_errors={i["reference"]: i["error"] for i in document.get("images", []) if i.get("error")},
    )
