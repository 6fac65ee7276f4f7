"""The NVML probe and collector on replayed NVML snapshots (fixtures/nvml/)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpudoctor.pipeline import diagnose
from gpudoctor.probes.collect import Deadlines, collect_node
from gpudoctor.probes.nvml_api import LiveNvml, NvmlError, RecordingNvml, ReplayNvml, call_key
from gpudoctor.probes.nvml_probe import probe_nvml
from tests.support.nvml_faults import (
    diagnose_with_fault,
    documented_answer,
    fault_cases,
    recorded_calls,
    with_fault,
)
from tests.support.nvml_replay import HangingNvml, replay, snapshot

SYSFS = Path(__file__).resolve().parent.parent / "fixtures" / "sysfs"


def test_multi_gpu_with_p2p_matrix() -> None:
    node = collect_node(sysfs_root=str(SYSFS / "no-driver"), nvml=replay("8x-v100s-pcie"))
    assert node.driver.present is True
    assert (node.driver.version, node.driver.branch, node.driver.cuda_version) == ("460.73.01", 460, "11.2")
    assert node.driver.nvml_version == "11.460.73.01"
    assert node.driver.library_mismatch is False
    assert [g.compute_capability for g in node.gpus] == ["7.0"] * 8
    assert node.gpus[0].pci_device_id == "1DF6" and node.gpus[0].brand == "Tesla"
    assert node.gpus[0].memory_total_mib == 32510
    assert len(node.topology.pairs) == 28
    same = next(p for p in node.topology.pairs if (p.gpu_a, p.gpu_b) == (0, 1))
    cross = next(p for p in node.topology.pairs if (p.gpu_a, p.gpu_b) == (3, 4))
    assert (same.p2p_read, same.p2p_nvlink, same.common_ancestor) == ("ok", "not_supported", "node")
    assert (cross.p2p_read, cross.common_ancestor) == ("chipset_not_supported", "system")
    assert same.nvlink_count == 0
    assert node.gpus[0].unknown["nvlink_links_up"] == "NVML: NotSupported"
    assert node.probe_errors == []


def test_mig_gpu_and_nvlinks_through_nvswitch() -> None:
    result = probe_nvml(replay("a100-mig"))
    gpu = result.gpus[0]
    assert (gpu.mig_mode, gpu.mig_mode_pending) == ("enabled", "enabled")
    assert [d.index for d in gpu.mig_devices] == [0, 1]
    assert all(d.uuid and d.uuid.startswith("MIG-") for d in gpu.mig_devices)
    assert gpu.mig_devices[0].memory_total_mib == 19968
    assert (gpu.nvlink_links_up, gpu.nvlink_links_total) == (12, 12)
    assert gpu.unknown["fabric_state"] == "NVML: NotSupported"
    assert gpu.architecture == "ampere"


def test_gpu_fallen_off_the_bus() -> None:
    result = probe_nvml(replay("gpu-lost"))
    assert [g.fallen_off_bus for g in result.gpus] == [False, True]
    lost = result.gpus[1]
    assert lost.name is None
    assert lost.unknown["name"] == "GPU has fallen off the bus (NVML: GpuIsLost)"
    assert result.pairs == []  # no pair can be asked about a lost GPU


def test_not_supported_fields_are_unknown_with_reason() -> None:
    result = probe_nvml(replay("geforce-not-supported"))
    gpu = result.gpus[0]
    assert gpu.ecc_mode is None and gpu.unknown["ecc_mode"] == "NVML: NotSupported"
    assert gpu.unknown["ecc_errors_uncorrectable_volatile"] == "NVML: NotSupported"
    assert gpu.remapped_rows_pending is None and gpu.unknown["remapped_rows_failure"] == "NVML: NotSupported"
    assert gpu.persistence_mode == "enabled"
    assert result.pairs[0].p2p_read == "gpu_not_supported"
    assert result.pairs[0].common_ancestor == "hostbridge"


def test_driver_library_mismatch_uses_the_loaded_kernel_module() -> None:
    node = collect_node(sysfs_root=str(SYSFS / "mismatch"), nvml=replay("library-mismatch"))
    driver = node.driver
    assert driver.present is True and driver.library_mismatch is True
    assert (driver.version, driver.kernel_module, driver.kernel_module_version) == (
        "460.56",
        "proprietary",
        "460.56",
    )
    assert driver.cuda_version is None and "LibRmVersionMismatch" in driver.unknown["cuda_version"]
    # GPUs still listed, from /proc/driver/nvidia/gpus
    assert [g.name for g in node.gpus] == ["Tesla V100S-PCIE-32GB"] * 2
    assert node.gpus[0].compute_capability == "7.0"
    assert any(e.probe == "nvml" and "mismatch" in e.message for e in node.probe_errors)


def test_no_driver() -> None:
    node = collect_node(sysfs_root=str(SYSFS / "no-driver"), nvml=replay("no-driver"))
    assert node.driver.present is False
    assert node.driver.unknown["present"] == "no NVIDIA driver: libnvidia-ml.so.1 not found"
    assert node.gpus == []
    assert node.topology.unknown["pairs"] == "no NVIDIA driver: libnvidia-ml.so.1 not found"


def test_driver_not_loaded() -> None:
    node = collect_node(sysfs_root=str(SYSFS / "no-driver"), nvml=replay("driver-not-loaded"))
    assert node.driver.present is False
    assert "kernel module is not loaded" in node.driver.unknown["present"]


def test_live_nvml_on_this_machine_reports_missing_library() -> None:
    # These build machines have no NVIDIA driver: the real pynvml path must say so.
    try:
        backend = LiveNvml()
        backend.call("nvmlInit")
    except NvmlError as exc:
        assert exc.name in ("LibraryNotFound", "DriverNotLoaded")
    else:  # pragma: no cover - only on a GPU machine
        backend.call("nvmlShutdown")


def test_a_hung_nvml_call_does_not_hang_the_scan() -> None:
    backend = HangingNvml(snapshot("8x-v100s-pcie"), "nvmlDeviceGetP2PStatus")
    started = time.monotonic()
    try:
        node = collect_node(
            sysfs_root=str(SYSFS / "no-driver"), nvml=backend, deadlines=Deadlines(nvml_s=0.5)
        )
    finally:
        backend.release.set()
    assert time.monotonic() - started < 5
    assert any(e.probe == "nvml" and "timed out after 0.5s" in e.message for e in node.probe_errors)
    assert node.gpus == []  # nothing half-collected leaks into the facts


def test_recorder_round_trip_reproduces_the_facts() -> None:
    original = snapshot("a100-mig")
    recorder = RecordingNvml(ReplayNvml(original))
    first = probe_nvml(recorder)
    replayed = probe_nvml(ReplayNvml({"calls": recorder.calls}))
    assert replayed.gpus == first.gpus
    assert recorder.calls[call_key("nvmlDeviceGetCount", ())] == {"value": 1}
    assert recorder.calls[call_key("nvmlDeviceGetGpuFabricInfo", (0,))] == {"error": "NotSupported"}


def test_a_call_missing_from_a_snapshot_is_unknown_not_a_crash() -> None:
    data = copy.deepcopy(snapshot("8x-v100s-pcie"))
    del data["calls"][call_key("nvmlDeviceGetName", (2,))]
    result = probe_nvml(ReplayNvml(data))
    assert result.gpus[2].name is None
    assert result.gpus[2].unknown["name"] == "NVML: NotRecorded"


def test_recorder_command_on_this_machine() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gpudoctor.probes.nvml_record"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    recorded = json.loads(done.stdout)
    assert recorded["format"] == "gpudoctor-nvml-snapshot/1"
    # No driver here: the snapshot holds the failing nvmlInit and replays to "no driver".
    assert recorded["calls"]["nvmlInit"]["error"] in ("LibraryNotFound", "DriverNotLoaded")
    assert probe_nvml(ReplayNvml(recorded)).driver.present is False


def _nvidia_smi_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    binary = tmp_path / "bin" / "nvidia-smi"
    binary.parent.mkdir()
    binary.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", f"{binary.parent}{os.pathsep}{os.environ['PATH']}")


def test_nvidia_smi_binary_is_the_fallback_when_nvml_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xml = Path(__file__).resolve().parent.parent / "fixtures" / "nvidia-smi" / "A100-SXM4-80GB_535.54.03.xml"
    _nvidia_smi_on_path(tmp_path, monkeypatch, f'[ "$1 $2" = "-q -x" ] || exit 9\nexec cat "{xml}"')
    node = collect_node(nvml=ReplayNvml({"calls": {"nvmlInit": {"error": "NoPermission"}}}))
    assert node.driver.unknown["present"] == "NVML: NoPermission"
    assert (node.driver.version, node.driver.cuda_version) == ("535.54.03", "12.2")
    assert [g.name for g in node.gpus] == ["NVIDIA A100-SXM4-80GB"]
    assert any(e.probe == "nvml" for e in node.probe_errors)


def test_a_hung_nvidia_smi_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _nvidia_smi_on_path(tmp_path, monkeypatch, "exec sleep 30")
    started = time.monotonic()
    node = collect_node(
        nvml=ReplayNvml({"calls": {"nvmlInit": {"error": "Unknown"}}}), deadlines=Deadlines(commands_s=1.0)
    )
    assert time.monotonic() - started < 10
    assert any(e.probe == "nvidia-smi" and "timed out" in e.message for e in node.probe_errors)
    assert node.gpus == []


def test_kernel_module_without_user_space_library() -> None:
    node = collect_node(sysfs_root=str(SYSFS / "acs-on"), nvml=replay("no-driver"))
    driver = node.driver
    assert driver.present is True
    assert (driver.version, driver.kernel_module) == ("580.65.06", "open")
    assert driver.unknown["cuda_version"] == (
        "libnvidia-ml.so.1 not found, although NVIDIA kernel module 580.65.06 is loaded"
    )
    assert "present" not in driver.unknown


# --- missing is never ok: every recorded NVML call failing (tools/nvml_fault_sweep.py runs all) ---

SAMPLE_EVERY = 5  # a deterministic fifth of the (snapshot, call, error) product keeps this ~3 s


@pytest.mark.parametrize(
    ("name", "key", "error"),
    [pytest.param(*case, id="-".join(case)) for i, case in enumerate(fault_cases()) if i % SAMPLE_EVERY == 0],
)
def test_no_nvml_fault_ends_in_ok(name: str, key: str, error: str) -> None:
    report = diagnose_with_fault(name, key, error)
    if report["verdict"] in ("ok", "info"):
        assert documented_answer(name, key, error), f"{key} failing with {error} gave {report['verdict']}"
    else:
        assert report["verdict"] in ("unknown", "fail", "warn")


def test_every_ecc_counter_failing_is_not_ok() -> None:
    """The reported case: all 16 ECC counter queries of the 8x V100S failing."""
    data = copy.deepcopy(snapshot("8x-v100s-pcie"))
    for key in data["calls"]:
        if key.startswith("nvmlDeviceGetTotalEccErrors"):
            data["calls"][key] = {"error": "Unknown"}
    node = collect_node(sysfs_root=str(SYSFS / "no-driver"), nvml=ReplayNvml(data))
    report = diagnose(node)
    assert report["verdict"] == "unknown"
    by_rule = {f["rule_id"]: f for f in report["findings"]}
    assert by_rule["GD-HLT-001"]["severity"] == by_rule["GD-HLT-002"]["severity"] == "unknown"
    assert (
        "gpus[0].ecc_errors_uncorrectable_volatile: NVML: Unknown" in by_rule["GD-HLT-001"]["missing_facts"]
    )


def test_a_gpu_lost_in_any_call_is_fallen_off_the_bus() -> None:
    node = collect_node(
        sysfs_root=str(SYSFS / "no-driver"),
        nvml=with_fault(
            "8x-v100s-pcie",
            call_key("nvmlDeviceGetTotalEccErrors", (3, "uncorrected", "volatile")),
            "GpuIsLost",
        ),
    )
    assert [g.index for g in node.gpus if g.fallen_off_bus] == [3]
    assert diagnose(node)["verdict"] == "fail"


def test_not_supported_from_an_optional_feature_is_an_answer_not_a_failure() -> None:
    gpu = probe_nvml(replay("geforce-not-supported")).gpus[0]
    assert gpu.unknown["ecc_mode"] == "NVML: NotSupported" and "ecc_mode" not in gpu.failed
    gpu = probe_nvml(with_fault("8x-v100s-pcie", call_key("nvmlDeviceGetName", (0,)), "NotSupported")).gpus[0]
    assert gpu.failed == ["name"]


# --- NotSupported on a board the GPU table says has ECC memory (rules/matrix/gpus.yaml `ecc`) ---

ECC_CALLS = ("nvmlDeviceGetEccMode", "nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetRetiredPagesPendingStatus")


@pytest.mark.parametrize(
    "key",
    [
        "nvmlDeviceGetEccMode|2",
        "nvmlDeviceGetTotalEccErrors|5|uncorrected|aggregate",
        "nvmlDeviceGetTotalEccErrors|5|uncorrected|volatile",
        "nvmlDeviceGetRetiredPagesPendingStatus|7",
    ],
)
def test_not_supported_for_ecc_on_a_v100s_is_a_failure(key: str) -> None:
    report = diagnose_with_fault("8x-v100s-pcie", key, "NotSupported")
    assert report["verdict"] == "unknown"
    missing = [m for f in report["findings"] if f["severity"] == "unknown" for m in f["missing_facts"]]
    assert any(
        "NotSupported, but gpudoctor's GPU table says Tesla V100S-PCIE-32GB has ECC memory" in m
        for m in missing
    )


def test_every_ecc_not_supported_fault_on_the_v100s_is_not_ok() -> None:
    """The 32 faults issue 18 left ending in exit 0: NotSupported from every ECC call of the 8x V100S."""
    keys = [k for k in recorded_calls("8x-v100s-pcie") if k.startswith(ECC_CALLS)]
    assert len(keys) == 32
    verdicts = {key: diagnose_with_fault("8x-v100s-pcie", key, "NotSupported")["verdict"] for key in keys}
    assert {k: v for k, v in verdicts.items() if v in ("ok", "info")} == {}


def test_ecc_counters_not_supported_with_ecc_disabled_are_an_answer() -> None:
    """nvml.h: the counters "Require ECC Mode to be enabled"; a V100S with ECC off answers NotSupported."""
    data = copy.deepcopy(snapshot("8x-v100s-pcie"))
    data["calls"]["nvmlDeviceGetEccMode|0"] = {"value": [0, 0]}
    for key in (
        "nvmlDeviceGetTotalEccErrors|0|uncorrected|volatile",
        "nvmlDeviceGetRetiredPagesPendingStatus|0",
    ):
        data["calls"][key] = {"error": "NotSupported"}
    gpu = probe_nvml(ReplayNvml(data)).gpus[0]
    assert gpu.ecc_mode == "disabled"
    assert gpu.unknown["ecc_errors_uncorrectable_volatile"] == "NVML: NotSupported"
    assert gpu.failed == []


def test_a100_answers_stay_answers_where_nvml_documents_them() -> None:
    """A100 (ECC memory): page retirement NotSupported is the answer (row remapping replaced it), and
    the volatile counter under MIG is N/A in the real nvidia-smi output the snapshot comes from; the
    aggregate counter or ECC mode answering NotSupported is a failure."""
    gpu = probe_nvml(replay("a100-mig")).gpus[0]
    assert gpu.mig_mode == "enabled" and gpu.failed == []
    assert (
        gpu.unknown["retired_pages_pending"]
        == gpu.unknown["ecc_errors_uncorrectable_volatile"]
        == "NVML: NotSupported"
    )
    for key, name in (
        ("nvmlDeviceGetTotalEccErrors|0|uncorrected|aggregate", "ecc_errors_uncorrectable_aggregate"),
        ("nvmlDeviceGetEccMode|0", "ecc_mode"),
    ):
        gpu = probe_nvml(with_fault("a100-mig", key, "NotSupported")).gpus[0]
        assert gpu.failed == [name], key
        assert "has ECC memory" in gpu.unknown[name]


def test_ecc_not_supported_on_a_board_of_unknown_ecc_stays_an_answer() -> None:
    """GeForce RTX 2070: the table says nothing of its ECC, so NVML's NotSupported is its answer."""
    gpu = probe_nvml(replay("geforce-not-supported")).gpus[0]
    for name in ("ecc_mode", "ecc_errors_uncorrectable_volatile", "retired_pages_pending"):
        assert gpu.unknown[name] == "NVML: NotSupported" and name not in gpu.failed


