"""Fleet test data: node reports from real nvidia-smi outputs, written out as a fleet.

Reports are the output of `gpudoctor scan --from-nvidia-smi fixtures/nvidia-smi/<name>.xml
--format json` (real captures, see fixtures/SOURCES.md), made once per name per test run.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from gpudoctor.facts import ImageFacts
from tests.support.cli import run_gpudoctor

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures"
NVIDIA_SMI = FIXTURES / "nvidia-smi"
IMAGE_FACTS = FIXTURES / "facts" / "images"


@cache
def _report(name: str) -> str:
    result = run_gpudoctor("scan", "--from-nvidia-smi", str(NVIDIA_SMI / f"{name}.xml"), "--format", "json")
    if result.returncode not in (0, 1, 2, 3):
        raise RuntimeError(f"gpudoctor scan failed on {name}: {result.stderr.strip()}")
    return result.stdout


def node_report(name: str, hostname: str | None = None) -> dict[str, Any]:
    """The scan report of a real node fixture, optionally renamed."""
    report: dict[str, Any] = json.loads(_report(name))
    if hostname is not None:
        report["node"]["host"] = report["node"].get("host") or {}
        report["node"]["host"]["hostname"] = hostname
    return report


def image_facts(name: str) -> ImageFacts:
    return ImageFacts.from_dict(json.loads((IMAGE_FACTS / f"{name}.json").read_text(encoding="utf-8")))


def write_fleet(directory: Path, counts: dict[str, int]) -> list[Path]:
    """Write counts[name] reports per node fixture as <name>-<n>.json; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, count in counts.items():
        for number in range(count):
            hostname = f"{name.lower()}-{number:03d}"
            path = directory / f"{hostname}.json"
            path.write_text(json.dumps(node_report(name, hostname), indent=2), encoding="utf-8")
            paths.append(path)
    return paths


def with_changes(report: dict[str, Any], **node_changes: Any) -> dict[str, Any]:
    """A copy with top-level node sections replaced, e.g. host={...}."""
    changed = copy.deepcopy(report)
    changed["node"].update(node_changes)
    return changed
