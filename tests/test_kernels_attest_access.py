# ruff: noqa: F401, F811 - pytest fixtures imported from tests.support.services
"""Kernel attestations as users reach registries, against REAL registries (Debian
docker-registry) on 127.0.0.1: through a real forward proxy (tinyproxy), past a 429 with
Retry-After on the attestation lookup, with a mirror that must never be written to, from
many writers at once, and attached from a local Docker engine (real dockerd) or an archive
instead of the registry's own layers."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gpudoctor.images import Fetcher, RegistryOptions
from gpudoctor.kernels.artifacts import attach as attach_scan
from gpudoctor.kernels.artifacts import referrers_tag
from gpudoctor.kernels.sources import scan_targets
from tests.kernels_support import FATBINS
from tests.support.cli import run_gpudoctor
from tests.support.relay import relaying
from tests.support.services import (
    AUTH_PASSWORD,
    AUTH_USER,
    OCI_INDEX,
    Dockerd,
    ForwardProxy,
    Registry,
    auth_registry,
    dockerd,
    forward_proxy,
    push_image,
    registry,
    running_registry,
)
from tests.test_images_access import PROXY_VARIABLES, connects_through
from tests.test_kernels_attest import attach, fa2_image, h800_node, layer_gets, private_fa2
from tests.test_kernels_preflight import docker_save, kernel_image, kernel_rules, preflight

pytestmark = pytest.mark.services
REPO = Path(__file__).resolve().parent.parent
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent"}


def listed(registry_: Registry, repository: str, subject: str) -> set[str]:
    """The artifact digests the subject's referrers tag lists (empty when there is no tag)."""
    status, _, body = registry_.request(
        "GET", f"/v2/{repository}/manifests/{referrers_tag(subject)}", headers={"Accept": OCI_INDEX}
    )
    return {m["digest"] for m in json.loads(body)["manifests"]} if status == 200 else set()


def attached_digest(stderr: str) -> str:
    found = re.search(r"attached kernels attestation (sha256:[0-9a-f]{64})", stderr)
    assert found, stderr
    return found.group(1)


def test_attach_lookup_and_pull_layers_through_a_forward_proxy(
    auth_registry: Registry, forward_proxy: ForwardProxy, tmp_path: Path
) -> None:
    """TLS + Basic auth behind HTTPS_PROXY: every request of the three commands is tunnelled."""
    image, reference, tls, credentials = private_fa2(auth_registry, "proxied/fa2", tmp_path)
    env = {name: "" for name in PROXY_VARIABLES}
    env.update(credentials, HTTPS_PROXY=forward_proxy.url, https_proxy=forward_proxy.url)
    node = str(h800_node(tmp_path))
    tunnels = connects_through(forward_proxy, auth_registry.host)

    done = run_gpudoctor("kernels", reference, "--attach", *tls, cwd=REPO, env=env, timeout=300)
    assert "attached kernels attestation" in done.stderr, done.stderr
    assert connects_through(forward_proxy, auth_registry.host) > tunnels
    tunnels = connects_through(forward_proxy, auth_registry.host)

    mark = auth_registry.log_mark()
    done = run_gpudoctor("preflight", reference, "--node", node, "--format", "json", *tls, cwd=REPO, env=env)
    report = json.loads(done.stdout)
    assert report["image"]["kernels"]["source"]["from"] == "attestation", done.stderr
    assert "GD-KERN-002" in kernel_rules(report)
    assert layer_gets(auth_registry.log_since(mark), image) == []
    assert connects_through(forward_proxy, auth_registry.host) > tunnels
    tunnels = connects_through(forward_proxy, auth_registry.host)

    mark = auth_registry.log_mark()
    done = run_gpudoctor("preflight", reference, "--node", node, "--format", "json", "--deep", "--pull-layers",
                         *tls, cwd=REPO, env=env, timeout=300)  # fmt: skip
    report = json.loads(done.stdout)
    assert "downloading 1 layers" in done.stderr and "GD-KERN-002" in kernel_rules(report), done.stderr
    assert not report["image"]["kernels"]["source"]  # from the layers, not the attestation
    assert layer_gets(auth_registry.log_since(mark), image) != []  # the layer came through the tunnel
    assert connects_through(forward_proxy, auth_registry.host) > tunnels
    assert AUTH_PASSWORD not in forward_proxy.log_text() and "/v2/" not in forward_proxy.log_text()