def test_ecc_not_supported_in_a_vgpu_guest_is_an_answer() -> None:
    data = copy.deepcopy(snapshot("8x-v100s-pcie"))
    data["calls"]["nvmlDeviceGetEccMode|0"] = {"error": "NotSupported"}
    for mode, failed in ((2, []), (1, ["ecc_mode"])):  # NVML_GPU_VIRTUALIZATION_MODE_VGPU, _PASSTHROUGH
        data["calls"]["nvmlDeviceGetVirtualizationMode|0"] = {"value": mode}
        assert probe_nvml(ReplayNvml(data)).gpus[0].failed == failed, mode


def test_nvlink_not_supported_on_an_nvswitch_board_is_a_failure_unless_mig() -> None:
    """A100 SXM4 (the table: NVSwitch baseboards) answering NotSupported at link 0 has not told its
    NVLink state; with MIG enabled NVLink is not in use and the answer stands."""
    data = copy.deepcopy(snapshot("a100-mig"))
    data["calls"]["nvmlDeviceGetNvLinkState|0|0"] = {"error": "NotSupported"}
    gpu = probe_nvml(ReplayNvml(data)).gpus[0]
    assert gpu.failed == [] and gpu.unknown["nvlink_links_total"] == "NVML: NotSupported"
    data["calls"]["nvmlDeviceGetMigMode|0"] = {"value": [0, 0]}
    data["calls"]["nvmlDeviceGetTotalEccErrors|0|uncorrected|volatile"] = {"value": 0}  # reported without MIG
    gpu = probe_nvml(ReplayNvml(data)).gpus[0]
    assert gpu.failed == ["nvlink_links_up", "nvlink_links_total"]
    assert "sits on NVSwitch baseboards, which connect GPUs by NVLink" in gpu.unknown["nvlink_links_total"]


