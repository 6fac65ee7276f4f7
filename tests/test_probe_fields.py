"""One unreadable file fails exactly the facts that come from it (FsRoot.read_source): host,
CUDA-host and container-runtime probes on real trees under a temporary --sysfs-root / --host-root
with a directory, a FIFO or bytes that are not UTF-8 where a file is expected."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from gpudoctor.pipeline import diagnose
from gpudoctor.probes.collect import collect_node
from gpudoctor.probes.container import probe_container_runtime
from gpudoctor.probes.cuda_host import probe_cuda_host
from gpudoctor.probes.fsroot import FsRoot, SourceUnreadable
from gpudoctor.probes.host import probe_host
from tests.support.nvml_replay import replay

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sysfs"
DOCKER = ("docker_nvidia_runtime", "docker_default_runtime", "docker_cdi")
CONFIG = ("mode_configured", "disable_require", "cuda_compat_mode")


def tree(tmp_path: Path, name: str = "ctk-legacy") -> Path:
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root)
    return root


def broken(root: Path, relative: str, how: str) -> None:
    """Put a directory, a FIFO or non-UTF-8 bytes where `relative` expects a text file."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    if how == "directory":
        path.mkdir()
    elif how == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b'PRETTY_NAME="Ubuntu \xff\xfe 24.04"\n')


@pytest.mark.parametrize(
    ("how", "reason"),
    [("directory", "is a directory"), ("fifo", "is a FIFO"), ("bytes", "not UTF-8 text")],
)
def test_host_one_unreadable_file_fails_its_fact_only(tmp_path: Path, how: str, reason: str) -> None:
    root = tree(tmp_path)
    broken(root, "etc/os-release", how)
    host = probe_host(FsRoot(root))
    assert host.failed == ["os_release"]
    assert host.os_release is None and host.unknown["os_release"].startswith("/etc/os-release: ")
    assert reason in host.unknown["os_release"]
    assert host.hostname and host.kernel  # read from their own files


def test_host_unreadable_primary_file_is_not_replaced_by_the_fallback(tmp_path: Path) -> None:
    """/usr/lib/os-release stands in for an absent /etc/os-release, not for a broken one."""
    root = tree(tmp_path)
    broken(root, "etc/os-release", "directory")
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text('PRETTY_NAME="Other"\n')
    assert probe_host(FsRoot(root)).os_release is None
    shutil.rmtree(root / "etc/os-release")
    assert probe_host(FsRoot(root)).os_release == "Other"


def test_host_absent_files_are_answers_not_failures(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "proc/sys/kernel/hostname").unlink()
    host = probe_host(FsRoot(root))
    assert host.failed == [] and host.unknown["hostname"] == "not readable"


def test_host_root_hostname_fifo_does_not_hang_and_keeps_uname(tmp_path: Path) -> None:
    """Under --host-root the kernel is the live one: uname still gives the kernel, the broken
    hostname file fails the hostname, and a FIFO never blocks the read."""
    root = tree(tmp_path)
    broken(root, "proc/sys/kernel/hostname", "fifo")
    started = time.monotonic()
    host = probe_host(FsRoot(root, live_kernel=True))
    assert time.monotonic() - started < 2
    assert host.failed == ["hostname"] and "is a FIFO" in host.unknown["hostname"]
    assert host.kernel and host.cpu_arch


