"""`--format nfd`: a node-feature-discovery local feature file with valid Kubernetes labels."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gpudoctor.report import nfd
from tests.support.cli import run_gpudoctor
from tests.support.fleet import node_report

# https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def labels_of(text: str) -> dict[str, str]:
    labels = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, value = line.split("=", 1)
        labels[key] = value
    return labels


def assert_valid_label(key: str, value: str) -> None:
    prefix, name = key.split("/", 1)
    assert DNS_SUBDOMAIN.match(prefix) and len(prefix) <= 253, key
    assert NAME.match(name) and len(name) <= 63, key
    assert value == "" or (NAME.match(value) and len(value) <= 63), value


def test_every_label_is_valid_for_kubernetes_on_real_nodes() -> None:
    for name in ("8x-Tesla-V100S-PCIE-32GB_460.73.01", "GTX-1660-Ti_418.43", "A100-SXM4-40GB-MIG_510.47.03"):
        for key, value in labels_of(nfd.render(node_report(name))).items():
            assert_valid_label(key, value)


def test_labels_say_verdict_driver_cuda_models_and_capabilities() -> None:
    report = node_report("8x-Tesla-V100S-PCIE-32GB_460.73.01")
    report["node"]["gpus"][7]["compute_capability"] = None
    labels = labels_of(nfd.render(report))
    p = nfd.PREFIX
    assert labels[p + "verdict"] == report["verdict"]
    assert labels[p + "driver-branch"] == "460"
    assert labels[p + "driver-version"] == "460.73.01"
    assert labels[p + "driver-cuda"] == "11.2"
    assert labels[p + "gpu-count"] == "8"
    assert labels[p + "gpu-model"] == "Tesla-V100S-PCIE-32GB"
    assert labels[p + "gpu-model.Tesla-V100S-PCIE-32GB"] == "true"
    assert labels[p + "cc.7.0"] == "true"
    # One GPU's capability unknown: say so rather than imply the cc.* flags are complete.
    assert labels[p + "compute-capabilities-complete"] == "false"


def test_unknown_facts_are_labelled_unknown_and_problems_by_rule() -> None:
    report = node_report("4x-Tesla-K80_430.26")
    labels = labels_of(nfd.render(report))
    assert labels[nfd.PREFIX + "driver-cuda"] == "unknown"  # the K80 capture says "Not Found"
    for finding in report["findings"]:
        if finding["severity"] in ("warn", "fail", "unknown"):
            assert labels[nfd.PREFIX + "rule." + finding["rule_id"]] == finding["severity"]


def test_mixed_node_is_labelled_mixed_with_a_flag_per_model() -> None:
    report = node_report("2x-RTX-2070_590.44.01")
    report["node"]["gpus"][1]["name"] = "NVIDIA H800"
    labels = labels_of(nfd.render(report))
    assert labels[nfd.PREFIX + "gpu-model"] == "mixed"
    assert labels[nfd.PREFIX + "gpu-model.NVIDIA-H800"] == "true"
    assert labels[nfd.PREFIX + "gpu-model.NVIDIA-GeForce-RTX-2070"] == "true"


@given(st.text(max_size=200))
def test_any_value_becomes_a_valid_label_value(text: str) -> None:
    value = nfd.label_value(text)
    assert NAME.match(value) and len(value) <= 63


def test_scan_writes_a_feature_file_nfd_reads(tmp_path: Path) -> None:
    xml = Path(__file__).resolve().parent.parent / "fixtures" / "fleets" / "nvidia-smi" / "B200_580.65.06.xml"
    target = tmp_path / "gpudoctor"
    result = run_gpudoctor("scan", "--from-nvidia-smi", str(xml), "--format", "nfd", "--output", str(target))
    assert result.returncode in (0, 1, 2, 3), result.stderr
    # NFD skips dot-files, so only the final name may ever be visible.
    assert [p.name for p in tmp_path.iterdir()] == ["gpudoctor"]
    labels = labels_of(target.read_text())
    for key, value in labels.items():
        assert_valid_label(key, value)
    assert labels[nfd.PREFIX + "gpu-model"] == "NVIDIA-B200"
    assert labels[nfd.PREFIX + "driver-branch"] == "580"
    assert labels[nfd.PREFIX + "driver-cuda"] == "13.0"
    assert labels[nfd.PREFIX + "cc.10.0"] == "true"