# --- boards the GPU table covers since Blackwell rows were sourced (rules/matrix/gpus.yaml) ---


def as_board(name: str, device_id: int, cc: tuple[int, int]) -> dict:
    """The recorded 8x V100S snapshot with GPU 0 answering as another board: its name, PCI
    device id (over vendor 10DE, as NVML packs it) and compute capability. What NotSupported
    means there is the GPU table's to say, so only the board's identity needs to change."""
    data = copy.deepcopy(snapshot("8x-v100s-pcie"))
    calls = data["calls"]
    calls["nvmlDeviceGetName|0"] = {"value": name}
    calls["nvmlDeviceGetPciInfo|0"]["value"]["pciDeviceId"] = device_id << 16 | 0x10DE
    calls["nvmlDeviceGetCudaComputeCapability|0"] = {"value": list(cc)}
    return data


ECC_NOT_SUPPORTED = (
    "nvmlDeviceGetEccMode|0",
    "nvmlDeviceGetTotalEccErrors|0|uncorrected|volatile",
    "nvmlDeviceGetTotalEccErrors|0|uncorrected|aggregate",
)


@pytest.mark.parametrize(
    ("board", "device_id", "cc"),
    [("NVIDIA B200", 0x2901, (10, 0)), ("NVIDIA GB200", 0x2941, (10, 0))],
)
def test_ecc_not_supported_on_a_gb100_board_is_a_failure(
    board: str, device_id: int, cc: tuple[int, int]
) -> None:
    """B200 / GB200: NVIDIA's memory error management note covers GB10x HBM ECC, so NVML's
    NotSupported for ECC mode is a failed query and the ECC rules are unknown, not skipped."""
    data = as_board(board, device_id, cc)
    data["calls"]["nvmlDeviceGetEccMode|0"] = {"error": "NotSupported"}
    gpu = probe_nvml(ReplayNvml(data)).gpus[0]
    assert "ecc_mode" in gpu.failed
    assert (
        gpu.unknown["ecc_mode"]
        == f"NVML: NotSupported, but gpudoctor's GPU table says {board} has ECC memory"
    )
    for key in ECC_NOT_SUPPORTED:
        data["calls"][key] = {"error": "NotSupported"}
    node = collect_node(sysfs_root=str(SYSFS / "no-driver"), nvml=ReplayNvml(data))
    gpu = node.gpus[0]
    assert {"ecc_mode", "ecc_errors_uncorrectable_volatile", "ecc_errors_uncorrectable_aggregate"} <= set(
        gpu.failed
    )
    assert "retired_pages_pending" not in gpu.failed  # row remapping replaces it from Ampere on
    by_rule = {f["rule_id"]: f for f in diagnose(node)["findings"]}
    for rule in ("GD-HLT-001", "GD-HLT-002"):  # uncorrectable ECC errors since boot, in the lifetime
        assert by_rule[rule]["severity"] == "unknown", rule
        assert any(f"{board} has ECC memory" in m for m in by_rule[rule]["missing_facts"]), rule


