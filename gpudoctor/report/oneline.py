"""Scan report -> one line for Slurm HealthCheckProgram, NHC and prologs.

`<VERDICT>: <worst finding title> (<rule id>) [+N more]`, the worst finding being the most
severe one the facts establish (not one left unknown by a missing fact); the exit code (0/1/2/3)
comes from the verdict, so `scontrol update ... reason="$(gpudoctor scan
--format oneline)"` drains with a reason an operator can act on.
"""

from __future__ import annotations

from typing import Any

from gpudoctor.exitcodes import SEVERITY_RANK

MAX_LENGTH = 200  # Slurm keeps node reasons short; the JSON report has the rest.


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def render(report: dict[str, Any]) -> str:
    verdict = report["verdict"]
    findings = report.get("findings") or []
    node = report.get("node") or {}
    if findings:
        # Among equally severe findings, one the facts establish (no driver) names the problem;
        # one that is unknown only because a fact is missing (its consequence) does not.
        worst = max(findings, key=lambda f: (SEVERITY_RANK[f["severity"]], not f.get("missing_facts")))
        others = len({f["rule_id"] for f in findings}) - 1
        text = f"{verdict.upper()}: {_one_line(worst['title'])} ({worst['rule_id']})"
        if others:
            text += f" +{others} more"
    else:
        gpus = node.get("gpus") or []
        version = (node.get("driver") or {}).get("version") or "unknown"
        text = f"{verdict.upper()}: no findings ({len(gpus)} GPU(s), driver {version})"
    probe_errors = report.get("probe_errors") or []
    if probe_errors:
        text += f"; {len(probe_errors)} probe error(s)"
    kernels_not_read = ((report.get("image") or {}).get("unknown") or {}).get("kernels")
    if kernels_not_read:  # --deep was asked for and did not happen: say so, and why
        text += f"; kernels not read: {_one_line(kernels_not_read)}"
    if len(text) > MAX_LENGTH:
        text = text[: MAX_LENGTH - 3] + "..."
    return text + "\n"
