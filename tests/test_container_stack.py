"""The container stack: toolkit/runtime facts from recorded host trees (fixtures/sysfs/ctk-*, real
file formats, a real rpm database), the in-cluster scan that reads host files AND queries NVML
(replayed snapshot), and what an image's NVIDIA_REQUIRE_* does in each runtime mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.facts import ContainerRuntimeFacts, ImageFacts, NodeFacts
from gpudoctor.pipeline import diagnose
from gpudoctor.probes.cdi import read_spec
from gpudoctor.probes.collect import collect_node
from gpudoctor.probes.engines import probe_containerd
from gpudoctor.probes.fsroot import FsRoot
from gpudoctor.probes.pkgdb import dpkg_versions, rpm_header_strings, upstream_version
from gpudoctor.runtime_mode import refresh_mode, requirement_enforced, resolve_mode
from tests.support.cli import run_gpudoctor
from tests.support.nvml_replay import replay

REPO = Path(__file__).resolve().parent.parent
TREES = REPO / "fixtures" / "sysfs"
IMAGES = REPO / "fixtures" / "images"


def tree(name: str) -> str:
    return str(TREES / name)


def in_cluster(name: str) -> NodeFacts:
    """The DaemonSet's view: the host under a root, NVML through the injected library (replayed)."""
    return collect_node(host_root=tree(name), nvml=replay("8x-v100s-pcie"))


def image(name: str, **env: str) -> ImageFacts:
    from gpudoctor.images.config import facts_from_config

    data = json.loads((IMAGES / f"{name}.json").read_text())
    merged = {**data["env"], **env}
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [f"{k}={v}" for k, v in merged.items()]},
    }
    return facts_from_config(config, reference=f"fixture/{name}", source="fixture")


def findings(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["rule_id"]: f for f in report["findings"]}


# --- facts from the host trees ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "toolkit", "source", "configured", "mode"),
    [
        ("ctk-legacy", "1.17.8", "/var/lib/dpkg/status", "legacy", "legacy"),
        ("ctk-jit-cdi", "1.18.0", "/var/lib/dpkg/status", "auto", "jit-cdi"),
        ("ctk-cdi-stale", "1.17.4", "/var/lib/rpm/rpmdb.sqlite", "cdi", "cdi"),
        ("ctk-operator", None, None, "auto", "legacy"),
        ("ctk-tegra", "1.16.1", "/var/lib/dpkg/status", "auto", "csv"),
    ],
)
def test_toolkit_version_and_mode_per_tree(
    name: str, toolkit: str | None, source: str | None, configured: str, mode: str
) -> None:
    runtime = collect_node(sysfs_root=tree(name)).container_runtime
    assert (runtime.toolkit_version, runtime.toolkit_version_source) == (toolkit, source)
    assert (runtime.mode_configured, runtime.mode) == (configured, mode)


def test_operator_install_versions_from_the_library_file() -> None:
    runtime = collect_node(sysfs_root=tree("ctk-operator")).container_runtime
    assert runtime.libnvidia_container_version == "1.17.5"
    assert (
        runtime.libnvidia_container_version_source
        == "/usr/local/nvidia/toolkit/libnvidia-container.so.1.17.5"
    )
    assert "package" in runtime.unknown["toolkit_version"]
    assert runtime.disable_require is True  # read from the operator's config path
    assert (runtime.containerd_nvidia_runtime, runtime.containerd_default_runtime) == (True, "nvidia")


def test_tegra_platform_resolves_auto_to_csv() -> None:
    runtime = collect_node(sysfs_root=tree("ctk-tegra")).container_runtime
    assert runtime.platform == "tegra"
    assert runtime.mode_reason == 'mode = "auto" on a Tegra platform resolves to "csv"'


def test_cdi_specs_name_their_driver() -> None:
    fresh = collect_node(sysfs_root=tree("ctk-jit-cdi")).container_runtime
    assert [(s.path, s.kind, s.driver_version, s.devices) for s in fresh.cdi_spec_details] == [
        ("/var/run/cdi/nvidia.yaml", "nvidia.com/gpu", "460.73.01", ["0", "all"])
    ]
    stale = collect_node(sysfs_root=tree("ctk-cdi-stale")).container_runtime
    assert [(s.path, s.driver_version) for s in stale.cdi_spec_details] == [
        ("/etc/cdi/nvidia.yaml", "450.80.02")
    ]


