"""The shipped JSON Schema is valid, accepts every report gpudoctor makes, and rejects broken ones."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gpudoctor.facts import ImageFacts, Platform
from gpudoctor.nodeinput import load_node
from gpudoctor.pipeline import diagnose
from gpudoctor.probes.collect import collect_node
from gpudoctor.report.schema import SCHEMA_PATH, load_schema
from tests.support.nvml_replay import NVML_FIXTURES, replay

REPO = Path(__file__).resolve().parent.parent
VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def test_schema_is_valid_and_shipped_in_the_package() -> None:
    jsonschema.Draft202012Validator.check_schema(load_schema())
    assert SCHEMA_PATH.parent.parent.name == "report" and SCHEMA_PATH.is_relative_to(REPO / "gpudoctor")


@pytest.mark.parametrize("name", sorted(p.stem for p in NVML_FIXTURES.glob("*.json")))
def test_reports_from_every_nvml_snapshot_validate(name: str) -> None:
    node = collect_node(sysfs_root=str(REPO / "fixtures" / "sysfs" / "acs-off"), nvml=replay(name))
    VALIDATOR.validate(json.loads(json.dumps(diagnose(node))))


@pytest.mark.parametrize(
    "scenario", sorted(p.name for p in (REPO / "fixtures" / "sysfs").iterdir() if p.is_dir())
)
def test_reports_from_every_sysfs_tree_validate(scenario: str) -> None:
    VALIDATOR.validate(
        json.loads(json.dumps(diagnose(collect_node(sysfs_root=str(REPO / "fixtures" / "sysfs" / scenario)))))
    )


def test_report_with_image_validates() -> None:
    node = load_node(REPO / "fixtures" / "nvidia-smi" / "RTX-4090_535.86.05.xml")
    image = ImageFacts(
        reference="docker.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
        cuda_version="12.4.1",
        platform=Platform(os="linux", architecture="amd64"),
        require=["cuda>=12.4"],
    )
    VALIDATOR.validate(json.loads(json.dumps(diagnose(node, image))))


def _valid_report() -> dict[str, Any]:
    node = load_node(REPO / "fixtures" / "nvidia-smi" / "2x-RTX-2070_590.44.01.xml")
    report: dict[str, Any] = json.loads(json.dumps(diagnose(node)))
    return report


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("verdict",), "great"),
        (("node", "gpus", 0, "compute_capability"), 7.5),
        (("node", "driver", "kernel_module"), "closed"),
        (("node", "gpus", 0, "unknown"), {"ecc_mode": None}),
        (("tool", "name"), "other"),
    ],
)
def test_schema_rejects_broken_reports(path: tuple[Any, ...], value: Any) -> None:
    report = copy.deepcopy(_valid_report())
    VALIDATOR.validate(report)
    target: Any = report
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert not VALIDATOR.is_valid(report)


def test_schema_requires_the_contract_fields() -> None:
    report = _valid_report()
    for key in ("schema_version", "tool", "node", "findings", "verdict", "probe_errors"):
        broken = {k: v for k, v in report.items() if k != key}
        assert not VALIDATOR.is_valid(broken), key