def test_cuda_host_one_toolkit_version_fails_the_other_stands(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for toolkit, version in (("cuda-12.4", None), ("cuda-13.0", '{"cuda": {"version": "13.0.2"}}')):
        (root / "usr/local" / toolkit).mkdir(parents=True)
        if version is not None:
            (root / "usr/local" / toolkit / "version.json").write_text(version)
    broken(root, "usr/local/cuda-12.4/version.json", "directory")
    facts = probe_cuda_host(FsRoot(root))
    assert [(t.path, t.version) for t in facts.toolkits] == [
        ("/usr/local/cuda-12.4", None),
        ("/usr/local/cuda-13.0", "13.0.2"),
    ]
    assert facts.failed == ["toolkits[0].version"]
    assert "/usr/local/cuda-12.4/version.json: is a directory" in facts.unknown["toolkits[0].version"]


@pytest.mark.parametrize(
    ("relative", "how", "failed"),
    [
        ("etc/docker/daemon.json", "directory", DOCKER),
        ("etc/docker/daemon.json", "fifo", DOCKER),
        ("etc/nvidia-container-runtime/config.toml", "fifo", CONFIG),
        ("etc/nvidia-container-runtime/config.toml", "bytes", CONFIG),
        ("var/lib/dpkg/status", "directory", ("toolkit_version", "libnvidia_container_version")),
    ],
)
def test_container_runtime_one_unreadable_file_fails_its_facts_only(
    tmp_path: Path, relative: str, how: str, failed: tuple[str, ...]
) -> None:
    intact = probe_container_runtime(FsRoot(tree(tmp_path / "intact")))
    root = tree(tmp_path)
    broken(root, relative, how)
    runtime = probe_container_runtime(FsRoot(root))
    assert sorted(runtime.failed) == sorted(failed)
    for name in failed:
        assert getattr(runtime, name) is None
        assert runtime.unknown[name].startswith(f"/{relative}: ") or f"/{relative}: " in runtime.unknown[name]
    for name in ("toolkit_version", "mode_configured", "docker_nvidia_runtime", "docker_default_runtime"):
        if name not in failed:
            assert getattr(runtime, name) == getattr(intact, name) is not None, name


def test_an_unreadable_cdi_spec_fails_the_spec_list_and_keeps_the_others(tmp_path: Path) -> None:
    root = tree(tmp_path, "ctk-cdi-stale")
    specs = sorted((root / "etc/cdi").iterdir())
    assert specs
    broken(root, "etc/cdi/zz-broken.yaml", "fifo")
    runtime = probe_container_runtime(FsRoot(root))
    assert runtime.failed == ["cdi_spec_details"]
    by_path = {s.path: s for s in runtime.cdi_spec_details}
    assert "is a FIFO" in (by_path["/etc/cdi/zz-broken.yaml"].error or "")
    assert all(by_path[f"/etc/cdi/{p.name}"].error is None for p in specs)


def test_read_source_tells_absent_from_unreadable(tmp_path: Path) -> None:
    fs = FsRoot(tmp_path)
    assert fs.read_source("/nothing/here") is None
    (tmp_path / "dir").mkdir()
    with pytest.raises(SourceUnreadable, match=r"^/dir: is a directory"):
        fs.read_source("/dir")
    (tmp_path / "text").write_bytes("é".encode() * 3)
    assert fs.read_source("/text", limit=5) == "éé"  # a character cut by the limit is dropped, not an error


def test_a_scan_keeps_every_other_fact_and_is_unknown(tmp_path: Path) -> None:
    """Through the collector: the probe is not failed as a whole (no probe error), the facts
    from the broken file are, and the node verdict is unknown."""
    root = tree(tmp_path)
    broken(root, "etc/docker/daemon.json", "directory")
    node = collect_node(sysfs_root=str(root), nvml=replay("8x-v100s-pcie"))
    assert [e.probe for e in node.probe_errors if e.probe == "container_runtime"] == []
    assert sorted(node.container_runtime.failed) == sorted(DOCKER)
    assert node.container_runtime.toolkit_version and node.host.os_release and node.host.kernel
    report = diagnose(node)
    assert report["verdict"] == "unknown"
    by_rule = {f["rule_id"]: f for f in report["findings"]}
    assert by_rule["GD-CTR-001"]["severity"] == "unknown"
    assert by_rule["GD-CTR-001"]["missing_facts"][0] == (
        "container_runtime.docker_nvidia_runtime: /etc/docker/daemon.json: is a directory, expected a file"
    )