def test_engine_settings() -> None:
    runtime = collect_node(sysfs_root=tree("ctk-cdi-stale")).container_runtime
    assert (runtime.docker_nvidia_runtime, runtime.docker_default_runtime, runtime.docker_cdi) == (
        True,
        "runc",
        True,
    )
    assert runtime.unknown["containerd_cdi"] == "/etc/containerd/config.toml absent"
    legacy = collect_node(sysfs_root=tree("ctk-legacy")).container_runtime
    assert legacy.docker_cdi is None and "features.cdi" in legacy.unknown["docker_cdi"]
    jit = collect_node(sysfs_root=tree("ctk-jit-cdi")).container_runtime
    assert (jit.containerd_nvidia_runtime, jit.containerd_default_runtime, jit.containerd_cdi) == (
        True,
        "nvidia",
        True,
    )


def test_stale_cdi_spec_fails_and_a_fresh_one_does_not() -> None:
    stale = findings(diagnose(collect_node(sysfs_root=tree("ctk-cdi-stale"))))
    assert stale["GD-CTR-002"]["severity"] == "fail"
    assert "/etc/cdi/nvidia.yaml (driver 450.80.02)" in stale["GD-CTR-002"]["message"]
    assert "460.73.01" in stale["GD-CTR-002"]["message"]
    assert "GD-CTR-002" not in findings(diagnose(collect_node(sysfs_root=tree("ctk-jit-cdi"))))


def test_toolkit_cves_per_tree() -> None:
    assert (
        findings(diagnose(collect_node(sysfs_root=tree("ctk-cdi-stale"))))["GD-CTR-006"]["severity"] == "warn"
    )
    tegra = findings(diagnose(collect_node(sysfs_root=tree("ctk-tegra"))))
    assert "Fixed in 1.16.2" in tegra["GD-CTR-004"]["message"]
    operator = findings(diagnose(collect_node(sysfs_root=tree("ctk-operator"))))
    assert (
        "libnvidia-container 1.17.5" in operator["GD-CTR-006"]["evidence"]["derived.toolkit_release_source"]
    )
    clean = findings(diagnose(collect_node(sysfs_root=tree("ctk-legacy"))))
    assert not {"GD-CTR-004", "GD-CTR-005", "GD-CTR-006"} & set(clean)


# --- the in-cluster scan: host files under a root AND NVML -------------------------------


def test_host_root_scan_has_nvml_and_host_facts() -> None:
    node = in_cluster("ctk-jit-cdi")
    # from NVML (the library the runtime injected; replayed here)
    assert (node.driver.version, node.driver.cuda_version) == ("460.73.01", "11.2")
    assert len(node.topology.pairs) == 28 and node.topology.pairs[0].p2p_read == "ok"
    # from the host's files
    assert node.driver.kernel_module_version == "460.73.01"
    assert (node.container_runtime.toolkit_version, node.container_runtime.mode) == ("1.18.0", "jit-cdi")
    assert [s.driver_version for s in node.container_runtime.cdi_spec_details] == ["460.73.01"]
    assert node.host.hostname == "ctk-jit-cdi"
    assert node.origins["driver"] == "NVML (replayed snapshot)"
    assert node.origins["container_runtime"] == f"host files under {tree('ctk-jit-cdi')}"
    report = diagnose(node)
    assert report["node"]["driver"]["cuda_version"] == "11.2"
    assert report["node"]["container_runtime"]["mode"] == "jit-cdi"
    assert "GD-CTR-002" not in findings(report)


def test_sysfs_root_scan_stays_offline() -> None:
    node = collect_node(sysfs_root=tree("ctk-jit-cdi"))
    assert node.driver.cuda_version is None
    assert node.driver.unknown["cuda_version"] == "NVML not queried under --sysfs-root"
    assert node.topology.pairs == []
    assert node.origins["driver"] == f"recorded tree {tree('ctk-jit-cdi')}"


def test_scan_cli_host_root(tmp_path: Path) -> None:
    done = run_gpudoctor("scan", "--host-root", tree("ctk-cdi-stale"), "--format", "json", timeout=60)
    report = json.loads(done.stdout)
    assert done.returncode == 2 and done.stderr == ""
    runtime = report["node"]["container_runtime"]
    assert (runtime["toolkit_version"], runtime["mode"]) == ("1.17.4", "cdi")
    assert report["node"]["origins"]["container_runtime"].startswith("host files under ")
    # NVML is queried under --host-root (none on this machine), never under --sysfs-root.
    assert report["node"]["driver"]["unknown"]["cuda_version"] != "NVML not queried under --sysfs-root"


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("--host-root", "ctk-legacy", "--sysfs-root", "ctk-legacy"), 64, "cannot be combined"),
        (("--host-root", "nonexistent-tree"), 66, "no such directory (--host-root)"),
    ],
)
def test_scan_cli_root_errors(args: tuple[str, ...], code: int, text: str) -> None:
    argv = [tree(a) if a.startswith(("ctk", "nonexistent")) else a for a in args]
    done = run_gpudoctor("scan", *argv, timeout=60)
    assert done.returncode == code and text in done.stderr and len(done.stderr.splitlines()) == 1


