"""Fleet document -> human tables: classes, the image matrix, invalid files."""

from __future__ import annotations

import io
from typing import Any

_STYLE = {"ok": "green", "info": "green", "warn": "yellow", "unknown": "magenta", "fail": "bold red"}
FINDINGS_SHOWN = 3


def _verdict(verdict: str) -> str:
    return f"[{_STYLE.get(verdict, '')}]{verdict.upper()}[/]"


def _top_findings(findings: list[dict[str, Any]], with_fix: bool = False) -> str:
    lines = []
    for finding in findings[:FINDINGS_SHOWN]:
        line = f"{finding['rule_id']} {finding['severity']} x{finding['nodes']}: {finding.get('title', '')}"
        # A fix for an info finding would bury the ones that decide the verdict.
        if with_fix and finding.get("fix") and finding["severity"] != "info":
            line += f"\n  fix: {finding['fix']}"
        lines.append(line)
    if len(findings) > FINDINGS_SHOWN:
        lines.append(f"(+{len(findings) - FINDINGS_SHOWN} more rules)")
    return "\n".join(lines) or "-"


def render(document: dict[str, Any]) -> str:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, width=160, force_terminal=False, color_system=None)
    classes = Table(
        title=f"{document['nodes_total']} nodes in {len(document['classes'])} classes", show_lines=True
    )
    for column in ("class", "nodes", "verdict", "findings (rule, severity, nodes)", "worst nodes"):
        classes.add_column(column, overflow="fold")
    for node_class in document["classes"]:
        worst_nodes = ", ".join(
            f"{n['hostname']} ({n['verdict']})"
            for n in node_class["worst_nodes"]
            if n["verdict"] not in ("ok", "info")
        )
        classes.add_row(
            escape(node_class["key"]),
            str(node_class["nodes"]),
            _verdict(node_class["verdict"]),
            escape(_top_findings(node_class["findings"])),
            escape(worst_nodes or "-"),
        )
    console.print(classes)
    if document.get("matrix"):
        matrix = Table(title="Runnability: image x node class", show_lines=True)
        for column in ("image", "class", "nodes", "verdict", "deciding findings and fix"):
            matrix.add_column(column, overflow="fold")
        for row in document["matrix"]:
            detail = (
                f"image error: {row['error']}" if row.get("error") else _top_findings(row["findings"], True)
            )
            matrix.add_row(
                escape(row["image"]),
                escape(row["class"]),
                str(row["nodes"]),
                _verdict(row["verdict"]),
                escape(detail),
            )
        console.print(matrix)
    if document.get("what_if") or "plan" in document:
        from gpudoctor.report.fleet_changes import render_plan, render_what_if
        from gpudoctor.report.fleet_labels import class_labels, image_labels

        classes_by = class_labels(document["classes"])
        images_by = image_labels([image["reference"] for image in document.get("images", [])])
        if document.get("what_if"):
            render_what_if(console, document["what_if"], classes_by, images_by)
        if "plan" in document:
            render_plan(console, document["plan"], classes_by, images_by)
    if document["invalid_reports"]:
        console.print(f"{document['invalid_total']} invalid report file(s):")
        for item in document["invalid_reports"]:
            console.print(f"  {escape(item['path'])}: {escape(item['error'])}", soft_wrap=True)
    return buffer.getvalue()
