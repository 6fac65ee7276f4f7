"""Kernel attestations against a real registry on 127.0.0.1 (Debian's docker-registry 2.8).

`kernels IMAGE --attach` scans the image and pushes the scan next to it; `preflight IMAGE`
(no --deep) then judges kernel coverage from it without reading a layer. The image holds a
FlashAttention-2-style extension built by nvcc for Blackwell only (sm_100f, sm_120f cubins).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.kernels import attest
from gpudoctor.kernels.artifacts import referrers_tag
from tests.support.cli import run_gpudoctor
from tests.support.services import (
    AUTH_PASSWORD,
    AUTH_USER,
    BuiltImage,
    Registry,
    auth_registry,  # noqa: F401 - pytest fixture
    digest_of,
    push_image,
    registry,  # noqa: F401 - pytest fixture
)
from tests.test_kernels_preflight import SITE, kernel_image, kernel_rules, preflight

pytestmark = pytest.mark.services
REPO = Path(__file__).resolve().parent.parent
FA2_FILES = {
    SITE + "torch/lib/libtorch_cuda.so": "multi_cubin_ptx.so",  # sm_75..sm_90: torch is fine on Hopper
    SITE + "flash_attn_2_cuda.cpython-312-x86_64-linux-gnu.so": "family_100f_120f.so",  # Blackwell only
}
DIST_INFO = SITE + "flash_attn-2.8.3.dist-info/"
FA2_META = {
    DIST_INFO + "METADATA": b"Metadata-Version: 2.1\nName: flash_attn\nVersion: 2.8.3\n\n",
    # pip's record of what the wheel installed: the extension module sits directly in site-packages
    DIST_INFO + "RECORD": b"flash_attn_2_cuda.cpython-312-x86_64-linux-gnu.so,sha256=x,1\n",
}


def fa2_image() -> BuiltImage:
    return kernel_image(FA2_FILES, FA2_META)


def h800_node(tmp_path: Path) -> Path:
    """The recorded A100 node with its GPU replaced by an H800 (GH100, PCI 10de:2324, CC 9.0)."""
    node = json.loads((REPO / "fixtures/facts/nodes/A100-SXM4-80GB_535.54.03.json").read_text())
    node = node.get("node", node)
    node["host"]["cpu_arch"] = "x86_64"
    for gpu in node["gpus"]:
        gpu.update(name="NVIDIA H800", pci_device_id="2324", mig_mode="disabled", mig_mode_pending="disabled")
    path = tmp_path / "h800.json"
    path.write_text(json.dumps({"node": node}))
    return path


def attach(registry_: Registry, image: str) -> tuple[int, str]:
    done = run_gpudoctor(
        "kernels",
        image,
        "--attach",
        "--insecure-registry",
        registry_.host,
        "--format",
        "json",
        cwd=REPO,
        timeout=300,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stderr


def layer_gets(log: str, image: BuiltImage) -> list[str]:
    return [line for line in log.splitlines() if any(digest_of(layer) in line for layer in image.layers)]


def test_attached_scan_judges_the_image_before_any_layer_is_read(registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    image = fa2_image()
    subject = push_image(registry, "kern/fa2", "1", image)
    reference = f"{registry.host}/kern/fa2:1"
    code, stderr = attach(registry, reference)
    assert code in (0, 1, 2, 3), stderr
    # Debian's docker-registry has no referrers API: the tag scheme keeps the list.
    assert f"to {subject} (referrers tag {referrers_tag(subject)})" in stderr, stderr

    mark = registry.log_mark()
    code, report, stderr = preflight(reference, h800_node(tmp_path), "--insecure-registry", registry.host)
    log = registry.log_since(mark)
    assert "GD-KERN-002" in kernel_rules(report), (report.get("findings"), stderr)
    fa2 = next(f for f in report["findings"] if f["rule_id"] == "GD-KERN-002")
    assert "flash-attn 2.8.3 (fa2)" in fa2["message"] and "sm_90" in fa2["message"]
    assert "GD-KERN-001" not in kernel_rules(report)  # torch has sm_90
    source = report["image"]["kernels"]["source"]
    assert source["from"] == "attestation" and source["found_by"] == f"referrers tag {referrers_tag(subject)}"
    assert source["attestation"].startswith("sha256:") and source["tool_version"]
    assert "layers were not read" in source["not_known"]
    assert layer_gets(log, image) == [], "a layer blob was fetched"
    assert "/referrers/" in log or referrers_tag(subject) in log


def test_without_attachment_kernel_facts_stay_unknown(registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    image = fa2_image()
    push_image(registry, "kern/fa2-bare", "1", image)
    mark = registry.log_mark()
    _, report, _ = preflight(
        f"{registry.host}/kern/fa2-bare:1", h800_node(tmp_path), "--insecure-registry", registry.host
    )
    assert report["image"]["kernels"] is None and kernel_rules(report) == set()
    assert "no gpudoctor kernels attestation" in report["image"]["unknown"]["kernels"]
    assert layer_gets(registry.log_since(mark), image) == []


def push_attestation(registry_: Registry, repository: str, subject: str, document: bytes, named: str) -> str:
    """An artifact in the tag-scheme list of `subject` whose manifest names `named` as its subject."""
    registry_.push_blob(repository, attest.EMPTY_JSON)
    blob = registry_.push_blob(repository, document)
    described = {
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "digest": named,
        "size": 1,
    }
    manifest = attest.manifest(blob, len(document), described, "2026-12-04T00:00:00Z")
    digest = registry_.push_manifest(repository, digest_of(manifest), manifest, attest.OCI_MANIFEST)
    index = {
        "schemaVersion": 2,
        "mediaType": attest.OCI_INDEX,
        "manifests": [
            {
                "mediaType": attest.OCI_MANIFEST,
                "digest": digest,
                "size": len(manifest),
                "artifactType": attest.ARTIFACT_TYPE,
            }
        ],
    }
    registry_.push_manifest(repository, referrers_tag(subject), json.dumps(index).encode(), attest.OCI_INDEX)
    return digest


def scan_document(subject: str, schema: str = attest.SCHEMA_VERSION) -> bytes:
    from gpudoctor.kernels.sources import scan_targets

    scan = scan_targets([str(REPO / "fixtures/fatbins/bin/family_100f_120f.so")])
    body: dict[str, Any] = json.loads(attest.document(scan, subject))
    body["schema_version"] = schema
    return json.dumps(body).encode()


@pytest.mark.parametrize("fault", ["newer schema", "wrong subject"])
def test_an_untrustworthy_attestation_is_ignored_with_one_warning(
    registry: Registry,  # noqa: F811
    tmp_path: Path,
    fault: str,
) -> None:
    image = fa2_image()
    repository = f"kern/fa2-{fault.replace(' ', '-')}"
    subject = push_image(registry, repository, "1", image)
    other = "sha256:" + "0" * 64
    if fault == "newer schema":
        digest = push_attestation(registry, repository, subject, scan_document(subject, "2.0"), subject)
        expected = "schema '2.0' is not one this gpudoctor reads (1.0)"
    else:
        digest = push_attestation(registry, repository, subject, scan_document(other), other)
        expected = f"its subject {other} is not this image ({subject})"
    code, report, stderr = preflight(
        f"{registry.host}/{repository}:1", h800_node(tmp_path), "--insecure-registry", registry.host
    )
    warnings = [line for line in stderr.splitlines() if "warning" in line]
    assert warnings == [f"gpudoctor: warning: kernel attestation {digest[:19]} ignored: {expected}"], stderr
    assert report["image"]["kernels"] is None and kernel_rules(report) == set()


def private_fa2(
    auth_registry_: Registry, repository: str, tmp_path: Path
) -> tuple[BuiltImage, str, tuple[str, str], dict[str, str]]:
    """fa2_image() pushed to the htpasswd + TLS registry: (image, reference, the --ca-bundle
    option, an environment whose Docker config holds the credentials and has no engine)."""
    assert auth_registry_.tls is not None
    image = fa2_image()
    push_image(auth_registry_, repository, "1", image)
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(
        json.dumps({"auths": {auth_registry_.host: {"username": AUTH_USER, "password": AUTH_PASSWORD}}})
    )
    env = {"DOCKER_CONFIG": str(tmp_path / "docker"), "DOCKER_HOST": "unix:///nonexistent"}
    return (
        image,
        f"{auth_registry_.host}/{repository}:1",
        ("--ca-bundle", str(auth_registry_.tls.ca_cert)),
        env,
    )


def test_attach_and_read_back_over_tls_with_basic_auth(auth_registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    """The htpasswd + TLS registry: credentials from the Docker config, the CA from --ca-bundle."""
    image, reference, tls, env = private_fa2(auth_registry, "private/fa2", tmp_path)
    done = run_gpudoctor("kernels", reference, "--attach", *tls, cwd=REPO, env=env, timeout=300)
    assert "attached kernels attestation" in done.stderr, done.stderr
    mark = auth_registry.log_mark()
    done = run_gpudoctor(
        "preflight",
        reference,
        "--node",
        str(h800_node(tmp_path)),
        "--format",
        "json",
        *tls,
        cwd=REPO,
        env=env,
    )
    report = json.loads(done.stdout)
    assert "GD-KERN-002" in kernel_rules(report), done.stderr
    assert report["image"]["kernels"]["source"]["from"] == "attestation"
    assert layer_gets(auth_registry.log_since(mark), image) == []
