"""Derived facts the rules read: how an image's CUDA runtime can run on a driver, GPU look-ups."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.factsbuild import context_for

A100 = "A100-SXM4-80GB_535.54.03"
RTX4090 = "RTX-4090_535.86.05"
CUDA124 = "nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64"
CUDA13 = "vllm-openai_v0.23.0-cuda13.0.2_amd64"


def _driver(version: str, cuda: str | None) -> dict[str, Any]:
    return {
        "driver.version": version,
        "driver.branch": int(version.split(".")[0]),
        "driver.cuda_version": cuda,
    }


@pytest.mark.parametrize(
    ("node", "driver", "image", "image_patch", "path"),
    [
        (A100, _driver("550.54.15", "12.4"), CUDA124, None, "driver"),
        (
            A100,
            _driver("550.54.15", None),
            CUDA124,
            None,
            "driver",
        ),  # no CUDA version: the exact driver decides
        (A100, _driver("580.95.05", "13.0"), CUDA124, None, "driver"),
        (A100, _driver("535.54.03", "12.2"), CUDA124, None, "minor_version_compat"),
        (A100, _driver("525.53", "12.0"), CUDA124, None, "insufficient"),
        # nothing in the vLLM image shows cuda-compat; the nvidia/cuda 12.4.1 image names it
        (A100, _driver("535.54.03", "12.2"), CUDA13, None, "forward_compat_unverified"),
        (A100, _driver("470.82.01", "11.4"), CUDA124, None, "forward_compat"),
        (A100, _driver("560.35.03", "12.6"), CUDA13, None, "fc_unsupported_branch"),
        (RTX4090, _driver("535.86.05", "12.2"), CUDA13, None, "fc_unsupported_gpu"),
        # an image built on CUDA 13.0 without its own brand terms: the matrix row for 13.0 decides
        (
            A100,
            _driver("550.54.15", "12.4"),
            CUDA13,
            {"env.NVIDIA_REQUIRE_CUDA": "cuda>=13.0"},
            "forward_compat_unverified",
        ),
        (
            A100,
            _driver("545.23.08", "12.3"),
            CUDA13,
            {"env.NVIDIA_REQUIRE_CUDA": "cuda>=13.0"},
            "fc_unsupported_branch",
        ),
        (A100, _driver("535.54.03", "12.2"), CUDA124, {"cuda_version": "12.11.0"}, "minor_version_compat"),
    ],
)
def test_cuda_runtime_path(
    node: str, driver: dict[str, Any], image: str, image_patch: dict[str, Any] | None, path: str
) -> None:
    context = context_for(node, driver, image, image_patch)
    assert context["derived"]["cuda_runtime_path"] == path


COMPAT_13_0 = {"env.NV_CUDA_COMPAT_PACKAGE": "cuda-compat-13-0"}
R535 = _driver("535.54.03", "12.2")


def _toolkit(version: str, mode: str, compat_mode: str | None = None) -> dict[str, Any]:
    return {
        "container_runtime.toolkit_version": version,
        "container_runtime.mode": mode,
        "container_runtime.cuda_compat_mode": compat_mode,
    }


@pytest.mark.parametrize(
    ("node_patch", "image_patch", "path", "evidence"),
    [
        # known in the image: the official images' variable, or the compat libcuda among its binaries
        ({}, COMPAT_13_0, "forward_compat", "NV_CUDA_COMPAT_PACKAGE=cuda-compat-13-0"),
        (
            {},
            {"kernels": {"binaries": [{"path": "/usr/local/cuda-13.0/compat/libcuda.so.580.95.05"}]}},
            "forward_compat",
            "/usr/local/cuda-13.0/compat/libcuda.so.580.95.05 among the image's binaries",
        ),
        # not known: the warn path names what was looked at
        ({}, None, "forward_compat_unverified", "no NV_CUDA_COMPAT_PACKAGE in the image config"),
        # an older package cannot serve CUDA 13.0
        (
            {},
            {"env.NV_CUDA_COMPAT_PACKAGE": "cuda-compat-12-9"},
            "insufficient",
            "older than the image's CUDA 13.0",
        ),
        # the node's toolkit decides whether the image's compat libraries are loaded
        (_toolkit("1.18.0", "jit-cdi"), COMPAT_13_0, "forward_compat", "NV_CUDA_COMPAT_PACKAGE"),
        (_toolkit("1.17.8", "legacy", "ldconfig"), COMPAT_13_0, "forward_compat", "NV_CUDA_COMPAT_PACKAGE"),
        (_toolkit("1.17.3", "legacy"), COMPAT_13_0, "forward_compat", "NV_CUDA_COMPAT_PACKAGE"),
        (
            _toolkit("1.17.8", "legacy", "disabled"),
            COMPAT_13_0,
            "forward_compat_not_loaded",
            "NV_CUDA_COMPAT",
        ),
        (_toolkit("1.17.4", "legacy"), COMPAT_13_0, "forward_compat_not_loaded", "NV_CUDA_COMPAT_PACKAGE"),
        (_toolkit("1.17.3", "cdi"), COMPAT_13_0, "forward_compat_not_loaded", "NV_CUDA_COMPAT_PACKAGE"),
        # disabled before v1.17.7 is a key that release does not read
        (_toolkit("1.17.5", "legacy", "disabled"), COMPAT_13_0, "forward_compat", "NV_CUDA_COMPAT_PACKAGE"),
        # a toolkit that does not load them does not matter when the package is not known to be there
        (_toolkit("1.17.4", "legacy"), None, "forward_compat_unverified", "no NV_CUDA_COMPAT_PACKAGE"),
    ],
)
def test_cuda_compat_known_or_unknown(
    node_patch: dict[str, Any], image_patch: dict[str, Any] | None, path: str, evidence: str
) -> None:
    derived = context_for(A100, {**R535, **node_patch}, CUDA13, image_patch)["derived"]
    assert derived["cuda_runtime_path"] == path
    assert evidence in derived["image_cuda_compat_evidence"]
    assert derived["image_cuda_compat_package"] in ("cuda-compat-13-0", "cuda-compat-12-9")


def test_cuda_compat_of_a_newer_cuda_uses_that_packages_branch_list() -> None:
    # cuda-compat-13-1 (libcuda 590.44.01) lists 535/550/570/575/580/590, not 565 as the 13.0 image's
    # own NVIDIA_REQUIRE_CUDA terms do: on R565 the 13.1 package is not supported.
    newer = {"env.NV_CUDA_COMPAT_PACKAGE": "cuda-compat-13-1"}
    r565 = _driver("565.57.01", "12.7")
    assert context_for(A100, r565, CUDA13, newer)["derived"]["cuda_runtime_path"] == "fc_unsupported_branch"
    assert context_for(A100, r565, CUDA13, COMPAT_13_0)["derived"]["cuda_runtime_path"] == "forward_compat"
    derived = context_for(A100, R535, CUDA13, newer)["derived"]
    assert derived["cuda_runtime_path"] == "forward_compat"
    assert derived["image_fc_branches"] == [535, 550, 570, 575, 580, 590]


def test_unknown_runtime_path_has_a_reason() -> None:
    context = context_for(A100, {"driver.version": None, "driver.cuda_version": None}, CUDA124)
    assert context["derived"]["cuda_runtime_path"] is None
    assert context["derived"]["unknown"]["cuda_runtime_path"]


def test_gpu_derived_facts_from_the_tables() -> None:
    context = context_for(A100, {"gpus[0].name": "NVIDIA B200", "gpus[0].pci_device_id": "2901"})
    gpu = context["gpus"][0]["derived"]
    assert gpu["architecture"] == "blackwell"
    assert gpu["compute_capability"] == "10.0"
    assert gpu["min_driver_branch"] == 570
    assert gpu["open_module_required"] is True
    assert gpu["datacenter"] is True
    assert context["derived"]["nvswitch_system"] is False  # one GPU: no NVSwitch baseboard


def test_unknown_gpu_keeps_unknowns_with_reasons() -> None:
    context = context_for(A100, {"gpus[0].name": "NVIDIA Future GPU", "gpus[0].pci_device_id": "FFFF"})
    gpu = context["gpus"][0]["derived"]
    assert gpu["architecture"] is None and gpu["datacenter"] is None
    assert "not in gpudoctor's GPU table" in gpu["unknown"]["datacenter"]


def test_platform_derivation() -> None:
    arm = "nvidia-cuda_11.8.0-base-ubuntu2204_arm64"
    assert context_for(A100, {"host.cpu_arch": "aarch64"}, arm)["derived"]["image_platform_matches"] is True
    assert context_for(A100, {"host.cpu_arch": "x86_64"}, arm)["derived"]["image_platform_matches"] is False
    # An nvidia-smi XML has no CPU architecture: a discrete A100 is assumed x86_64, labelled so.
    assumed = context_for(A100, None, arm)["derived"]
    assert assumed["image_platform_matches"] is False
    assert assumed["node_platform_inferred"].startswith("assumed:")
    grace = context_for(A100, {"gpus[0].name": "NVIDIA GH200 480GB", "gpus[0].pci_device_id": "2342"}, arm)
    assert grace["derived"]["image_platform_matches"] is True
    assert "Grace" in grace["derived"]["node_platform_inferred"]
    unknown_gpu = {"gpus[0].name": "Some Future GPU", "gpus[0].pci_device_id": "FFFF"}
    unknown = context_for(A100, unknown_gpu, arm)["derived"]
    assert unknown["image_platform_matches"] is None
    assert unknown["unknown"]["image_platform_matches"] == "not in nvidia-smi XML"


@pytest.mark.parametrize(
    ("collected_at", "passed"),
    [("2026-06-30T23:59:59Z", False), ("2026-07-01T00:00:00Z", True), ("2025-01-15T08:00:00Z", False)],
)
def test_branch_end_of_life_is_judged_in_the_month_the_facts_were_collected(
    collected_at: str, passed: bool
) -> None:
    # R535's end of life is 2026-06 (rules/matrix/driver_branches.yaml): passed only after that month.
    context = context_for(A100, {"collected_at": collected_at, **_driver("535.54.03", "12.2")})
    assert context["derived"]["driver_branch_eol"] == "2026-06"
    assert context["derived"]["driver_branch_eol_passed"] is passed


def test_branch_end_of_life_without_a_collection_date_uses_today() -> None:
    import time

    context = context_for(A100, {"collected_at": None, **_driver("535.54.03", "12.2")})
    now = time.gmtime()
    assert context["derived"]["driver_branch_eol_passed"] is ((now.tm_year, now.tm_mon) > (2026, 6))


def test_a_production_branch_nvidia_no_longer_lists_is_past_end_of_life() -> None:
    # R570 (a production branch) is absent from NVIDIA's 620 support matrix, which lists every
    # supported LTSB and PB: out of support, month unpublished -> GD-DRV-007, not GD-DRV-010.
    derived = context_for(A100, {"collected_at": "2026-12-01T00:00:00Z", **_driver("570.124.06", "12.8")})[
        "derived"
    ]
    assert derived["driver_branch_eol_passed"] is True
    assert derived["driver_branch_eol_known"] is True
    assert "no longer lists" in derived["driver_branch_eol"]


def test_a_new_feature_branch_without_a_date_stays_unknown() -> None:
    derived = context_for(A100, {**_driver("575.51.03", "12.9")})["derived"]
    assert derived["driver_branch_eol_passed"] is None
    assert derived["driver_branch_eol_known"] is False


def test_plan_candidates_are_only_branches_with_a_published_end_of_life_ahead() -> None:
    from gpudoctor.fleet.plan import supported_branches

    branches = {branch: eol for branch, _, eol in supported_branches("2026-12")}
    assert 580 in branches and 620 in branches
    assert not {570, 550, 575, 590} & set(branches)  # unlisted or unknown is no support promise
    assert all(eol[:1].isdigit() and eol >= "2026-12" for eol in branches.values())
