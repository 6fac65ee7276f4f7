# ruff: noqa: F401, F811 - pytest fixtures imported from tests.support.services
"""Registry access as users need it, against REAL registries (Debian docker-registry) on
127.0.0.1: a real forward proxy (tinyproxy) set through HTTPS_PROXY / HTTP_PROXY / --proxy,
mirrors from containerd hosts.toml, daemon.json and --registry-mirror, 429 with
Retry-After from a relay in front of the registry, the documented exit codes through the
CLI, platforms an image lacks, many images at once, and --deep on a remote image."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.errors import InputMissing, ServiceUnavailable
from gpudoctor.images import Fetcher, RegistryOptions, fetch_image
from tests.support.cli import run_gpudoctor
from tests.support.relay import relaying
from tests.support.services import (
    AUTH_PASSWORD,
    AUTH_USER,
    OCI_MANIFEST,
    ForwardProxy,
    Registry,
    auth_registry,
    build_image,
    canonical,
    digest_of,
    forward_proxy,
    free_port,
    push_image,
    push_index,
    registry,
    running_registry,
)

pytestmark = pytest.mark.services
REPO = Path(__file__).resolve().parent.parent
XML = REPO / "fixtures" / "nvidia-smi" / "A100-SXM4-80GB_535.54.03.xml"
ENV = {"CUDA_VERSION": "12.4.1", "NVIDIA_REQUIRE_CUDA": "cuda>=12.4"}
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
)


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def mirror() -> Any:
    with running_registry() as reg:
        yield reg


def connects_through(proxy: ForwardProxy, host: str) -> int:
    return len(re.findall(rf"Request \(file descriptor \d+\): CONNECT {re.escape(host)} ", proxy.log_text()))


# --- proxies --------------------------------------------------------------------------------


def test_tls_registry_with_credentials_through_https_proxy(
    auth_registry: Registry,
    forward_proxy: ForwardProxy,
    no_proxy_environment: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    push_image(auth_registry, "proxied/cuda", "1", build_image(ENV))
    auth = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": auth}}}))
    no_proxy_environment.setenv("DOCKER_CONFIG", str(tmp_path))
    no_proxy_environment.setenv("HTTPS_PROXY", forward_proxy.url)
    assert auth_registry.tls is not None
    ca = str(auth_registry.tls.ca_cert)
    facts = fetch_image(f"{auth_registry.host}/proxied/cuda:1", source="registry", ca_bundle=ca)
    assert facts.cuda_version == "12.4.1"
    tunnels = connects_through(forward_proxy, auth_registry.host)
    assert tunnels >= 1  # TLS end to end: the proxy saw a CONNECT, never a path or a header
    assert "/v2/" not in forward_proxy.log_text() and AUTH_PASSWORD not in forward_proxy.log_text()
    # NO_PROXY names the registry: no new tunnel
    no_proxy_environment.setenv("NO_PROXY", "127.0.0.1")
    assert fetch_image(f"{auth_registry.host}/proxied/cuda:1", source="registry", ca_bundle=ca).digest
    assert connects_through(forward_proxy, auth_registry.host) == tunnels


def test_plain_http_registry_through_the_proxy_option(
    registry: Registry, forward_proxy: ForwardProxy, no_proxy_environment: pytest.MonkeyPatch
) -> None:
    push_image(registry, "proxied/plain", "1", build_image(ENV))
    options = RegistryOptions(insecure_registries=(registry.host,), proxy=forward_proxy.url)
    assert fetch_image(f"{registry.host}/proxied/plain:1", source="registry", options=options).digest
    assert f"GET http://{registry.host}/v2/proxied/plain/manifests/1 " in forward_proxy.log_text()


def test_a_proxy_that_is_not_there_is_unavailable(
    registry: Registry, no_proxy_environment: pytest.MonkeyPatch
) -> None:
    options = RegistryOptions(insecure_registries=(registry.host,), proxy=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ServiceUnavailable, match="proxy") as err:
        fetch_image(f"{registry.host}/proxied/plain:1", source="registry", options=options)
    assert err.value.exit_code == 69


# --- mirrors ------------------------------------------------------------------------------


def hosts_toml(root: Path, namespace: str, text: str) -> Path:
    directory = root / "etc" / "containerd" / "certs.d" / namespace
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.toml").write_text(text)
    return root


def test_a_hosts_toml_mirror_answers_first_and_the_report_names_it(
    registry: Registry, mirror: Registry, tmp_path: Path
) -> None:
    push_image(mirror, "mirrored/cuda", "1", build_image(ENV))  # only the mirror has it
    root = hosts_toml(tmp_path, registry.host, f'server = "http://{registry.host}"\n\n'
                      f'[host."http://{mirror.host}"]\n  capabilities = ["pull", "resolve"]\n')  # fmt: skip
    mark = mirror.log_mark()
    with Fetcher(RegistryOptions(host_root=str(root))) as fetcher:
        facts = fetcher.fetch(f"{registry.host}/mirrored/cuda:1", source="registry")
    assert facts.cuda_version == "12.4.1"
    assert (
        facts.source_endpoint == f"http://{mirror.host} (/etc/containerd/certs.d/{registry.host}/hosts.toml)"
    )
    assert f"ns={registry.host}" in mirror.log_since(mark)  # asked as containerd asks a mirror


def test_a_pull_only_mirror_is_not_trusted_to_resolve_a_tag(
    registry: Registry, mirror: Registry, tmp_path: Path
) -> None:
    push_image(mirror, "pullonly/cuda", "1", build_image(ENV))
    root = hosts_toml(tmp_path, f"{registry.host.replace(':', '_')}_",
                      f'[host."http://{mirror.host}"]\n  capabilities = ["pull"]\n')  # fmt: skip
    with pytest.raises(InputMissing, match=f"registry {registry.host}: .*404"):
        fetch_image(
            f"{registry.host}/pullonly/cuda:1",
            source="registry",
            options=RegistryOptions(host_root=str(root)),
        )


def test_daemon_json_registry_mirrors_serve_docker_hub_images(mirror: Registry, tmp_path: Path) -> None:
    push_image(mirror, "library/hubimage", "1", build_image(ENV))
    (tmp_path / "etc" / "docker").mkdir(parents=True)
    (tmp_path / "etc" / "docker" / "daemon.json").write_text(
        json.dumps({"registry-mirrors": [f"http://{mirror.host}"]})
    )
    facts = fetch_image("hubimage:1", source="registry", options=RegistryOptions(host_root=str(tmp_path)))
    assert facts.reference == "docker.io/library/hubimage:1" and facts.cuda_version == "12.4.1"
    assert facts.source_endpoint == f"http://{mirror.host} (/etc/docker/daemon.json)"


def test_registry_mirror_option_for_any_registry(registry: Registry, mirror: Registry) -> None:
    push_image(mirror, "flagged/cuda", "1", build_image(ENV))
    options = RegistryOptions(mirrors=(f"{registry.host}=http://{mirror.host}",), read_runtime_config=False)
    facts = fetch_image(f"{registry.host}/flagged/cuda:1", source="registry", options=options)
    assert facts.source_endpoint == f"http://{mirror.host} (--registry-mirror)"


# --- retries ----------------------------------------------------------------------------------


def test_429_with_retry_after_then_the_image(registry: Registry) -> None:
    push_image(registry, "limited/cuda", "1", build_image(ENV))
    with relaying(registry.host, refusals=[(429, {"Retry-After": "1"})]) as relay:
        facts = fetch_image(f"{relay.host}/limited/cuda:1", source="registry")
    assert facts.cuda_version == "12.4.1"
    assert relay.requests[:2] == ["GET /v2/limited/cuda/manifests/1"] * 2


# --- exit codes through the CLI ------------------------------------------------------------------


def preflight(*args: str, env: dict[str, str] | None = None) -> Any:
    return run_gpudoctor(
        "preflight", *args, "--node", str(XML), "--format", "json", timeout=120, cwd=REPO, env=env
    )


def test_exit_codes_66_77_75_69_65(registry: Registry, auth_registry: Registry, tmp_path: Path) -> None:
    push_image(registry, "codes/cuda", "1", build_image(ENV))
    assert auth_registry.tls is not None
    cases: list[tuple[int, str, Any]] = []
    done = preflight(f"{registry.host}/codes/missing:1")
    cases.append((66, "404", done))
    done = preflight(f"{auth_registry.host}/codes/cuda:1", "--ca-bundle", str(auth_registry.tls.ca_cert),
                     env={"DOCKER_CONFIG": str(tmp_path)})  # fmt: skip
    cases.append((77, "401", done))
    with relaying(registry.host, refusals=[(503, {"Retry-After": "3600"})]) as relay:
        cases.append((75, "503", preflight(f"{relay.host}/codes/cuda:1")))
    cases.append((69, "cannot connect", preflight(f"127.0.0.1:{free_port()}/codes/cuda:1")))
    # bad registry data: a manifest whose config digest uses an algorithm nobody registered
    bad = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                     "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                                "digest": "md5:" + "0" * 32}})  # fmt: skip
    registry.push_blob("codes/cuda", b"{}")
    with relaying(registry.host, refusals=[(200, {"Content-Type": OCI_MANIFEST}, bad)]) as relay:
        cases.append((65, "unsupported digest algorithm 'md5'", preflight(f"{relay.host}/codes/cuda:1")))
    for code, fragment, result in cases:
        assert (result.returncode, fragment in result.stderr) == (code, True), result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


# --- platforms, many images, --deep --------------------------------------------------------------


def push_two_platforms(registry_: Registry, repository: str) -> None:
    amd = build_image(ENV, media_type=OCI_MANIFEST)
    arm = build_image(ENV, arch="arm64", media_type=OCI_MANIFEST)
    push_index(registry_, repository, "1", [(amd, {"os": "linux", "architecture": "amd64"}),
                                            (arm, {"os": "linux", "architecture": "arm64"})])  # fmt: skip


def test_a_platform_the_image_lacks_is_a_fail_naming_what_it_offers(registry: Registry) -> None:
    push_two_platforms(registry, "plat/app")
    done = preflight(f"{registry.host}/plat/app:1", "--platform", "linux/s390x")
    assert done.returncode == 2, done.stderr
    report = json.loads(done.stdout)
    (finding,) = [f for f in report["findings"] if f["rule_id"] == "GD-PLAT-003"]
    assert finding["severity"] == "fail" and "linux/amd64, linux/arm64" in finding["message"]
    assert report["image"]["cuda_version"] is None and report["image"]["digest"] is None  # nothing else read


def test_several_images_are_fetched_together_and_judged_each(registry: Registry) -> None:
    push_two_platforms(registry, "many/app")
    push_image(registry, "many/cuda", "1", build_image(ENV))
    refs = [f"{registry.host}/many/app:1", f"{registry.host}/many/cuda:1"]
    done = preflight(*refs)
    reports = json.loads(done.stdout)
    assert [r["image"]["reference"] for r in reports] == refs
    assert done.returncode == 2 and all(r["image"]["cuda_version"] == "12.4.1" for r in reports)


@pytest.mark.parametrize("fmt", ["table", "json", "oneline"])
def test_deep_on_a_remote_image_without_pull_layers_says_kernels_were_not_read(
    registry: Registry, fmt: str
) -> None:
    push_image(registry, "deep/cuda", "1", build_image(ENV))
    done = run_gpudoctor("preflight", f"{registry.host}/deep/cuda:1", "--deep", "--node", str(XML),
                         "--format", fmt, timeout=120, cwd=REPO)  # fmt: skip
    assert done.returncode in (0, 1, 2, 3), done.stderr
    assert "layers not downloaded" in done.stdout and "--pull-layers" in done.stdout
    assert f"GET /v2/deep/cuda/blobs/{digest_of(build_image(ENV).layers[0])}" not in registry.access_log()
