"""Node-class keys, evaluation groups and the image x class matrix (real rules, real image configs)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from gpudoctor.facts import ImageFacts
from gpudoctor.fleet.aggregate import aggregate
from gpudoctor.fleet.build import load_fleet
from gpudoctor.fleet.classes import class_facts, topology_signature
from gpudoctor.fleet.matrix import FleetImage, ImageFetch, MatrixEvaluator
from tests.support.fleet import image_facts, node_report, with_changes, write_fleet

SCHEMA = json.loads(
    (
        Path(__file__).resolve().parent.parent / "gpudoctor" / "fleet" / "schema" / "fleet.schema.json"
    ).read_text()
)


def fetched(image: ImageFacts | None, error: str | None = None) -> FleetImage:
    """An --image already fetched for every CPU architecture (the registry path is tested in test_fleet_registry)."""
    reference = image.reference if image else "registry.invalid/x:1"
    return FleetImage(
        reference,
        fetches={arch: ImageFetch("linux/amd64", image, error) for arch in (None, "x86_64", "aarch64")},
    )


def _pair(a: int, b: int, **facts: object) -> dict[str, object]:
    return {"gpu_a": a, "gpu_b": b, "acs_bridges": [], "unknown": {}, **facts}


def test_topology_signature_reads_like_nvidia_smi_topo() -> None:
    node = node_report("2x-RTX-2070_590.44.01")["node"]
    assert topology_signature(node) == "unknown"  # nvidia-smi XML carries no pair facts
    node["topology"]["pairs"] = [_pair(0, 1, common_ancestor="hostbridge")]
    assert topology_signature(node) == "PHBx1"
    v100 = node_report("8x-Tesla-V100S-PCIE-32GB_460.73.01")["node"]
    v100["topology"]["pairs"] = [_pair(a, b, nvlink_count=18) for a in range(8) for b in range(a + 1, 8)]
    v100["fabric"]["nvswitch_count"] = 4
    assert topology_signature(v100) == "NV18x28+4NVSwitch"
    assert topology_signature(node_report("Tesla-T4_515.105.01")["node"]) == "single"


def test_class_facts_of_a_real_node() -> None:
    facts = class_facts(node_report("8x-Tesla-V100S-PCIE-32GB_460.73.01")["node"])
    assert facts == {
        "gpu_models": "8x Tesla V100S-PCIE-32GB",
        "driver_branch": "460",
        "driver_cuda": "11.2",
        "kernel_module": "unknown",
        "topology": "unknown",
    }


def test_mixed_gpu_node_names_every_model() -> None:
    node = node_report("2x-RTX-2070_590.44.01")["node"]
    node["gpus"][1]["name"] = "NVIDIA B200"
    assert class_facts(node)["gpu_models"] == "1x NVIDIA B200 + 1x NVIDIA GeForce RTX 2070"


def _write(directory: Path, name: str, report: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps(report))


def test_a_fact_outside_the_class_key_splits_the_evaluation(tmp_path: Path) -> None:
    """Same class, different CPU architecture: an amd64-only image fails only on the arm64 nodes."""
    base = node_report("A100-SXM4-80GB_535.54.03")
    host = base["node"]["host"]
    for number in range(3):
        _write(
            tmp_path,
            f"x86-{number}.json",
            with_changes(base, host={**host, "hostname": f"x86-{number}", "cpu_arch": "x86_64"}),
        )
    _write(
        tmp_path, "arm-0.json", with_changes(base, host={**host, "hostname": "arm-0", "cpu_arch": "aarch64"})
    )
    records, invalid, _ = load_fleet([str(tmp_path)])
    assert invalid == []
    (node_class,) = aggregate(records)
    assert node_class.nodes == 4
    assert len(node_class.groups) == 2
    image = image_facts("nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64")
    row = MatrixEvaluator().row(fetched(image), node_class)
    platform = [f for f in row["findings"] if f["rule_id"] == "GD-PLAT-001"]
    assert platform, row
    assert platform[0]["severity"] == "fail"
    assert platform[0]["nodes"] == 1
    assert row["verdict"] == "fail"
    assert row["verdicts"]["fail"] == 1
    assert sum(row["verdicts"].values()) == 4


def test_matrix_matches_per_node_evaluation(tmp_path: Path) -> None:
    """Evaluating once per group gives what evaluating every node would give."""
    from gpudoctor.derive import build_context
    from gpudoctor.engine import evaluate
    from gpudoctor.exitcodes import worst
    from gpudoctor.facts import NodeFacts
    from gpudoctor.knowledge import load_rules

    counts = {"A100-SXM4-80GB_535.54.03": 3, "Tesla-T4_515.105.01": 2, "RTX-3080_595.58.03": 2}
    paths = write_fleet(tmp_path, counts)
    records, _, _ = load_fleet([str(tmp_path)])
    classes = aggregate(records)
    image = image_facts("vllm-openai_v0.23.0-cuda13.0.2_amd64")
    evaluator = MatrixEvaluator()
    rows = {c.key: evaluator.row(fetched(image), c) for c in classes}
    ruleset = load_rules()
    by_path = {r.path: r for r in records}
    from gpudoctor.fleet.classes import class_key

    for path in paths:
        node = NodeFacts.from_dict(json.loads(path.read_text())["node"])
        findings = evaluate(ruleset, build_context(node, image), applies_to="image")
        row = rows[class_key(by_path[str(path)].class_facts)]
        assert row["verdict"] == worst(f.severity for f in findings)
        assert {f["rule_id"] for f in row["findings"]} == {f.rule_id for f in findings}


def test_an_image_that_cannot_be_fetched_is_unknown_everywhere(tmp_path: Path) -> None:
    write_fleet(tmp_path, {"Tesla-T4_515.105.01": 2})
    records, _, _ = load_fleet([str(tmp_path)])
    (node_class,) = aggregate(records)
    row = MatrixEvaluator().row(fetched(None, "cannot reach registry.invalid"), node_class)
    assert row["verdict"] == "unknown"
    assert row["error"] == "linux/amd64: cannot reach registry.invalid"
    assert row["verdicts"] == {"unknown": 2}


def test_old_driver_class_fails_a_cuda_13_image_with_a_fix(tmp_path: Path) -> None:
    write_fleet(tmp_path, {"Tesla-T4_515.105.01": 2, "RTX-3080_595.58.03": 1})
    records, _, _ = load_fleet([str(tmp_path)])
    image = image_facts("vllm-openai_v0.23.0-cuda13.0.2_amd64")
    evaluator = MatrixEvaluator()
    rows = {c.facts["gpu_models"]: evaluator.row(fetched(image), c) for c in aggregate(records)}
    t4 = rows["1x Tesla T4"]
    assert t4["verdict"] == "fail"
    assert t4["nodes"] == 2
    deciding = [f for f in t4["findings"] if f["severity"] == "fail"]
    assert deciding and all(f["fix"] and f["refs"] for f in deciding)
    assert rows["1x NVIDIA GeForce RTX 3080"]["verdict"] != "fail"
    document = {
        "schema_version": "1.0",
        "tool": {"name": "gpudoctor", "version": "x"},
        "nodes_total": 3,
        "invalid_total": 0,
        "invalid_reports": [],
        "verdict": "fail",
        "classes": [],
        "matrix": list(rows.values()),
    }
    jsonschema.validate(document, SCHEMA)
