"""The what-if diff and the rollout plan as terminal text (parts of the fleet table view).

Only classes the changes touch are listed; each shows the class verdict before -> after with
the rules that appear (+) and go away (-), then per image the verdict before -> after.
Assumptions behind derived facts are printed once. Refs go on lines of their own, never
broken; wrapped lines keep their indent.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from gpudoctor.exitcodes import CLEAN, RUNS
from gpudoctor.report.style import indented, verdict_markup


def _change_word(before: str, after: str) -> str:
    if before == after:
        return "unchanged"
    if after in CLEAN:
        return "runs cleanly"
    if after == "warn":
        return "runs, with a warning" if before not in RUNS else "runs, now with a warning"
    if after == "fail":
        return "stops running" if before in RUNS else "still does not run"
    return "becomes unknown"


def _delta(before: list[str], after: list[str]) -> str:
    added = [f"+{rule}" for rule in after if rule not in before]
    removed = [f"-{rule}" for rule in before if rule not in after]
    return " ".join(added + removed)


def render_what_if(
    console: Any, what_if: dict[str, Any], class_label: dict[str, str], image_label: dict[str, str]
) -> None:
    console.print(f"[bold]What if[/] {escape(' '.join(what_if['changes']))} (+ appears, - goes away):")
    unchanged = 0
    notes: list[str] = []
    for row in what_if["classes"]:
        node_delta = _delta(row["before"]["findings"], row["after"]["findings"])
        image_rows = [
            image
            for image in row["images"]
            if image["before"]["verdict"] != image["after"]["verdict"]
            or image["before"]["findings"] != image["after"]["findings"]
        ]
        if not node_delta and not image_rows and row["before"]["verdict"] == row["after"]["verdict"]:
            unchanged += 1
            continue
        notes += row.get("notes", [])
        indented(
            console,
            f"{escape(class_label.get(row['class'], row['class']))}: nodes "
            f"{verdict_markup(row['before']['verdict'])} -> {verdict_markup(row['after']['verdict'])}"
            + (f" {escape(node_delta)}" if node_delta else ""),
            1,
        )
        for finding in row.get("new_findings", []):
            if finding["severity"] not in CLEAN:
                indented(console, f"{escape(finding['rule_id'])}: {escape(finding['title'])}", 5)
        for image in image_rows:
            before, after = image["before"], image["after"]
            delta = _delta(before["findings"], after["findings"])
            indented(
                console,
                f"{escape(image_label.get(image['image'], image['image']))}: "
                f"{verdict_markup(before['verdict'])} -> {verdict_markup(after['verdict'])} "
                f"{_change_word(before['verdict'], after['verdict'])}"
                + (f" {escape(delta)}" if delta else ""),
                3,
            )
    if unchanged:
        indented(console, f"{unchanged} other class(es) unchanged", 1)
    for note in dict.fromkeys(notes):
        indented(console, f"note: {escape(note)}", 1)


def render_plan(
    console: Any,
    plan: list[dict[str, Any]],
    class_label: dict[str, str],
    image_label: dict[str, str],
    details: bool = False,
) -> None:
    if not plan:
        console.print("[bold]Plan[/]: every image runs cleanly on every class; nothing to change.")
        return
    console.print(
        "[bold]Plan[/] (smallest change that makes each image run, no new fail"
        + ("" if details else "; --details: why and refs")
        + "):"
    )
    for row in plan:
        where = (
            f"{class_label.get(row['class'], row['class'])} × {image_label.get(row['image'], row['image'])}"
        )
        change = row["change"] or "no change found"
        indented(
            console,
            f"{escape(where)}: [bold]{escape(change)}[/] -> {verdict_markup(row['verdict_after'])}",
            1,
        )
        if details:
            indented(console, escape(row["why"]), 5)
        elif not row["change"]:
            indented(console, escape(row["why"].split("; ", 1)[0]), 5)  # the reason, not every attempt
        if details:
            for ref in row.get("refs", []):
                console.print(f"     {escape(ref)}", soft_wrap=True)
