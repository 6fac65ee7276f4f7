# ruff: noqa: F401, F811 - pytest fixtures imported from tests.support.services
"""`gpudoctor preflight` end to end: real image configs pushed to a REAL loopback
registry, judged against real nvidia-smi outputs, through the real CLI process."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_gpudoctor
from tests.support.services import (
    OCI_INDEX,
    OCI_MANIFEST,
    Registry,
    build_image,
    digest_of,
    push_image,
    push_index,
    registry,
)

pytestmark = pytest.mark.services
REPO = Path(__file__).resolve().parent.parent
XML = REPO / "fixtures" / "nvidia-smi"
NODES = REPO / "fixtures" / "facts" / "nodes"
BLOB_GET = re.compile(r'"GET /v2/[^ ]+/blobs/(sha256:[0-9a-f]+)')


def env_of(path: Path) -> dict[str, str]:
    env: dict[str, str] = json.loads(path.read_text())["env"]
    return env


CUDA124 = env_of(REPO / "fixtures" / "images" / "nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64.json")
CUDA121_ARM = env_of(REPO / "fixtures" / "images" / "nvidia-cuda_12.1.1-base-ubuntu2204_arm64.json")
VLLM_CU13 = env_of(REPO / "fixtures" / "facts" / "images" / "vllm-openai_v0.23.0-cuda13.0.2_amd64.json")


@pytest.fixture(scope="module")
def images(registry: Registry) -> dict[str, Any]:
    built = {
        "cuda124": build_image(CUDA124),
        "vllm": build_image(VLLM_CU13, media_type=OCI_MANIFEST),
        "arm": build_image(CUDA121_ARM, arch="arm64"),
    }
    push_image(registry, "pf/cuda", "12.4", built["cuda124"])
    push_image(registry, "pf/vllm", "cu13", built["vllm"])
    push_image(registry, "pf/armonly", "12.1", built["arm"])
    multi_amd = build_image(CUDA124, media_type=OCI_MANIFEST)
    multi_arm = build_image(CUDA121_ARM, arch="arm64", media_type=OCI_MANIFEST)
    push_index(registry, "pf/multi", "1", [(multi_amd, {"os": "linux", "architecture": "amd64"}),
                                           (multi_arm, {"os": "linux", "architecture": "arm64"})], OCI_INDEX)  # fmt: skip
    layers = {layer for img in [*built.values(), multi_amd, multi_arm] for layer in img.layers}
    return {
        "built": built,
        "layer_digests": {digest_of(x) for x in layers},
    }


def node_report(tmp_path: Path, name: str, **driver: Any) -> Path:
    """A saved gpudoctor report of a real node (with `uname -m`), optionally another driver."""
    node = copy.deepcopy(json.loads((NODES / f"{name}.json").read_text()))
    node["host"]["cpu_arch"] = "x86_64"
    node["host"]["unknown"].pop("cpu_arch", None)
    node["driver"].update(driver)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"node": node}))
    return path


def a100_on_driver_595(tmp_path: Path) -> Path:
    """The A100 report with driver 595.45.04 (CUDA 13.2) in place of its 535 (a branch with a
    sourced end of life: R550, used before, has none, which is an `unknown` lifecycle finding)."""
    return node_report(
        tmp_path, "A100-SXM4-80GB_535.54.03", version="595.45.04", branch=595, cuda_version="13.2"
    )


def preflight(registry_: Registry, image: str, node: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    done = run_gpudoctor(
        "preflight", f"{registry_.host}/{image}", "--insecure-registry", registry_.host,
        "--node", str(node), "--format", "json", *extra,
        timeout=60, cwd=REPO, env={"DOCKER_HOST": "unix:///nonexistent"},
    )  # fmt: skip
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, report, done.stderr


def rule_ids(report: dict[str, Any], *severities: str) -> set[str]:
    return {f["rule_id"] for f in report["findings"] if f["severity"] in severities}


# (image, node input, expected exit, rules that must fire as fail, rules that must not fire)
CASES = [
    # CUDA 13 on a Quadro with R525 (max CUDA 12.0): the toolkit refuses it.
    ("pf/vllm:cu13", XML / "Quadro-P2000_525.125.06.xml", 2, {"GD-REQ-001"}, set()),
    # The same image on a GeForce RTX 4090 with R535: GeForce is not in its forward-compat terms.
    ("pf/vllm:cu13", XML / "RTX-4090_535.86.05.xml", 2, {"GD-REQ-001"}, set()),
    # On an A100 (brand NVIDIA = "Unknown" to the toolkit) with R535: brand=unknown,driver>=535,driver<536.
    # The capture describes 1 of its 4 GPUs, so the node is unknown (GD-NODE-003), not failed.
    ("pf/vllm:cu13", XML / "A100-SXM4-80GB_535.54.03.xml", 3, set(), {"GD-REQ-001", "GD-REQ-002"}),
    # CUDA 12.4 on an A10G with R515: neither cuda>=12.4 nor a listed branch.
    ("pf/cuda:12.4", XML / "A10G_515.105.01.xml", 2, {"GD-REQ-001"}, set()),
]


@pytest.mark.parametrize(
    ("image", "node", "exit_code", "fails", "absent"), CASES, ids=[f"{c[0]}-{c[1].stem}" for c in CASES]
)
def test_verdicts_on_real_nodes(
    registry: Registry,
    images: dict[str, Any],
    image: str,
    node: Path,
    exit_code: int | None,
    fails: set[str],
    absent: set[str],
) -> None:
    mark = registry.log_mark()
    code, report, stderr = preflight(registry, image, node)
    assert stderr == ""
    if exit_code is not None:
        assert code == exit_code
    else:
        assert code in (0, 1), report["verdict"]
    assert fails <= rule_ids(report, "fail")
    assert not absent & {f["rule_id"] for f in report["findings"]}
    fetched = set(BLOB_GET.findall(registry.log_since(mark)))
    assert len(fetched) == 1 and fetched.isdisjoint(images["layer_digests"])  # the config blob only


def test_cuda124_on_a_595_node_is_ok(registry: Registry, images: dict[str, Any], tmp_path: Path) -> None:
    node = a100_on_driver_595(tmp_path)
    code, report, _ = preflight(registry, "pf/cuda:12.4", node)
    assert code == 0 and report["verdict"] in ("ok", "info")
    assert not rule_ids(report, "fail", "warn", "unknown")


def test_arm64_only_image_on_x86_node_fails(
    registry: Registry, images: dict[str, Any], tmp_path: Path
) -> None:
    node = a100_on_driver_595(tmp_path)
    code, report, _ = preflight(registry, "pf/armonly:12.1", node)
    assert code == 2 and "GD-PLAT-001" in rule_ids(report, "fail")


def test_arm64_only_image_against_a_saved_nvidia_smi_xml_fails(
    registry: Registry, images: dict[str, Any]
) -> None:
    # The XML has no CPU architecture; a discrete A100 is assumed to sit in an
    # x86_64 host, and the finding says it was assumed.
    code, report, _ = preflight(registry, "pf/armonly:12.1", XML / "A100-SXM4-80GB_535.54.03.xml")
    platform = [f for f in report["findings"] if f["rule_id"] == "GD-PLAT-001"]
    assert code == 2 and platform and platform[0]["severity"] == "fail"
    assert "assumed" in platform[0]["message"]


def test_platform_flag_states_the_cpu_of_an_xml_node(registry: Registry, images: dict[str, Any]) -> None:
    code, report, _ = preflight(
        registry, "pf/armonly:12.1", XML / "A100-SXM4-80GB_535.54.03.xml", "--platform", "linux/arm64"
    )
    assert report["node"]["host"]["cpu_arch"] == "aarch64"
    assert "GD-PLAT-001" not in rule_ids(report, "fail")


def test_multi_platform_image_picks_the_node_platform(
    registry: Registry, images: dict[str, Any], tmp_path: Path
) -> None:
    node = a100_on_driver_595(tmp_path)
    code, report, _ = preflight(registry, "pf/multi:1", node)
    image = report["image"]
    assert image["platform"]["architecture"] == "amd64"
    assert [p["architecture"] for p in image["platforms"]] == ["amd64", "arm64"]
    assert code == 0
    # --platform overrides the node's CPU: the arm64 entry on an x86_64 node fails
    code, report, _ = preflight(registry, "pf/multi:1", node, "--platform", "linux/arm64")
    assert code == 2 and report["image"]["platform"]["architecture"] == "arm64"


def test_json_image_object(registry: Registry, images: dict[str, Any]) -> None:
    _, report, _ = preflight(registry, "pf/cuda:12.4", XML / "A100-SXM4-80GB_535.54.03.xml")
    image = report["image"]
    for key in (
        "reference",
        "digest",
        "platform",
        "platforms",
        "cuda_version",
        "require",
        "env_hints",
        "size_bytes",
        "source",
    ):
        assert key in image
    assert image["reference"] == f"{registry.host}/pf/cuda:12.4"
    assert image["digest"] == images["built"]["cuda124"].digest
    assert image["source"] == "registry" and image["cuda_version"] == "12.4.127"
    assert image["size_bytes"] == len(images["built"]["cuda124"].layers[0])
    assert image["env_hints"]["nccl_version"] == "2.21.5-1"


def test_table_output(registry: Registry, images: dict[str, Any]) -> None:
    done = run_gpudoctor(
        "preflight", f"{registry.host}/pf/vllm:cu13", "--insecure-registry", registry.host,
        "--node", str(XML / "Quadro-P2000_525.125.06.xml"), timeout=60, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2
    assert "GD-REQ-001" in done.stdout and "cuda>=13.0" in done.stdout


@pytest.mark.parametrize(
    ("args", "exit_code", "fragment"),
    [
        (["UPPER/Case"], 64, "invalid image reference"),
        (["pf/x:1", "--platform", "linux"], 64, "invalid platform"),
        (["pf/missing:1"], 66, "404"),
        (["./no-such-image.tar"], 66, "no such file"),
        (["images/nonexistent.tar"], 66, "no such file"),
        (["pf/cuda:12.4", "--ca-bundle", "/nonexistent.pem"], 66, "no such file"),
    ],
)
def test_errors_are_one_line_with_documented_codes(
    registry: Registry, images: dict[str, Any], args: list[str], exit_code: int, fragment: str
) -> None:
    as_is = args[0].isupper() or "/" not in args[0] or args[0].endswith(".tar")
    image = args[0] if as_is else f"{registry.host}/{args[0]}"
    done = run_gpudoctor(
        "preflight", image, *args[1:], "--insecure-registry", registry.host,
        "--node", str(XML / "A100-SXM4-80GB_535.54.03.xml"), timeout=60, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == exit_code, done.stderr
    assert fragment in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_missing_node_file(registry: Registry) -> None:
    done = run_gpudoctor("preflight", "ubuntu", "--node", "/nonexistent/node.xml", timeout=60, cwd=REPO)
    assert done.returncode == 66 and done.stderr.count("\n") == 1


def test_archive_path_is_detected_and_judged(tmp_path: Path) -> None:
    from tests.support.services import docker_save_tar

    tar = docker_save_tar(tmp_path / "cuda.tar", VLLM_CU13, "example.test/vllm:cu13")
    done = run_gpudoctor(
        "preflight", str(tar), "--node", str(XML / "Quadro-P2000_525.125.06.xml"), "--format", "json",
        timeout=60, cwd=REPO,
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert report["image"]["source"] == "archive" and report["image"]["reference"] == "example.test/vllm:cu13"
    assert done.returncode == 2 and "GD-REQ-001" in rule_ids(report, "fail")


def test_live_scan_when_no_node_is_given(registry: Registry, images: dict[str, Any]) -> None:
    done = run_gpudoctor(
        "preflight", f"{registry.host}/pf/cuda:12.4", "--insecure-registry", registry.host, "--format", "json",
        cwd=REPO,
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert report["node"]["source"] == "live"
    assert report["image"]["digest"] == images["built"]["cuda124"].digest
    assert done.returncode == {"ok": 0, "info": 0, "warn": 1, "fail": 2, "unknown": 3}[report["verdict"]]