# --- what NVIDIA_REQUIRE_* does per runtime mode (V100 R460 = CUDA 11.2) ------------------

CUDA124 = "nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64"
CUDA118 = "nvidia-cuda_11.8.0-runtime-ubuntu2204_amd64"


def requirement_findings(node_tree: str, image_name: str, **env: str) -> dict[str, dict[str, Any]]:
    return findings(diagnose(in_cluster(node_tree), image(image_name, **env)))


def test_legacy_mode_refuses_at_create() -> None:
    found = requirement_findings("ctk-legacy", CUDA124)
    req = found["GD-REQ-001"]
    assert req["severity"] == "fail"
    assert "refuses to create the container" in req["message"]
    assert "unsatisfied condition: cuda>=12.4" in req["message"]
    assert (req["evidence"]["runtime_mode"], req["evidence"]["requirement_enforced"]) == ("legacy", True)


def test_jit_cdi_mode_starts_then_cuda_fails() -> None:
    found = requirement_findings("ctk-jit-cdi", CUDA124)
    req = found["GD-REQ-001"]
    assert req["severity"] == "fail"
    assert "CUDA fails at initialisation with error 804" in req["message"]
    assert (req["evidence"]["runtime_mode"], req["evidence"]["requirement_enforced"]) == ("jit-cdi", False)
    assert found["GD-REQ-005"]["severity"] == "info"


def test_jit_cdi_mode_runs_what_minor_version_compatibility_carries() -> None:
    # CUDA 11.8 on R460 (CUDA 11.2): cuda>=11.8 is not met, but 11.x runs through minor version
    # compatibility, and jit-cdi never checks the requirement: the container runs.
    found = requirement_findings("ctk-jit-cdi", CUDA118)
    assert "GD-REQ-001" not in found
    assert "minor version compatibility" in found["GD-REQ-005"]["message"]
    legacy = requirement_findings("ctk-legacy", CUDA118)["GD-REQ-001"]
    assert legacy["severity"] == "fail" and legacy["evidence"]["requirement_enforced"] is True


def test_config_disable_require_is_honoured() -> None:
    found = requirement_findings("ctk-operator", CUDA124)  # legacy mode, disable-require = true
    assert found["GD-REQ-001"]["evidence"]["requirement_enforced"] is False
    assert "disable-require" in found["GD-REQ-005"]["message"]


def test_no_gpu_requested_is_honoured() -> None:
    found = requirement_findings("ctk-legacy", CUDA124, NVIDIA_VISIBLE_DEVICES="void")
    assert "GD-REQ-001" not in found
    assert "no GPU is requested" in found["GD-REQ-005"]["message"]
    # "none": the driver without a GPU; configure.c still checks cuda>=12.4 (and refuses).
    none = requirement_findings("ctk-legacy", CUDA124, NVIDIA_VISIBLE_DEVICES="none")
    assert none["GD-REQ-001"]["evidence"]["requirement_enforced"] is True


def test_mode_unknown_says_both() -> None:
    node = in_cluster("ctk-jit-cdi")
    node.container_runtime = ContainerRuntimeFacts(unknown={"mode": "not in nvidia-smi XML"})
    req = findings(diagnose(node, image(CUDA124)))["GD-REQ-001"]
    assert req["severity"] == "fail"
    assert "In legacy or csv mode the container is refused at create" in req["message"]
    assert "in cdi or jit-cdi mode" in req["message"]
    assert (req["evidence"]["runtime_mode"], req["evidence"]["requirement_enforced"]) == (None, None)