@pytest.mark.parametrize(
    ("board", "device_id", "cc"),
    [
        ("NVIDIA B300 SXM6 AC", 0x3182, (10, 3)),  # GB110: no NVIDIA page found on its ECC
        ("NVIDIA GB300", 0x31C2, (10, 3)),
        ("NVIDIA L40S", 0x26B9, (8, 9)),  # GDDR: "with ECC" only on resellers' datasheet copies
        ("NVIDIA GeForce RTX 5090", 0x2B85, (12, 0)),
    ],
)
def test_ecc_not_supported_on_a_board_without_a_sourced_ecc_row_stays_an_answer(
    board: str, device_id: int, cc: tuple[int, int]
) -> None:
    data = as_board(board, device_id, cc)
    for key in ECC_NOT_SUPPORTED:
        data["calls"][key] = {"error": "NotSupported"}
    node = collect_node(sysfs_root=str(SYSFS / "no-driver"), nvml=ReplayNvml(data))
    gpu = node.gpus[0]
    for name in ("ecc_mode", "ecc_errors_uncorrectable_volatile", "ecc_errors_uncorrectable_aggregate"):
        assert gpu.unknown[name] == "NVML: NotSupported" and name not in gpu.failed, name
    by_rule = {f["rule_id"]: f for f in diagnose(node)["findings"]}
    assert all(by_rule.get(rule, {}).get("severity") != "unknown" for rule in ("GD-HLT-001", "GD-HLT-002"))


def test_nvlink_not_supported_follows_the_nvswitch_marking() -> None:
    """A B200 (HGX B200 8-GPU baseboard, NVIDIA's NVSwitch platform list) answering NotSupported at
    link 0, as the recorded V100S PCIe does, has not told its NVLink state; an H200 NVL, a PCIe
    card that list does not name, has answered "no NVLink"."""
    gpu = probe_nvml(ReplayNvml(as_board("NVIDIA B200", 0x2901, (10, 0)))).gpus[0]
    assert gpu.failed == ["nvlink_links_up", "nvlink_links_total"]
    assert "NVIDIA B200 sits on NVSwitch baseboards" in gpu.unknown["nvlink_links_total"]
    gpu = probe_nvml(ReplayNvml(as_board("NVIDIA H200 NVL", 0x233B, (9, 0)))).gpus[0]
    assert gpu.failed == [] and gpu.unknown["nvlink_links_total"] == "NVML: NotSupported"
