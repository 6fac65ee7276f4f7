"""procfs/sysfs, host, host CUDA and container runtime probes on fixture trees (fixtures/sysfs/)."""

from __future__ import annotations

import copy
import os
import shutil
import struct
from pathlib import Path

import pytest

from gpudoctor.probes import pcie
from gpudoctor.probes.collect import collect_node
from gpudoctor.probes.container import parse_toolkit_version
from gpudoctor.probes.fabric_manager import parse_version
from gpudoctor.probes.fsroot import FsRoot
from gpudoctor.probes.nvml_api import ReplayNvml, call_key
from gpudoctor.probes.sysfs import parse_nvrm_version, probe_sysfs, sysfs_bus_id
from tests.support.nvml_replay import snapshot

SYSFS = Path(__file__).resolve().parent.parent / "fixtures" / "sysfs"


def tree(name: str) -> FsRoot:
    return FsRoot(SYSFS / name)


def test_kernel_module_flavours() -> None:
    open_module = (tree("acs-on").read_text("/proc/driver/nvidia/version")) or ""
    assert parse_nvrm_version(open_module) == parse_nvrm_version(open_module)
    module = parse_nvrm_version(open_module)
    assert module is not None and (module.flavour, module.version) == ("open", "580.65.06")
    module = parse_nvrm_version(tree("mismatch").read_text("/proc/driver/nvidia/version") or "")
    assert module is not None and (module.flavour, module.version) == ("proprietary", "460.56")
    assert parse_nvrm_version("garbage") is None


def test_acs_control_register_from_config_space() -> None:
    on = (SYSFS / "acs-on/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:08.0/config").read_bytes()
    off = (
        SYSFS / "acs-off/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:08.0/config"
    ).read_bytes()
    assert len(on) == 4096
    assert pcie.acs_control(on) == 0x001D
    assert pcie.acs_control(off) == 0
    no_acs = (SYSFS / "acs-on/sys/devices/pci0000:00/0000:00:01.0/config").read_bytes()
    assert pcie.acs_control(no_acs) is None


def test_acs_walk_stops_on_a_looping_capability_list() -> None:
    config = bytearray(4096)
    struct.pack_into("<I", config, 0x100, (0x100 << 20) | (1 << 16) | 0x0001)  # points at itself
    assert pcie.acs_control(bytes(config)) is None


def test_acs_on_bridges_between_gpus() -> None:
    result = probe_sysfs(tree("acs-on"))
    assert [g.address for g in result.pci_gpus] == ["0000:03:00.0", "0000:04:00.0"]
    assert result.pci_gpus[0].ancestors == ["0000:02:08.0", "0000:01:00.0", "0000:00:01.0"]
    enabled = sorted(a for a, s in result.acs.items() if s.enabled)
    assert enabled == ["0000:02:08.0", "0000:02:10.0"]
    assert result.acs["0000:00:01.0"].enabled is False
    assert (result.iommu_active, result.iommu_mode) == (True, "translated")
    assert result.nvswitch_count == 0


def test_acs_off_iommu_passthrough_and_nvswitches() -> None:
    result = probe_sysfs(tree("acs-off"))
    assert not any(s.enabled for s in result.acs.values())
    assert (result.iommu_active, result.iommu_mode) == (True, "passthrough")
    assert result.nvswitch_count == 4


def test_acs_unknown_without_root() -> None:
    node = collect_node(sysfs_root=str(SYSFS / "nonroot"))
    assert node.topology.acs_enabled_bridges == []
    assert node.topology.unknown["acs_enabled_bridges"] == "extended config space not readable (needs root)"


def test_pairs_get_the_acs_bridges_on_their_path() -> None:
    data = copy.deepcopy(snapshot("geforce-not-supported"))
    for index, bus in ((0, "00000000:03:00.0"), (1, "00000000:04:00.0")):
        data["calls"][call_key("nvmlDeviceGetPciInfo", (index,))]["value"]["busId"] = bus
    node = collect_node(sysfs_root=str(SYSFS / "acs-on"), nvml=ReplayNvml(data))
    (pair,) = node.topology.pairs
    assert pair.acs_bridges == ["0000:02:08.0", "0000:02:10.0"]
    assert "acs_bridges" not in pair.unknown
    off = collect_node(sysfs_root=str(SYSFS / "acs-off"), nvml=ReplayNvml(data))
    assert off.topology.pairs[0].acs_bridges == []


def test_driver_and_gpus_from_procfs_without_nvml() -> None:
    node = collect_node(sysfs_root=str(SYSFS / "acs-on"))
    assert node.driver.present is True
    assert (node.driver.version, node.driver.kernel_module) == ("580.65.06", "open")
    assert node.driver.unknown["cuda_version"] == "NVML not queried under --sysfs-root"
    assert [g.uuid for g in node.gpus] == [
        "GPU-f4a3c2b1-0000-4e2d-8c1b-000000000001",
        "GPU-f4a3c2b1-0000-4e2d-8c1b-000000000002",
    ]
    assert node.gpus[0].pci_bus_id == "00000000:03:00.0"
    assert node.gpus[0].compute_capability == "7.0"


