"""Scan report -> Prometheus text exposition format, for node_exporter's textfile collector.

`gpudoctor_verdict` is a state-set (one series per state, the current one 1, the
others 0; the kube-state-metrics convention for enums), so alerts read
`gpudoctor_verdict{state="fail"} == 1` and no one has to remember a numeric
mapping; `gpudoctor_exit_code` carries the number (0 ok, 1 warn, 2 fail, 3 unknown).
A fact that is unknown is never exported as 0: its series is left out, or its
label says "unknown".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from gpudoctor.exitcodes import SEVERITY_ORDER, for_verdict

Labels = dict[str, str]


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) and not value.is_integer() else str(int(value))


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> None:
        self.lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            rendered = ",".join(f'{key}="{escape_label_value(str(val))}"' for key, val in labels.items())
            self.lines.append(
                f"{name}{{{rendered}}} {_number(value)}" if rendered else f"{name} {_number(value)}"
            )

    def info(self, name: str, help_text: str, label_sets: Iterable[Labels]) -> None:
        """An info metric: one series per label set, value always 1."""
        self.family(name, "gauge", help_text, ((labels, 1) for labels in label_sets))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _text(value: Any) -> str:
    return "unknown" if value is None or value == "" else str(value)


def _texts(obj: dict[str, Any], *keys: str) -> Labels:
    return {key: _text(obj.get(key)) for key in keys}


def _timestamp(collected_at: str | None) -> float | None:
    if not collected_at:
        return None
    try:
        return datetime.fromisoformat(collected_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def render(report: dict[str, Any]) -> str:
    node = report.get("node") or {}
    driver = node.get("driver") or {}
    findings = report.get("findings") or []
    verdict = report["verdict"]
    out = _Exposition()
    out.family(
        "gpudoctor_verdict",
        "gauge",
        "Verdict of the last gpudoctor scan: 1 for the current state, 0 for the others.",
        (({"state": state}, 1 if state == verdict else 0) for state in SEVERITY_ORDER),
    )
    out.family(
        "gpudoctor_exit_code",
        "gauge",
        "Exit code of the last gpudoctor scan (0 ok, 1 warn, 2 fail, 3 unknown).",
        [({}, for_verdict(verdict))],
    )
    # One series per rule: a rule that fired for several GPUs is one problem to alert on.
    fired: dict[str, str] = {}
    for finding in findings:
        fired.setdefault(finding["rule_id"], finding["severity"])
    out.family(
        "gpudoctor_finding",
        "gauge",
        "1 for each rule that produced a finding in the last scan.",
        (({"rule_id": rule_id, "severity": severity}, 1) for rule_id, severity in sorted(fired.items())),
    )
    by_severity = Counter(fired.values())
    out.family(
        "gpudoctor_findings",
        "gauge",
        "Number of rules with a finding in the last scan, by severity.",
        (({"severity": severity}, by_severity[severity]) for severity in SEVERITY_ORDER if severity != "ok"),
    )
    gpus = node.get("gpus") or []
    out.info(
        "gpudoctor_gpu_info",
        "GPUs seen by the last scan (value always 1).",
        (
            {
                **_texts(gpu, "index", "name", "uuid", "pci_bus_id", "compute_capability"),
                "driver": _text(driver.get("version")),
            }
            for gpu in gpus
        ),
    )
    out.family("gpudoctor_gpus", "gauge", "Number of GPUs seen by the last scan.", [({}, len(gpus))])
    out.info(
        "gpudoctor_driver_info",
        "NVIDIA driver seen by the last scan (value always 1).",
        [_texts(driver, "version", "branch", "cuda_version", "kernel_module")],
    )
    probe_errors = report.get("probe_errors") or []
    out.family(
        "gpudoctor_probe_errors",
        "gauge",
        "Number of probes that failed or timed out in the last scan.",
        [({}, len(probe_errors))],
    )
    timestamp = _timestamp(node.get("collected_at"))
    if timestamp is not None:
        out.family(
            "gpudoctor_scan_timestamp_seconds",
            "gauge",
            "Unix time the last scan collected its facts; alert when it stops advancing.",
            [({}, timestamp)],
        )
    tool = report.get("tool") or {}
    out.info(
        "gpudoctor_build_info",
        "gpudoctor version and report schema (value always 1).",
        [{"version": _text(tool.get("version")), "schema_version": _text(report.get("schema_version"))}],
    )
    return out.text()
