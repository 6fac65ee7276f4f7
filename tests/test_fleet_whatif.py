"""fleet --what-if and --plan on the demo fleet (the seed's A800 / H800 / B200 classes) and on a
held-out fleet of real nvidia-smi XMLs, with images served by a real loopback registry."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from gpudoctor.errors import UsageError
from gpudoctor.fleet.driverfacts import installed_driver, reported_cuda_version
from gpudoctor.fleet.whatif import parse_change
from tests.support.cli import run_gpudoctor
from tests.support.fleet_registry import Registry, push_fixture_image, running_registry

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "fixtures" / "fleets" / "demo"
# Real captures only (fixtures/SOURCES.md): none of them is in the demo fleet.
HELD_OUT = [
    REPO / "fixtures" / "facts" / "nvidia-smi" / name
    for name in (
        "A100-SXM4-80GB_535.54.03.xml",
        "RTX-4090_535.86.05.xml",
        "Tesla-T4_515.105.01.xml",
        "2x-RTX-2070_590.44.01.xml",
        "8x-Tesla-V100S-PCIE-32GB_460.73.01.xml",
    )
]
SCHEMA = json.loads((REPO / "gpudoctor" / "fleet" / "schema" / "fleet.schema.json").read_text())
SEED_CLASSES = ("A800", "H800", "B200")


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with running_registry() as started:
        yield started


@pytest.fixture(scope="module")
def cuda13(registry: Registry) -> str:
    return push_fixture_image(registry, "seed/vllm-openai", "v0.23.0", "vllm-openai_v0.23.0-cuda13.0.2_amd64")


@pytest.fixture(scope="module")
def cuda12(registry: Registry) -> str:
    return push_fixture_image(
        registry, "seed/cuda", "12.4.1-runtime", "nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64"
    )


def fleet(registry: Registry, *args: str) -> tuple[dict, subprocess.CompletedProcess[str]]:
    result = run_gpudoctor("fleet", *args, "--insecure-registry", registry.host, "--format", "json")
    assert result.returncode in (0, 1, 2, 3), result.stderr
    document = json.loads(result.stdout)
    jsonschema.validate(document, SCHEMA)
    return document, result


def by_gpu(rows: list[dict], gpu: str) -> dict:
    (row,) = [r for r in rows if gpu in r.get("class", r.get("key", "")).split(" | ")[0]]
    return row


def test_change_syntax() -> None:
    change = parse_change("driver=650.12@class~A800")
    assert (change.kind, change.value, change.scope) == ("driver", "650.12", "a800")
    assert change.applies_to("1x NVIDIA A800-SXM4-80GB | driver 535 (CUDA 12.2) | unknown | single")
    assert not change.applies_to("1x NVIDIA H800 | driver 570 (CUDA 12.8) | unknown | single")
    assert parse_change("cuda-compat=13.0").scope is None
    for bad in (
        "driver",
        "driver=",
        "kernel=1",
        "driver=abc",
        "driver=650@gpu~A800",
        "toolkit=x.y",
        "driver=1@class~",
    ):
        with pytest.raises(UsageError):
            parse_change(bad)


def test_driver_facts_as_an_install_reports_them() -> None:
    assert reported_cuda_version("580.95.05") == ("13.0", None)
    assert reported_cuda_version("535.54.03") == ("12.2", None)
    assert reported_cuda_version("570.124.06") == ("12.8", None)
    cuda, note = reported_cuda_version("650.12")
    assert cuda == "13.4" and note and "lower bound" in note  # newer than the whole table
    cuda, note = reported_cuda_version("300.1")
    assert cuda is None and note and "older" in note
    today = {"present": True, "version": "570.124.06", "branch": 570, "cuda_version": "12.8",
             "kernel_module": None, "nvml_version": "12.570.124.06", "library_mismatch": True,
             "unknown": {"kernel_module": "not in nvidia-smi XML"}}  # fmt: skip
    blackwell, _ = installed_driver(today, [{"name": "NVIDIA B200"}], "580.95.05")
    assert blackwell["kernel_module"] == "open" and "kernel_module" not in blackwell["unknown"]
    assert (blackwell["version"], blackwell["branch"], blackwell["cuda_version"]) == (
        "580.95.05",
        580,
        "13.0",
    )
    assert blackwell["nvml_version"] == "580.95.05" and blackwell["library_mismatch"] is False
    volta, _ = installed_driver(today, [{"name": "Tesla V100S-PCIE-32GB"}], "580.95.05")
    assert volta["kernel_module"] == "proprietary"
    hopper, _ = installed_driver(today, [{"name": "NVIDIA H800"}], "580.95.05")
    assert hopper["kernel_module"] is None and "kernel_module" in hopper["unknown"]  # installer's choice


def test_what_if_650_on_the_seed_fleet(registry: Registry, cuda13: str) -> None:
    document, result = fleet(registry, str(DEMO), "--image", cuda13, "--what-if", "driver=650.12")
    what_if = document["what_if"]
    assert what_if["changes"] == ["driver=650.12"]
    a800 = by_gpu(what_if["classes"], "A800")
    assert "GD-DRV-006" not in a800["before"]["findings"]
    assert "GD-DRV-006" in a800["after"]["findings"] and a800["after"]["verdict"] == "fail"
    assert a800["facts"]["driver.cuda_version"] == "13.4" and a800["notes"]
    for gpu in ("H800", "B200"):
        row = by_gpu(what_if["classes"], gpu)
        (image,) = row["images"]
        assert image["before"]["verdict"] == "warn" and "GD-CUDA-003" in image["before"]["findings"]
        assert image["after"]["verdict"] in ("ok", "info") and "GD-CUDA-003" not in image["after"]["findings"]
        assert "GD-DRV-006" not in row["after"]["findings"]
    # Today's view is untouched by the what-if.
    assert by_gpu(document["classes"], "A800")["verdict"] == "info"


def test_scope_limits_the_change_to_matching_classes(registry: Registry, cuda13: str) -> None:
    document, _ = fleet(registry, str(DEMO), "--image", cuda13, "--what-if", "driver=650.12@class~H800")
    for row in document["what_if"]["classes"]:
        if "H800" in row["class"]:
            assert row["changes"] == ["driver=650.12@class~H800"]
            assert row["images"][0]["after"]["verdict"] == "info"
        else:
            assert row["changes"] == [] and row["after"] == row["before"]
            assert all(i["after"] == i["before"] for i in row["images"])


def _replay(registry: Registry, fleet_paths: list[str], images: list[str], plan: list[dict]) -> None:
    """Each proposal, re-run through --what-if, brings no new fail and gives the verdict promised."""
    for proposal in plan:
        if not proposal["what_if"]:
            continue
        image_args = [arg for image in images for arg in ("--image", image)]
        what_if_args = [arg for change in proposal["what_if"] for arg in ("--what-if", change)]
        document, _ = fleet(registry, *fleet_paths, *image_args, *what_if_args)
        (row,) = [r for r in document["what_if"]["classes"] if r["class"] == proposal["class"]]
        before_fails = {f["rule_id"] for f in row.get("new_findings", []) if f["severity"] == "fail"}
        assert not before_fails, proposal
        assert row["after"]["verdict"] != "fail" or row["before"]["verdict"] == "fail"
        (image,) = [i for i in row["images"] if i["image"] == proposal["image"]]
        assert image["after"]["verdict"] == proposal["verdict_after"], proposal
        assert image["after"]["findings"] == proposal["findings_after"]


def test_plan_on_the_seed_fleet_replays_through_what_if(registry: Registry, cuda13: str, cuda12: str) -> None:
    document, _ = fleet(registry, str(DEMO), "--image", cuda13, "--image", cuda12, "--plan")
    plan = document["plan"]
    for gpu in SEED_CLASSES:
        proposal = by_gpu([p for p in plan if p["image"] == cuda13], gpu)
        # R535 / R570 are among the host branches of the image's CUDA 13.0 compat package (its
        # NVIDIA_REQUIRE_CUDA terms): forward compatibility reaches the verdict a rollout to R580
        # reaches (info), without a rollout, so the plan's order takes it and says so.
        assert proposal["change"] == "cuda-compat=13.0"
        assert proposal["verdict_after"] == "info" and "GD-CUDA-008" in proposal["findings_after"]
        assert "GD-CUDA-003" in proposal["findings_cleared"]
        assert (
            "https://docs.nvidia.com/deploy/cuda-compatibility/forward-compatibility.html" in proposal["refs"]
        )
        assert "no driver rollout" in proposal["why"] and "driver 580.95.05" in proposal["why"]
        assert any(alt.startswith("driver 580.95.05") for alt in proposal["alternatives"])
    # GeForce and a branch the package does not support: forward compatibility falls short, a driver it is.
    for gpu in ("RTX 4090", "T4"):
        proposal = by_gpu([p for p in plan if p["image"] == cuda13], gpu)
        assert proposal["change"] == "driver=580.95.05", proposal
        assert "cuda-compat-13-0 in the image) on today's driver: fail" in proposal["why"]
        # R580 supports CUDA 13.0 itself: forward compatibility on it is no candidate.
        assert not any(a.startswith("driver 580.95.05") and "forward" in a for a in proposal["alternatives"])
    # A class where no known change helps says why, naming the rule that stays.
    (v100,) = [p for p in plan if p["image"] == cuda13 and "V100S" in p["class"]]
    assert v100["change"] is None and "GD-CUDA-006" in v100["why"]
    # A branch that would bring a new fail on the class's nodes is refused, and the why says so
    # (R595 / R620 dropped Volta: GD-DRV-002), as GD-DRV-006 would refuse R650+ for A800.
    assert "new fail on the nodes GD-DRV-002" in v100["why"]
    _replay(registry, [str(DEMO)], [cuda13, cuda12], plan)


def test_plan_on_a_held_out_fleet_of_real_xml(registry: Registry, cuda13: str) -> None:
    paths = [str(p) for p in HELD_OUT]
    document, _ = fleet(registry, *paths, "--image", cuda13, "--plan")
    assert document["plan"], "the CUDA 13 image does not run cleanly on these older drivers"
    assert all(p["change"] or p["why"].startswith("no change") for p in document["plan"])
    assert by_gpu(document["plan"], "A100-SXM4-80GB")["change"] == "cuda-compat=13.0"
    assert by_gpu(document["plan"], "GeForce RTX 4090")["change"] == "driver=580.95.05"
    _replay(registry, paths, [cuda13], document["plan"])


def _compat_what_if(registry: Registry, paths: list[str], image: str, *changes: str) -> dict:
    args = [arg for change in changes for arg in ("--what-if", change)]
    document, _ = fleet(registry, *paths, "--image", image, *args)
    return document["what_if"]


def test_what_if_cuda_compat_on_the_seed_fleet(registry: Registry, cuda13: str) -> None:
    what_if = _compat_what_if(registry, [str(DEMO)], cuda13, "cuda-compat=13.0")
    # Eligible: data center GPUs on R535 / R570, branches the 13.0 package supports.
    for gpu in (*SEED_CLASSES, "A100-SXM4-80GB"):
        (image,) = by_gpu(what_if["classes"], gpu)["images"]
        assert image["before"]["verdict"] == "warn" and "GD-CUDA-003" in image["before"]["findings"]
        assert image["after"]["verdict"] == "info", gpu
        assert "GD-CUDA-008" in image["after"]["findings"] and "GD-CUDA-003" not in image["after"]["findings"]
    # Not eligible: a GeForce GPU, and branches the package does not list (R515, R460).
    for gpu, rule in (("RTX 4090", "GD-CUDA-004"), ("T4", "GD-CUDA-005"), ("V100S", "GD-CUDA-005")):
        (image,) = by_gpu(what_if["classes"], gpu)["images"]
        assert image["after"] == image["before"] and image["after"]["verdict"] == "fail"
        assert rule in image["after"]["findings"] and "GD-CUDA-008" not in image["after"]["findings"]


def test_what_if_cuda_compat_scoped_and_too_old(registry: Registry, cuda13: str) -> None:
    scoped = _compat_what_if(registry, [str(DEMO)], cuda13, "cuda-compat=13.0@class~A800")
    for row in scoped["classes"]:
        (image,) = row["images"]
        assert (image["after"]["verdict"] == "info") is ("A800" in row["class"]), row["class"]
    # A 12.9 package cannot serve a CUDA 13.0 runtime: said so, nothing changes.
    older = _compat_what_if(registry, [str(DEMO)], cuda13, "cuda-compat=12.9")
    (image,) = by_gpu(older["classes"], "A800")["images"]
    assert image["after"]["verdict"] == "warn" and "cannot serve" in " ".join(image["after"]["notes"])


def test_what_if_cuda_compat_on_a_held_out_fleet_of_real_xml(registry: Registry, cuda13: str) -> None:
    paths = [str(p) for p in HELD_OUT]
    what_if = _compat_what_if(registry, paths, cuda13, "cuda-compat=13.0")
    (a100,) = by_gpu(what_if["classes"], "A100-SXM4-80GB")["images"]
    assert (a100["before"]["verdict"], a100["after"]["verdict"]) == ("warn", "info")
    for gpu in ("GeForce RTX 4090", "Tesla T4", "V100S"):
        (image,) = by_gpu(what_if["classes"], gpu)["images"]
        assert image["after"] == image["before"] and image["after"]["verdict"] == "fail", gpu


def test_usage_errors_exit_64() -> None:
    result = run_gpudoctor("fleet", str(DEMO), "--what-if", "driver")
    assert result.returncode == 64 and "KIND=VALUE" in result.stderr
    result = run_gpudoctor("fleet", str(DEMO), "--plan")
    assert result.returncode == 64 and "--image" in result.stderr
