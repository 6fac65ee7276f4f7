"""Fleet document -> terminal text: a compact class x image matrix, then only what is not ok.

Default view (fits a screen at 80 columns): one row per node class, one column per image,
one symbol per verdict (✓ ok/info, ! warn, ? unknown, ✗ fail; coloured on a terminal), then
each rule that keeps a cell or a class from ok, once, with where it fired, and a final
`verdict:` line. `details=True` (--details) adds per class its findings with node counts and
worst nodes, and per non-ok cell its findings with fix and refs (refs on lines of their own,
never broken). Images that could not be fetched are named once, with the reason.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from gpudoctor.exitcodes import CLEAN, SEVERITY_RANK
from gpudoctor.report.fleet_changes import render_plan, render_what_if
from gpudoctor.report.fleet_labels import class_labels, image_labels
from gpudoctor.report.style import SEVERITY_STYLE, SEVERITY_SYMBOL, console, indented, verdict_markup


def _symbol(verdict: str) -> str:
    return f"[{SEVERITY_STYLE[verdict]}]{SEVERITY_SYMBOL[verdict]}[/]"


def _matrix(out: Any, document: dict[str, Any], labels: dict[str, str], images: dict[str, str]) -> None:
    cells = {(row["image"], row["class"]): row for row in document.get("matrix", [])}
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1))
    # A wrapped class label costs a line per row: the class column keeps its width (up to half
    # the screen). Image headings that do not fit beside it become numbers, keyed below.
    class_width = min(max((len(label) for label in labels.values()), default=10), out.width // 2)
    table.add_column("node class", overflow="fold", min_width=class_width)
    table.add_column("nodes", justify="right", no_wrap=True)
    table.add_column("node", justify="center", no_wrap=True)
    headings = list(images.values())
    if class_width + len("nodes  node") + sum(len(h) + 2 for h in headings) + 2 > out.width:
        headings = [f"[{number}]" for number in range(1, len(images) + 1)]
    for heading in headings:
        table.add_column(escape(heading), justify="center", overflow="fold")
    for node_class in document["classes"]:
        row = [escape(labels[node_class["key"]]), str(node_class["nodes"]), _symbol(node_class["verdict"])]
        for reference in images:
            cell = cells.get((reference, node_class["key"]))
            row.append(_symbol(cell["verdict"]) if cell else "")
        table.add_row(*row)
    out.print(table)
    legend = "  ".join(f"{_symbol(v)} {v}" for v in ("ok", "warn", "unknown", "fail"))
    out.print(f"{legend}  (node: the nodes' own findings)")
    if headings != list(images.values()):
        indented(
            out,
            escape("  ".join(f"{h} {label}" for h, label in zip(headings, images.values(), strict=True))),
            0,
        )


def _not_ok(document: dict[str, Any], labels: dict[str, str], images: dict[str, str]) -> list[dict[str, Any]]:
    """Each rule that keeps a class or a cell from ok: severity, title, fix, refs, where."""
    rules: dict[tuple[str, str], dict[str, Any]] = {}

    def add(finding: dict[str, Any], column: str, class_key: str) -> None:
        if finding["severity"] in CLEAN:
            return
        entry = rules.setdefault((finding["rule_id"], finding["severity"]), {**finding, "where": {}})
        entry["where"].setdefault(column, []).append(labels[class_key])

    for node_class in document["classes"]:
        for finding in node_class["findings"]:
            add(finding, "nodes", node_class["key"])
    for row in document.get("matrix", []):
        for finding in row["findings"]:
            add(finding, images[row["image"]], row["class"])
    for entry in rules.values():
        # "A800 R535, B200 R570 × vllm-openai:v0.23.0; T4 R515 (nodes)"
        entry["where"] = "; ".join(
            ", ".join(classes) + (" (nodes)" if column == "nodes" else f" × {column}")
            for column, classes in entry["where"].items()
        )
    return sorted(rules.values(), key=lambda r: (-SEVERITY_RANK[r["severity"]], r["rule_id"]))


def _refs(out: Any, refs: list[str], indent: str) -> None:
    for ref in refs:
        out.print(f"{indent}{escape(ref)}", soft_wrap=True)  # one line each, never broken


def _summary(document: dict[str, Any], images: dict[str, str]) -> str:
    matrix = document.get("matrix", [])
    parts = [f"{document['nodes_total']} nodes in {len(document['classes'])} classes"]
    if matrix:
        counts = Counter("ok" if row["verdict"] in CLEAN else row["verdict"] for row in matrix)
        cells = ", ".join(f"{counts[v]} {v}" for v in ("fail", "unknown", "warn", "ok") if counts[v])
        parts.append(f"{len(images)} image(s) x class: {cells}")
    if document["invalid_total"]:
        parts.append(f"{document['invalid_total']} invalid file(s)")
    return "; ".join(parts)


def _details(out: Any, document: dict[str, Any], labels: dict[str, str], images: dict[str, str]) -> None:
    out.print("[bold]Classes[/]")
    for node_class in document["classes"]:
        out.print(
            f"{verdict_markup(node_class['verdict'])} {escape(labels[node_class['key']])}: "
            f"{node_class['nodes']} nodes  [dim]{escape(node_class['key'])}[/]"
        )
        for finding in node_class["findings"]:
            out.print(
                f"    {_symbol(finding['severity'])} {escape(finding['rule_id'])} x{finding['nodes']}: "
                f"{escape(finding['title'])}"
            )
        worst = [n for n in node_class["worst_nodes"] if n["verdict"] not in CLEAN]
        if worst:
            names = ", ".join(f"{n['hostname']} ({n['verdict']})" for n in worst)
            out.print(f"    worst nodes: {escape(names)}")
    cells = [row for row in document.get("matrix", []) if row["verdict"] not in CLEAN]
    if cells:
        out.print("[bold]Cells not ok[/]")
    for row in cells:
        out.print(
            f"{verdict_markup(row['verdict'])} {escape(images[row['image']])} on "
            f"{escape(labels[row['class']])} ({row['nodes']} nodes)"
        )
        for finding in row["findings"]:
            if finding["severity"] in CLEAN:
                continue
            out.print(
                f"    {_symbol(finding['severity'])} {escape(finding['rule_id'])}: {escape(finding['title'])}"
            )
            out.print(f"      {escape(finding['message'])}")
            if finding.get("fix"):
                out.print(f"      fix: {escape(finding['fix'])}")
            _refs(out, finding.get("refs") or [], "      ")


def render(document: dict[str, Any], details: bool = False) -> str:
    buffer = io.StringIO()
    out = console(buffer)
    labels = class_labels(document["classes"])
    images = image_labels([image["reference"] for image in document.get("images", [])])
    out.print(f"[bold]Fleet[/]: {escape(_summary(document, images))}")
    _matrix(out, document, labels, images)
    for image in document.get("images", []):
        if image.get("error"):
            out.print(
                f"{_symbol('unknown')} image {escape(image['reference'])} not fetched: {escape(image['error'])}"
            )
    not_ok = _not_ok(document, labels, images)
    if not_ok and not details:
        out.print("[bold]Not ok[/] (--details: fixes and refs)")
        for rule in not_ok:
            indented(out, f"{_symbol(rule['severity'])} {escape(rule['rule_id'])} {escape(rule['title'])}", 0)
            indented(out, escape(rule["where"]), 4, style="dim")
    if details:
        _details(out, document, labels, images)
    if document.get("what_if") or "plan" in document:
        if document.get("what_if"):
            render_what_if(out, document["what_if"], labels, images)
        if "plan" in document:
            render_plan(out, document["plan"], labels, images, details)
    if document["invalid_reports"]:
        out.print(f"{document['invalid_total']} invalid report file(s):")
        for item in document["invalid_reports"]:
            out.print(f"  {escape(item['path'])}: {escape(item['error'])}", soft_wrap=True)
    out.print(f"verdict: {verdict_markup(document['verdict'])}")
    # rich pads table rows and wrapped lines to the width; piped text should not end in blanks.
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())