def test_host_cuda_and_container_runtime_facts() -> None:
    node = collect_node(sysfs_root=str(SYSFS / "acs-on"))
    assert (node.host.hostname, node.host.kernel, node.host.os_release) == (
        "pcie-node-acs",
        "5.15.0-105-generic",
        "Ubuntu 22.04.4 LTS",
    )
    assert node.host.unknown["cpu_arch"] == "not recorded in the --sysfs-root tree"
    assert [(t.path, t.version) for t in node.cuda_host.toolkits] == [
        ("/usr/local/cuda-10.1", "10.1.243"),
        ("/usr/local/cuda-12.4", "12.4.1"),
    ]
    assert [(c.path, c.version) for c in node.cuda_host.cudart] == [
        ("/usr/lib/x86_64-linux-gnu/libcudart.so.12", "12.4.127")
    ]
    runtime = node.container_runtime
    assert (runtime.docker_nvidia_runtime, runtime.docker_default_runtime) == (True, "nvidia")
    assert runtime.cdi_specs == ["/etc/cdi/nvidia.yaml"]
    assert "not run under a root" in runtime.unknown["toolkit_version"]


def test_no_driver_tree() -> None:
    node = collect_node(sysfs_root=str(SYSFS / "no-driver"))
    assert node.driver.present is False
    assert node.driver.unknown["present"].startswith("no NVIDIA driver: /proc/driver/nvidia/version absent")
    assert node.fabric.nvswitch_count == 0
    assert node.topology.iommu_active is False
    assert node.container_runtime.docker_nvidia_runtime is None


def test_live_scan_of_this_machine_never_raises() -> None:
    node = collect_node()
    assert node.host.cpu_arch in ("x86_64", "aarch64")
    assert node.driver.present is False
    assert node.driver.unknown["present"] == "no NVIDIA driver: libnvidia-ml.so.1 not found"


@pytest.mark.parametrize(
    ("text", "version"),
    [
        (
            "NVIDIA Container Toolkit CLI version 1.17.8\ncommit: f202b80a9b9d0db00d9b1d73c0128c8962c55f4d\n",
            "1.17.8",
        ),
        ("cli-version: 1.14.3\nlib-version: 1.14.3\nbuild date: 2023-10-19T11:32+00:00\n", "1.14.3"),
        ("something else", None),
    ],
)
def test_container_toolkit_version(text: str, version: str | None) -> None:
    assert parse_toolkit_version(text) == version


def test_fabric_manager_version() -> None:
    assert parse_version("Fabric Manager version is : 535.54.03\n") == "535.54.03"
    assert parse_version("nothing") is None


def test_bus_id_forms() -> None:
    assert sysfs_bus_id("00000000:1B:00.0") == "0000:1b:00.0"


def _tree_with_drivers(tmp_path: Path, drivers: dict[str, str]) -> Path:
    root = tmp_path / "tree"
    shutil.copytree(SYSFS / "acs-off", root, symlinks=True)
    for address, driver in drivers.items():
        (root / "sys/bus/pci/drivers" / driver).mkdir(parents=True, exist_ok=True)
        device = (root / "sys/bus/pci/devices" / address).resolve()
        (device / "driver").symlink_to(os.path.relpath(root / "sys/bus/pci/drivers" / driver, device))
    return root


def _one_gpu_at_03() -> ReplayNvml:
    data = copy.deepcopy(snapshot("gpu-lost"))
    data["calls"][call_key("nvmlDeviceGetCount", ())]["value"] = 1
    data["calls"][call_key("nvmlDeviceGetPciInfo", (0,))]["value"]["busId"] = "00000000:03:00.0"
    return ReplayNvml(data)


def test_a_gpu_on_the_bus_that_nvml_does_not_list(tmp_path: Path) -> None:
    root = _tree_with_drivers(tmp_path, {"0000:03:00.0": "nvidia", "0000:04:00.0": "nvidia"})
    node = collect_node(sysfs_root=str(root), nvml=_one_gpu_at_03())
    assert [(e.probe, e.message) for e in node.probe_errors] == [
        (
            "sysfs",
            "NVIDIA GPU 0000:04:00.0 is on the PCI bus, bound to the nvidia driver, but NVML does not list it",
        )
    ]


def test_a_gpu_passed_through_to_vfio_is_not_an_error(tmp_path: Path) -> None:
    root = _tree_with_drivers(tmp_path, {"0000:03:00.0": "nvidia", "0000:04:00.0": "vfio-pci"})
    assert probe_sysfs(FsRoot(root)).pci_gpus[1].driver == "vfio-pci"
    node = collect_node(sysfs_root=str(root), nvml=_one_gpu_at_03())
    assert node.probe_errors == []


def test_single_space_open_module_banner() -> None:
    module = parse_nvrm_version(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64 610.43.02 Release Build\n"
        "              (dvs-builder@U22-I3-H05-01-2) Tue May 19 11:24:27 UTC 2026\n"
    )
    assert module is not None and (module.flavour, module.version) == ("open", "610.43.02")
