"""Text rendering of the explain report (the JSON form is the report itself, printed by
gpudoctor.report.json_render): plain when piped, severity words and the verdict in the
colours every command uses on a terminal."""

from __future__ import annotations

import io
import textwrap
from typing import Any

from gpudoctor.report.style import SEVERITY_STYLE, console, verdict_text

_WIDTH = 100


def _block(label: str, text: str) -> list[str]:
    wrapped = textwrap.wrap(text, _WIDTH - 9) or [""]
    return [f"  {label:<6} {wrapped[0]}"] + [f"         {line}" for line in wrapped[1:]]


def _where(match: dict[str, Any]) -> str:
    """`line 12, 14` or, for an incident seen again, `line 12; 5x, last line 900`."""
    where = "line " + ", ".join(str(n) for n in match["line_numbers"])
    if match["last_line"] > match["line_numbers"][-1]:
        where += f"; {match['count']}x, last line {match['last_line']}"
    elif match["count"] > len(match["line_numbers"]):
        where += f"; {match['count']}x"
    return where


def render_table(report: dict[str, Any], colour: bool = False) -> str:
    """The report as text; `colour`: paint each severity word (gpudoctor/report/style.py)."""
    text = _text(report)
    return _painted(text) if colour else text


def _painted(text: str) -> str:
    """Each line that starts with a severity word gets that word in its colour; nothing is
    re-wrapped (soft_wrap), so a ref stays on one line."""
    from rich.text import Text

    buffer = io.StringIO()
    out = console(buffer)
    words = {name.upper(): style for name, style in SEVERITY_STYLE.items()}
    for line in text.splitlines():
        painted = Text(line)
        head = line.split(" ", 1)[0]
        if head in words:
            painted.stylize(words[head], 0, len(head))
        elif line.startswith("verdict: "):
            verdict = line.rsplit(" ", 1)[-1]
            painted.stylize(words.get(verdict, ""), len("verdict: "))
        out.print(painted, soft_wrap=True)
    return buffer.getvalue()


def _text(report: dict[str, Any]) -> str:
    log = report["log"]
    out = [f"log: {log['source']} ({log['lines']} lines, {log['bytes']} bytes)"]
    node = report.get("node")
    if node:
        gpus = ", ".join(
            f"{g['index']}: {g['name'] or 'unknown'} (cc {g['compute_capability'] or 'unknown'})"
            for g in node["gpus"]
        )
        out.append(
            f"node: {node['hostname'] or 'unknown host'}, driver {node['driver_version'] or 'unknown'}"
            f" (CUDA {node['driver_cuda_version'] or 'unknown'}), {node['cpu_arch'] or 'unknown arch'}; GPUs: {gpus or 'none'}"
        )
    out.append("")
    # Node-correlated causes are the most specific ones: they come first.
    if report["findings"]:
        out.append("on this node (log correlated with the node facts):")
        for finding in report["findings"]:
            out.append(f"{finding['severity'].upper():<5} {finding['signature_id']}")
            out.extend(_block("why", finding["message"]))
            out.extend(_block("fix", finding["fix"]))
        out.append("")
    if not report["matches"]:
        out.append(report["summary"])
    for match in report["matches"]:
        out.append(
            f"{match['severity'].upper():<5} {match['signature_id']}  {match['title']}  ({_where(match)})"
        )
        for excerpt in match["excerpt"].splitlines():
            out.append(f"  > {excerpt[: _WIDTH - 4]}")
        out.extend(_block("cause", match["cause"]))
        out.extend(_block("fix", match["fix"]))
        for ref in match["refs"]:
            out.append(f"  ref    {ref}")
        out.append("")
    if report.get("unchecked"):
        # A correlation whose node facts are unknown is neither confirmed nor ruled out: say so.
        out.append("not checked on this node (facts unknown):")
        for item in report["unchecked"]:
            out.append(f"?     {item['signature_id']}")
            out.extend(_block("needs", "; ".join(item["missing_facts"])))
        out.append("")
    out.append(f"verdict: {verdict_text(report['verdict'])}")
    return "\n".join(out) + "\n"