def test_legacy_cuda_version_parsed_as_the_node_toolkit_does() -> None:
    # CUDA_VERSION=11.08 (no NVIDIA_REQUIRE_CUDA): toolkit 1.17.8 (x/mod semver) cannot parse it and
    # aborts the start; a toolkit after v1.20.0 (Masterminds) reads cuda>=11.8.
    env = {"CUDA_VERSION": "11.08", "NVIDIA_REQUIRE_CUDA": "", "NVIDIA_VISIBLE_DEVICES": "all"}
    legacy = requirement_findings("ctk-legacy", CUDA118, **env)
    assert legacy["GD-REQ-004"]["severity"] == "fail"
    assert "nvidia-container-toolkit 1.17.8 cannot read" in legacy["GD-REQ-004"]["message"]
    node = in_cluster("ctk-legacy")
    node.container_runtime.toolkit_version = "1.21.0"
    newer = findings(diagnose(node, image(CUDA118, **env)))
    assert "GD-REQ-004" not in newer
    # The empty NVIDIA_REQUIRE_CUDA is passed on too (GetRequirements takes every value): always true.
    assert newer["GD-REQ-001"]["evidence"]["derived.image_require"] == ["", "cuda>=11.8"]


# --- pieces ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "toolkit", "platform", "mode"),
    [
        ("auto", "1.17.8", "nvml", "legacy"),
        ("auto", "1.18.0-rc.1", "nvml", "jit-cdi"),
        ("auto", "1.18.0", "unknown", "jit-cdi"),
        ("auto", "1.20.0", "tegra", "csv"),
        ("auto", None, "nvml", None),
        ("auto", None, "tegra", "csv"),
        ("cdi", None, "nvml", "cdi"),
        ("legacy", "1.19.0", "nvml", "legacy"),
        ("bogus", "1.19.0", "nvml", None),
        (None, "1.19.0", "nvml", None),
    ],
)
def test_resolve_mode(configured: str | None, toolkit: str | None, platform: str, mode: str | None) -> None:
    assert resolve_mode(configured, toolkit, platform)[0] == mode


def test_refresh_mode_for_what_ifs() -> None:
    runtime = ContainerRuntimeFacts(mode_configured="auto", toolkit_version="1.17.8", platform="nvml")
    refresh_mode(runtime)
    assert (runtime.mode, requirement_enforced(runtime.mode)) == ("legacy", True)
    runtime.toolkit_version = "1.18.1"
    refresh_mode(runtime)
    assert (runtime.mode, requirement_enforced(runtime.mode)) == ("jit-cdi", False)
    assert requirement_enforced(None) is None


def test_real_rpm_header_blob() -> None:
    import sqlite3

    path = TREES / "ctk-cdi-stale" / "var/lib/rpm/rpmdb.sqlite"
    with sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True) as connection:
        blobs = [bytes(b) for (b,) in connection.execute("SELECT blob FROM Packages")]
    names = sorted(rpm_header_strings(b)[1000] for b in blobs)
    assert names == ["libnvidia-container1", "nvidia-container-toolkit-base"]
    with pytest.raises(ValueError):
        rpm_header_strings(blobs[0][:40])


def test_dpkg_status_counts_installed_packages_only() -> None:
    text = (TREES / "ctk-legacy" / "var/lib/dpkg/status").read_text()
    assert dpkg_versions(text, ("nvidia-container-toolkit",)) == {"nvidia-container-toolkit": "1.17.8-1"}
    removed = text.replace("Status: install ok installed\nPriority: optional\nSection: utils", "Status: deinstall ok config-files\nPriority: optional\nSection: utils", 1)  # fmt: skip
    assert "nvidia-container-toolkit-base" not in dpkg_versions(removed, ("nvidia-container-toolkit-base",))
    assert upstream_version("1.18.0~rc.1-1") == "1.18.0-rc.1"
    assert upstream_version("1:1.17.8-1") == "1.17.8"


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("etc/docker/daemon.json", "[" * 100_000, "nested too deeply"),
        ("etc/docker/daemon.json", '{"runtimes": ' + "9" * 5000 + "}", "invalid JSON"),
        ("etc/containerd/config.toml", "a = " + "[" * 100_000, "not valid TOML"),
        ("etc/containerd/config.toml", "version = " + "9" * 5000, "not valid TOML"),
        ("etc/nvidia-container-runtime/config.toml", "x = " + "9" * 5000, "not valid TOML"),
    ],
)
def test_hostile_runtime_configs_fail_their_own_facts_only(
    tmp_path: Path, path: str, body: str, reason: str
) -> None:
    # The node's files are not ours: 100k-deep nesting or a 5,000-digit integer in one of
    # them fails the facts read from that file (was: the whole container probe failed).
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text(body)
    (tmp_path / "etc/docker").mkdir(parents=True, exist_ok=True)
    runtime = collect_node(sysfs_root=str(tmp_path)).container_runtime
    failed = {name: text for name, text in runtime.unknown.items() if reason in text}
    assert failed and all(path.split("/")[-1] in text for text in failed.values()), runtime.unknown
    assert not any("probe failed" in text for text in runtime.unknown.values()), runtime.unknown