def test_pull_layers_through_a_plain_http_proxy_fetches_the_blob_by_the_proxy(
    registry: Registry, forward_proxy: ForwardProxy, tmp_path: Path
) -> None:
    image = kernel_image()
    push_image(registry, "proxied/torch", "1", image)
    env = {name: "" for name in PROXY_VARIABLES}
    env.update(NO_ENGINE)
    code, report, stderr = preflight(f"{registry.host}/proxied/torch:1", h800_node(tmp_path), "--deep",
                                     "--pull-layers", "--proxy", forward_proxy.url)  # fmt: skip
    assert report["image"]["kernels"]["binaries"], stderr
    layer = json.loads(image.manifest)["layers"][0]["digest"]
    assert f"GET http://{registry.host}/v2/proxied/torch/blobs/{layer} " in forward_proxy.log_text()


def test_a_429_with_retry_after_on_the_lookup_is_waited_out(registry: Registry, tmp_path: Path) -> None:
    image = fa2_image()
    subject = push_image(registry, "kern/limited", "1", image)
    code, stderr = attach(registry, f"{registry.host}/kern/limited:1")
    assert "attached kernels attestation" in stderr, stderr
    tag_head = f"HEAD /v2/kern/limited/manifests/{referrers_tag(subject)}"
    with relaying(registry.host, refusals=[(429, {"Retry-After": "1"})], refuse_only=tag_head) as relay:
        code, report, stderr = preflight(f"{relay.host}/kern/limited:1", h800_node(tmp_path))
    assert report["image"]["kernels"]["source"]["from"] == "attestation", stderr
    assert "GD-KERN-002" in kernel_rules(report) and "warning" not in stderr
    assert relay.requests.count(tag_head) == 2  # refused once, asked again after Retry-After


def test_attach_writes_to_the_registry_never_to_its_mirror(registry: Registry, tmp_path: Path) -> None:
    image = fa2_image()
    with running_registry() as mirror:
        subject = push_image(registry, "kern/mirrored", "1", image)
        push_image(mirror, "kern/mirrored", "1", image)
        mark = mirror.log_mark()
        done = run_gpudoctor(
            "kernels", f"{registry.host}/kern/mirrored:1", "--attach",
            "--registry-mirror", f"{registry.host}=http://{mirror.host}",
            cwd=REPO, env=NO_ENGINE, timeout=300,
        )  # fmt: skip
        digest = attached_digest(done.stderr)
        written = [
            line for line in mirror.log_since(mark).splitlines() if re.search(r'"(PUT|POST|PATCH) ', line)
        ]
        assert written == [] and "blobs/sha256" in mirror.log_since(mark)  # the mirror served the layer
        assert listed(registry, "kern/mirrored", subject) == {digest}
        assert listed(mirror, "kern/mirrored", subject) == set()


def test_concurrent_attaches_to_one_subject_all_end_up_listed(registry: Registry) -> None:
    """Read-merge-write of the referrers tag with a read-back: no writer's entry is lost."""
    subject = push_image(registry, "kern/race", "1", fa2_image())
    fixtures = sorted((FATBINS / "bin").glob("*.so"))[:6]
    scans = [scan_targets([str(path)]) for path in fixtures]
    options = RegistryOptions(insecure_registries=(registry.host,))

    def one(scan: object) -> str:
        with Fetcher(options) as fetcher:
            client = fetcher.registries.client(registry.host)
            return attach_scan(client, "kern/race", subject, scan)[0]  # type: ignore[arg-type]

    with ThreadPoolExecutor(len(scans)) as pool:
        digests = set(pool.map(one, scans))
    assert len(digests) == len(scans) >= 4
    assert listed(registry, "kern/race", subject) == digests


