"""gpudoctor fleet --image against a real registry on 127.0.0.1 (Debian docker-registry)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from tests.support.cli import run_gpudoctor
from tests.support.fleet import write_fleet
from tests.support.fleet_registry import Registry, push_fixture_image, running_registry

pytestmark = pytest.mark.services

SCHEMA = json.loads(
    (
        Path(__file__).resolve().parent.parent / "gpudoctor" / "fleet" / "schema" / "fleet.schema.json"
    ).read_text()
)
FLEET = {"Tesla-T4_515.105.01": 3, "RTX-3080_595.58.03": 2, "A100-SXM4-80GB_535.54.03": 1}


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with running_registry() as started:
        yield started


def fleet_json(*args: str) -> tuple[dict, subprocess.CompletedProcess[str]]:
    result = run_gpudoctor("fleet", *args, "--format", "json")
    assert result.returncode in (0, 1, 2, 3), result.stderr
    return json.loads(result.stdout), result


def test_matrix_per_image_and_class_from_the_registry(tmp_path: Path, registry: Registry) -> None:
    write_fleet(tmp_path, FLEET)
    vllm = push_fixture_image(
        registry, "fleet/vllm-openai", "v0.23.0", "vllm-openai_v0.23.0-cuda13.0.2_amd64"
    )
    cuda12 = push_fixture_image(
        registry, "fleet/cuda", "12.1.1-base", "nvidia-cuda_12.1.1-base-ubuntu2204_amd64"
    )
    document, result = fleet_json(
        str(tmp_path), "--image", vllm, "--image", cuda12, "--insecure-registry", registry.host
    )
    jsonschema.validate(document, SCHEMA)
    assert len(document["matrix"]) == 2 * len(document["classes"]) == 6
    assert [i["reference"] for i in document["images"]] == [vllm, cuda12]
    assert all(
        i["digest"] and i["digest"].startswith("sha256:") and i["error"] is None for i in document["images"]
    )
    cell = {(row["image"], row["class"].split(" | ")[0]): row for row in document["matrix"]}
    t4_vllm = cell[(vllm, "1x Tesla T4")]
    assert t4_vllm["verdict"] == "fail"
    assert t4_vllm["nodes"] == 3
    assert any(f["severity"] == "fail" and f["fix"] for f in t4_vllm["findings"])
    # The driver 595 node (CUDA 13.2) is new enough for the CUDA 13.0 image.
    assert cell[(vllm, "1x NVIDIA GeForce RTX 3080")]["verdict"] != "fail"
    assert result.returncode == 2  # some image fails somewhere: the fleet verdict says so


def test_unreachable_image_is_unknown_not_ok(tmp_path: Path, registry: Registry) -> None:
    write_fleet(tmp_path, {"RTX-3080_595.58.03": 1})
    document, result = fleet_json(
        str(tmp_path), "--image", f"{registry.host}/fleet/missing:1", "--insecure-registry", registry.host
    )
    (row,) = document["matrix"]
    assert row["verdict"] == "unknown"
    assert row["error"]
    assert document["images"][0]["error"]
    assert result.returncode == 3


def test_table_shows_the_matrix_with_fixes(tmp_path: Path, registry: Registry) -> None:
    write_fleet(tmp_path, {"Tesla-T4_515.105.01": 1})
    vllm = push_fixture_image(registry, "fleet/vllm-openai", "table", "vllm-openai_v0.23.0-cuda13.0.2_amd64")
    result = run_gpudoctor("fleet", str(tmp_path), "--image", vllm, "--insecure-registry", registry.host)
    assert result.returncode == 2, result.stderr
    assert "vllm-openai:table" in result.stdout.splitlines()[1]  # the compact matrix's image column
    assert result.stdout.endswith("verdict: ✗ FAIL\n")
    assert "fix:" not in result.stdout  # compact by default
    detailed = run_gpudoctor(
        "fleet", str(tmp_path), "--image", vllm, "--insecure-registry", registry.host, "--details"
    )
    assert "fix:" in detailed.stdout and "GD-CUDA-005" in detailed.stdout
