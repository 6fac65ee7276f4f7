"""deploy/: Kubernetes manifests valid against a pinned API schema; the Slurm health check drains on fail."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "deploy" / "kubernetes" / "gpudoctor.yaml"
HEALTHCHECK = REPO / "deploy" / "slurm" / "gpudoctor-healthcheck.sh"
XML = REPO / "fixtures" / "fleets" / "nvidia-smi"
KUBERNETES_VERSION = "1.31.0"  # pinned: oldest minor still common in managed clusters


def documents() -> list[dict]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def daemonset() -> dict:
    (found,) = [doc for doc in documents() if doc["kind"] == "DaemonSet"]
    return found


def test_every_manifest_is_valid_for_the_pinned_kubernetes_version() -> None:
    for doc in documents():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_daemonset() -> None:
    broken = copy.deepcopy(daemonset())
    broken["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["readonly"] = True  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_daemonset_runs_only_on_gpu_nodes() -> None:
    spec = daemonset()["spec"]["template"]["spec"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    keys = {expr["key"] for term in terms for expr in term["matchExpressions"]}
    assert keys == {"nvidia.com/gpu.present", "feature.node.kubernetes.io/pci-10de.present"}


def test_host_mounts_are_read_only_except_the_output_directories() -> None:
    spec = daemonset()["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    writable = {m["name"] for m in container["volumeMounts"] if not m.get("readOnly")} & set(host_paths)
    assert {host_paths[name] for name in writable} == {
        "/var/lib/gpudoctor",
        "/var/lib/node_exporter/textfile",
        "/etc/kubernetes/node-feature-discovery/features.d",
    }
    assert {"/proc/driver/nvidia", "/sys"} <= set(host_paths.values())
    # the container stack: toolkit config, engines, CDI specs, package databases
    assert {"/etc/nvidia-container-runtime", "/etc/containerd", "/etc/cdi", "/var/run/cdi", "/var/lib/dpkg",
            "/var/lib/rpm"} <= set(host_paths.values())  # fmt: skip
    assert container["securityContext"]["privileged"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_daemonset_writes_the_textfile_and_the_nfd_feature_file() -> None:
    (container,) = daemonset()["spec"]["template"]["spec"]["containers"]
    script = container["args"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert f"report={mounts['reports']}/report.json" in script
    assert 'gpudoctor scan --host-root /host --format json --output "$report"' in script
    assert f"--format prometheus \\\n      --output {mounts['textfile']}/gpudoctor.prom" in script
    assert f"--format nfd \\\n      --output {mounts['features-d']}/gpudoctor" in script


FAIL_RULE = """kind: rules
rules:
  - id: GD-SITE-901
    title: Site policy forbids driver branches below 600
    severity: {severity}
    applies_to: node
    test: {{driver.branch: {{lt: 600}}}}
    message: "driver {{driver.version}} is below the site minimum"
    fix: Upgrade the driver.
    source: field report
"""


def run_healthcheck(tmp_path: Path, severity: str | None, **env: str) -> subprocess.CompletedProcess[str]:
    args = f"--from-nvidia-smi {XML / 'B200_580.65.06.xml'}"
    if severity:
        rules = tmp_path / "rules"
        rules.mkdir(exist_ok=True)
        (rules / "site.yaml").write_text(FAIL_RULE.format(severity=severity))
        args += f" --rules {rules}"
    environment = {
        **os.environ,
        "GPUDOCTOR": f"{sys.executable} -m gpudoctor",
        "GPUDOCTOR_ARGS": args,
        "GPUDOCTOR_DRY_RUN": "1",
        "NODENAME": "gpu-042",
        **env,
    }
    return subprocess.run(
        ["sh", str(HEALTHCHECK)], capture_output=True, text=True, timeout=120, env=environment
    )


def test_failing_node_is_drained_with_the_one_line_reason(tmp_path: Path) -> None:
    result = run_healthcheck(tmp_path, "fail")
    assert result.returncode == 0
    assert "DRY-RUN scontrol update NodeName=gpu-042 State=DRAIN Reason=gpudoctor: FAIL: " in result.stdout
    assert "(GD-SITE-901)" in result.stdout


def test_prolog_mode_also_fails_the_prolog(tmp_path: Path) -> None:
    result = run_healthcheck(tmp_path, "fail", GPUDOCTOR_MODE="prolog")
    assert result.returncode == 1
    assert "State=DRAIN" in result.stdout


def test_warning_is_logged_not_drained(tmp_path: Path) -> None:
    result = run_healthcheck(tmp_path, "warn")
    assert result.returncode == 0
    assert "scontrol" not in result.stdout
    assert result.stdout.startswith("WARN: ")


def test_healthy_node_is_resumed_only_from_our_own_drain(tmp_path: Path) -> None:
    ours = run_healthcheck(tmp_path, None, GPUDOCTOR_CURRENT_REASON="gpudoctor: FAIL: old")
    other = run_healthcheck(tmp_path, None, GPUDOCTOR_CURRENT_REASON="disk replaced by ops")
    verdict_line = ours.stdout.splitlines()[-1]
    if not verdict_line.startswith(("OK", "INFO")):
        pytest.fail(f"the B200 fixture is expected to pass: {ours.stdout}")
    assert "State=RESUME" in ours.stdout
    assert "scontrol" not in other.stdout


def test_a_broken_gpudoctor_never_drains(tmp_path: Path) -> None:
    result = run_healthcheck(tmp_path, None, GPUDOCTOR=f"{sys.executable} -m gpudoctor --no-such-option")
    assert result.returncode == 0
    assert "scontrol" not in result.stdout
    assert "could not run (exit 64)" in result.stderr


def test_daemonset_loop_writes_all_three_files(tmp_path: Path) -> None:
    """One iteration of the container's script, with /host pointed at an empty host tree:
    no driver there, so the verdict is unknown, and every output says so."""
    (container,) = daemonset()["spec"]["template"]["spec"]["containers"]
    script = (
        container["args"][0]
        .replace("/host", str(tmp_path))
        .replace('sleep "$SCAN_INTERVAL_SECONDS"', "break")
    )
    for directory in ("gpudoctor", "textfile", "features.d"):
        (tmp_path / directory).mkdir()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "NODE_NAME": "gpu-007"}
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert "gpu-007 gpudoctor scan exit" in result.stdout, result.stderr
    from prometheus_client.parser import text_string_to_metric_families

    report = json.loads((tmp_path / "gpudoctor" / "report.json").read_text())
    families = {
        f.name: f
        for f in text_string_to_metric_families((tmp_path / "textfile" / "gpudoctor.prom").read_text())
    }
    current = [s.labels["state"] for s in families["gpudoctor_verdict"].samples if s.value == 1]
    assert current == [report["verdict"]]
    features = (tmp_path / "features.d" / "gpudoctor").read_text()
    assert f"gpudoctor.feature.node.kubernetes.io/verdict={report['verdict']}" in features.splitlines()