def test_broken_files_are_unknown_not_errors(tmp_path: Path) -> None:
    (tmp_path / "etc/containerd").mkdir(parents=True)
    (tmp_path / "etc/containerd/config.toml").write_text("version = 2\n[plugins\n")
    runtime = ContainerRuntimeFacts()
    probe_containerd(FsRoot(tmp_path), runtime)
    assert runtime.containerd_nvidia_runtime is None and "not valid TOML" in runtime.unknown["containerd_cdi"]
    (tmp_path / "etc/containerd/config.toml").write_text(
        'version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd]\n'
    )
    runtime = ContainerRuntimeFacts()
    probe_containerd(FsRoot(tmp_path), runtime)
    assert (runtime.containerd_cdi, runtime.containerd_default_runtime) == (
        True,
        "runc",
    )  # containerd 2.x default
    (tmp_path / "spec.yaml").write_text("cdiVersion: 0.5.0\nkind: [unclosed\n")
    assert (read_spec(FsRoot(tmp_path), "/spec.yaml").error or "").startswith("not valid YAML")
    # A hostile spec (the node's files are not ours): an alias bomb whose devices each repeat
    # a mount list of a million aliases, 100k-deep nesting, an integer of 5,000 digits: each is
    # an unusable spec, not a hang or an internal error.
    bomb = "a: &m [" + ", ".join(["{hostPath: /x}"] * 3) + "]\n"
    for level in range(8):
        bomb += f"l{level}: &m{level} [" + ", ".join([f"*m{level - 1}" if level else "*m"] * 12) + "]\n"
    bomb += "devices: [" + ", ".join(["{name: g, containerEdits: {mounts: *m7}}"] * 12) + "]\n"
    for name, body in (("bomb", bomb), ("deep", "a: " + "[" * 100_000), ("int", "a: " + "9" * 5000)):
        (tmp_path / f"{name}.yaml").write_text(body)
        error = read_spec(FsRoot(tmp_path), f"/{name}.yaml").error or ""
        assert error.startswith("not valid YAML"), (name, error)
    text = (TREES / "ctk-jit-cdi" / "var/run/cdi/nvidia.yaml").read_text()
    (tmp_path / "two.yaml").write_text(
        text.replace("libvdpau_nvidia.so.460.73.01", "libnvidia-ml.so.450.80.02")
    )
    assert (
        read_spec(FsRoot(tmp_path), "/two.yaml").error
        == "names several driver versions: 450.80.02, 460.73.01"
    )


def test_facts_round_trip() -> None:
    node = in_cluster("ctk-jit-cdi")
    assert NodeFacts.from_dict(json.loads(json.dumps(node.to_dict()))) == node


def test_fleet_what_if_toolkit_re_resolves_auto() -> None:
    from gpudoctor.fleet.whatif import Change, changed_node

    node = collect_node(sysfs_root=tree("ctk-operator"))  # mode auto, libnvidia-container 1.17.5: legacy
    assert node.container_runtime.mode == "legacy"
    changed, facts, _ = changed_node(node, [Change("toolkit", "1.18.0")])
    assert (changed.container_runtime.mode, facts["container_runtime.mode"]) == ("jit-cdi", "jit-cdi")
    pinned, facts, _ = changed_node(
        collect_node(sysfs_root=tree("ctk-legacy")), [Change("toolkit", "1.18.0")]
    )
    assert pinned.container_runtime.mode == "legacy"  # configured explicitly: stays


def test_fleet_what_if_runtime_mode_changes_requirement_enforcement() -> None:
    from gpudoctor.errors import UsageError
    from gpudoctor.fleet.whatif import Change, changed_node, parse_change

    node = collect_node(sysfs_root=tree("ctk-legacy"))
    assert node.container_runtime.mode == "legacy"
    changed, facts, _ = changed_node(node, [parse_change("runtime-mode=CDI")])
    assert changed.container_runtime.mode == "cdi" and facts["container_runtime.mode"] == "cdi"
    assert requirement_enforced(changed.container_runtime.mode) is False
    # "auto" resolves as the toolkit does for the node's release (1.18+: jit-cdi).
    auto, _, _ = changed_node(node, [Change("toolkit", "1.18.0"), Change("runtime-mode", "auto")])
    assert auto.container_runtime.mode == "jit-cdi"
    with pytest.raises(UsageError):
        parse_change("runtime-mode=docker")