def test_attach_from_the_engine_and_from_an_archive(
    registry: Registry, dockerd: Dockerd, tmp_path: Path
) -> None:
    """The layers are read where the image is; the subject is the registry's manifest."""
    image = fa2_image()
    reference = f"{registry.host}/kern/local:1"
    subject = push_image(registry, "kern/local", "1", image)
    archive = docker_save(tmp_path / "save.tar", reference, image)
    dockerd.load(archive)

    mark = registry.log_mark()
    done = run_gpudoctor(
        "kernels", reference, "--attach", cwd=REPO, env={"DOCKER_HOST": dockerd.host}, timeout=300
    )
    from_engine = attached_digest(done.stderr)
    assert f"to {subject} (referrers tag" in done.stderr
    assert layer_gets(registry.log_since(mark), image) == []  # read from the engine, not downloaded

    mark = registry.log_mark()
    done = run_gpudoctor("kernels", str(archive), "--attach", reference, cwd=REPO, env=NO_ENGINE, timeout=300)
    from_archive = attached_digest(done.stderr)
    assert layer_gets(registry.log_since(mark), image) == []
    assert {from_engine, from_archive} <= listed(registry, "kern/local", subject)

    code, report, stderr = preflight(reference, h800_node(tmp_path))
    assert report["image"]["kernels"]["source"]["from"] == "attestation", stderr
    assert "GD-KERN-002" in kernel_rules(report)


def test_a_local_image_unlike_the_registrys_is_refused(registry: Registry, tmp_path: Path) -> None:
    subject = push_image(registry, "kern/other", "1", fa2_image())
    archive = docker_save(tmp_path / "other.tar", "other:1", kernel_image())  # other layers
    done = run_gpudoctor("kernels", str(archive), "--attach", f"{registry.host}/kern/other:1", cwd=REPO,
                         env=NO_ENGINE, timeout=300)  # fmt: skip
    assert done.returncode == 65 and "their layers differ" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert listed(registry, "kern/other", subject) == set()


def test_an_archive_needs_the_reference_to_attach_to(tmp_path: Path) -> None:
    archive = docker_save(tmp_path / "save.tar", "app:1")
    done = run_gpudoctor("kernels", str(archive), "--attach", cwd=REPO, env=NO_ENGINE)
    assert done.returncode == 64 and "--attach REGISTRY/REPO:TAG" in done.stderr, done.stderr


@pytest.mark.parametrize("fault", ["other bytes", "one byte more"])
def test_a_pulled_layer_unlike_its_descriptor_is_bad_data(
    registry: Registry, tmp_path: Path, fault: str
) -> None:
    image = kernel_image()
    push_image(registry, "kern/badlayer", "1", image)
    layer = json.loads(image.manifest)["layers"][0]
    body = bytes(layer["size"]) if fault == "other bytes" else image.layers[0] + b"x"
    blob_get = f"GET /v2/kern/badlayer/blobs/{layer['digest']}"
    with relaying(registry.host, refusals=[(200, {}, body)], refuse_only=blob_get) as relay:
        code, _, stderr = preflight(
            f"{relay.host}/kern/badlayer:1", h800_node(tmp_path), "--deep", "--pull-layers"
        )
    expected = "does not match its digest" if fault == "other bytes" else "over the"
    assert code == 65 and expected in stderr, stderr
    assert len(stderr.strip().splitlines()) == 2 and "Traceback" not in stderr  # the download note, the error


def test_several_images_are_looked_up_together(registry: Registry, tmp_path: Path) -> None:
    refs = []
    for name in ("kern/many-a", "kern/many-b"):
        push_image(registry, name, "1", fa2_image())
        refs.append(f"{registry.host}/{name}:1")
        attach(registry, refs[-1])
    push_image(registry, "kern/many-c", "1", kernel_image())
    refs.append(f"{registry.host}/kern/many-c:1")
    done = run_gpudoctor("preflight", *refs, "--node", str(h800_node(tmp_path)), "--format", "json", cwd=REPO,
                         env=NO_ENGINE)  # fmt: skip
    reports = json.loads(done.stdout)
    sources = [(r["image"]["kernels"] or {}).get("source", {}).get("from") for r in reports]
    assert sources == ["attestation", "attestation", None], done.stderr
    assert "no gpudoctor kernels attestation" in reports[2]["image"]["unknown"]["kernels"]
