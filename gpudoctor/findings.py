"""What the rules engine produces and every renderer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warn", "fail", "unknown")


@dataclass
class Finding:
    rule_id: str
    severity: str  # info | warn | fail | unknown (a needed fact was missing)
    title: str
    message: str
    fix: str
    refs: list[str] = field(default_factory=list)
    source: str | None = None  # "vendor documentation" | "issue thread" | "field report" | ...
    # Fact paths -> the values the rule used, e.g. {"driver.branch": 535, "gpus[0].name": "NVIDIA A800-SXM4-80GB"}
    evidence: dict[str, Any] = field(default_factory=dict)
    # Fact paths whose absence made the verdict "unknown".
    missing_facts: list[str] = field(default_factory=list)
    # Which GPUs (indexes) or GPU pairs ("0-1") the finding is about, where it is about some.
    subjects: list[str] = field(default_factory=list)
