# ruff: noqa: F401, F811 - pytest fixtures imported from tests.support.services
"""The registry source against a REAL registry (Debian docker-registry) on 127.0.0.1:
plain HTTP, and htpasswd basic auth over TLS from a CA the tests generate."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from pathlib import Path

import pytest

from gpudoctor.errors import BadInput, InputMissing, PermissionRefused, ServiceUnavailable
from gpudoctor.facts import Platform
from gpudoctor.images import fetch_image
from tests.support.services import (
    AUTH_PASSWORD,
    AUTH_USER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Registry,
    auth_registry,
    build_image,
    digest_of,
    push_image,
    push_index,
    registry,
)

pytestmark = pytest.mark.services
IMAGES = Path(__file__).resolve().parent.parent / "fixtures" / "images"
LAYER_GET = re.compile(r'"GET /v2/[^ ]+/blobs/(sha256:[0-9a-f]+)')


def cuda_env(name: str = "nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64") -> dict[str, str]:
    env: dict[str, str] = json.loads((IMAGES / f"{name}.json").read_text())["env"]
    return env


def blob_gets(log: str) -> set[str]:
    return set(LAYER_GET.findall(log))


@pytest.mark.parametrize("media_type", [DOCKER_MANIFEST, OCI_MANIFEST])
def test_single_platform_image(registry: Registry, media_type: str) -> None:
    image = build_image(cuda_env(), media_type=media_type)
    repo = f"single/{media_type.split('.')[-1].replace('+', '-')}"
    digest = push_image(registry, repo, "12.4", image)
    mark = registry.log_mark()
    facts = fetch_image(
        f"{registry.host}/{repo}:12.4", insecure_registries=[registry.host], source="registry"
    )
    assert facts.source == "registry"
    assert facts.digest == digest and facts.index_digest is None
    assert facts.platform == Platform("linux", "amd64") and facts.platforms == [Platform("linux", "amd64")]
    assert facts.cuda_version == "12.4.127"
    assert facts.require[0].startswith("cuda>=12.4 ")
    assert facts.size_bytes == sum(len(layer) for layer in image.layers)
    # Only the config blob was read: never a layer.
    assert blob_gets(registry.log_since(mark)) == {digest_of(image.config)}


@pytest.mark.parametrize("index_type", [OCI_INDEX, DOCKER_LIST])
def test_multi_platform_index_lists_every_platform_and_picks_the_node_one(
    registry: Registry, index_type: str
) -> None:
    manifest_type = OCI_MANIFEST if index_type == OCI_INDEX else DOCKER_MANIFEST
    amd = build_image(cuda_env(), media_type=manifest_type)
    arm = build_image(
        cuda_env("nvidia-cuda_12.1.1-base-ubuntu2204_arm64"), arch="arm64", media_type=manifest_type
    )
    repo = "multi/" + ("oci" if index_type == OCI_INDEX else "docker")
    index_digest = push_index(
        registry,
        repo,
        "latest",
        [
            (amd, {"os": "linux", "architecture": "amd64"}),
            (arm, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
        ],
        index_type,
    )
    mark = registry.log_mark()
    facts = fetch_image(
        f"{registry.host}/{repo}", insecure_registries=[registry.host], platform="linux/arm64"
    )
    assert facts.index_digest == index_digest
    assert facts.digest == arm.digest
    assert facts.platforms == [Platform("linux", "amd64"), Platform("linux", "arm64", "v8")]
    assert facts.platform == Platform("linux", "arm64")
    assert facts.require == ["cuda>=12.1"]  # the real arm64 (sbsa) image has no forward-compat terms
    assert blob_gets(registry.log_since(mark)) == {digest_of(arm.config)}
    # by digest, pinned: the digest is checked against what came back
    pinned = fetch_image(
        f"{registry.host}/{repo}@{index_digest}", insecure_registries=[registry.host], platform="linux/amd64"
    )
    assert pinned.digest == amd.digest and pinned.cuda_version == "12.4.127"


def test_index_without_the_wanted_platform_says_so(registry: Registry) -> None:
    arm = build_image(cuda_env(), arch="arm64", media_type=OCI_MANIFEST)
    push_index(registry, "armonly/app", "1", [(arm, {"os": "linux", "architecture": "arm64"})])
    facts = fetch_image(
        f"{registry.host}/armonly/app:1", insecure_registries=[registry.host], platform="linux/amd64"
    )
    assert facts.platforms == [Platform("linux", "arm64")]
    assert "offers no linux/amd64" in facts.unknown["platform"]


def test_missing_tag_is_404_naming_the_registry(registry: Registry) -> None:
    with pytest.raises(InputMissing) as err:
        fetch_image(f"{registry.host}/no/such:tag", insecure_registries=[registry.host], source="registry")
    assert f"registry {registry.host}" in str(err.value)
    assert "404" in str(err.value) and "no such repository" in str(err.value)
    assert err.value.exit_code == 66


def test_loopback_registry_is_insecure_by_default_as_dockerd_treats_it(registry: Registry) -> None:
    push_image(registry, "tls/app", "1", build_image(cuda_env()))
    facts = fetch_image(f"{registry.host}/tls/app:1", source="registry")
    assert facts.cuda_version == "12.4.127"
    assert facts.source_endpoint == f"http://{registry.host}"


def test_plain_http_elsewhere_needs_the_flag_and_the_error_names_it(registry: Registry) -> None:
    # 0.0.0.0 reaches the loopback listener but is not a loopback address, so it is not
    # insecure by default: TLS is attempted, the server answers in plain HTTP.
    push_image(registry, "tls/app", "1", build_image(cuda_env()))
    host = f"0.0.0.0:{registry.port}"
    with pytest.raises(ServiceUnavailable, match=f"does not speak TLS.*--insecure-registry {host}") as err:
        fetch_image(f"{host}/tls/app:1", source="registry")
    assert err.value.exit_code == 69
    assert fetch_image(f"{host}/tls/app:1", source="registry", insecure_registries=[host]).digest


def test_closed_port_is_unavailable() -> None:
    from tests.support.services import free_port

    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailable, match=f"registry {host}: .*cannot connect"):
        fetch_image(f"{host}/a/b:1", insecure_registries=[host], source="registry")


# --- TLS + htpasswd ------------------------------------------------------------------


def write_docker_config(directory: Path, config: dict[str, object]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))


@pytest.fixture
def pushed_auth_image(auth_registry: Registry) -> str:
    push_image(auth_registry, "private/cuda", "12.4", build_image(cuda_env()))
    return f"{auth_registry.host}/private/cuda:12.4"


def test_untrusted_ca_is_a_tls_failure(auth_registry: Registry, pushed_auth_image: str) -> None:
    # Not via 127.0.0.1: a loopback registry's certificate is not verified (as dockerd).
    elsewhere = pushed_auth_image.replace("127.0.0.1", "0.0.0.0")
    with pytest.raises(ServiceUnavailable, match=r"TLS failure \(certificate verify failed"):
        fetch_image(elsewhere, source="registry")


def test_anonymous_is_refused_by_htpasswd(
    auth_registry: Registry, pushed_auth_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))
    assert auth_registry.tls is not None
    with pytest.raises(PermissionRefused, match="HTTP 401 .*authentication required") as err:
        fetch_image(pushed_auth_image, source="registry", ca_bundle=str(auth_registry.tls.ca_cert))
    assert err.value.exit_code == 77


def test_basic_auth_from_docker_config(
    auth_registry: Registry, pushed_auth_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    write_docker_config(tmp_path, {"auths": {f"https://{auth_registry.host}": {"auth": token}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert auth_registry.tls is not None
    facts = fetch_image(pushed_auth_image, source="registry", ca_bundle=str(auth_registry.tls.ca_cert))
    assert facts.cuda_version == "12.4.127"


def test_wrong_password_is_refused_without_echoing_it(
    auth_registry: Registry, pushed_auth_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "wrong-Secret-value-123"
    write_docker_config(
        tmp_path, {"auths": {auth_registry.host: {"username": AUTH_USER, "password": secret}}}
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert auth_registry.tls is not None
    with pytest.raises(PermissionRefused) as err:
        fetch_image(pushed_auth_image, source="registry", ca_bundle=str(auth_registry.tls.ca_cert))
    assert "credentials refused" in str(err.value)
    assert secret not in str(err.value) and AUTH_USER not in str(err.value)


def _helper(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_credential_helper(
    auth_registry: Registry, pushed_auth_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real docker-credential-* protocol helper: `get`, server URL on stdin, JSON on stdout.
    _helper(
        tmp_path / "bin",
        "gpdtest",
        f'read server\n[ "$1" = get ] || exit 3\n[ "$server" = "{auth_registry.host}" ] || '
        '{ echo "credentials not found in native keychain"; exit 1; }\n'
        f'printf \'{{"ServerURL":"%s","Username":"{AUTH_USER}","Secret":"{AUTH_PASSWORD}"}}\' "$server"\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    write_docker_config(tmp_path / "cfg", {"credHelpers": {auth_registry.host: "gpdtest"}})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "cfg"))
    assert auth_registry.tls is not None
    facts = fetch_image(pushed_auth_image, source="registry", ca_bundle=str(auth_registry.tls.ca_cert))
    assert facts.require[0].startswith("cuda>=12.4")
    # credsStore is the fallback for hosts without a credHelpers entry
    write_docker_config(tmp_path / "cfg", {"credsStore": "gpdtest"})
    assert fetch_image(pushed_auth_image, source="registry", ca_bundle=str(auth_registry.tls.ca_cert)).digest


def test_failing_credential_helper_is_one_line_without_its_output(
    auth_registry: Registry, pushed_auth_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _helper(tmp_path / "bin", "broken", "echo 'leaked-helper-secret' >&2\nexit 7\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    write_docker_config(tmp_path / "cfg", {"credsStore": "broken"})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "cfg"))
    assert auth_registry.tls is not None
    with pytest.raises(ServiceUnavailable) as err:
        fetch_image(pushed_auth_image, source="registry", ca_bundle=str(auth_registry.tls.ca_cert))
    assert str(err.value) == "credential helper docker-credential-broken failed (exit 7)"


def test_missing_credential_helper(
    auth_registry: Registry, pushed_auth_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_docker_config(tmp_path, {"credsStore": "not-installed-here"})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert auth_registry.tls is not None
    with pytest.raises(
        ServiceUnavailable, match="docker-credential-not-installed-here is configured but not installed"
    ):
        fetch_image(pushed_auth_image, source="registry", ca_bundle=str(auth_registry.tls.ca_cert))


def test_bad_docker_config_is_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: Registry
) -> None:
    (tmp_path / "config.json").write_text("{not json")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    push_image(registry, "cfg/app", "1", build_image(cuda_env()))
    # Anonymous registries never need the config: it is only read on a 401.
    assert fetch_image(
        f"{registry.host}/cfg/app:1", insecure_registries=[registry.host], source="registry"
    ).digest
    with pytest.raises(BadInput, match="invalid JSON"):
        from gpudoctor.images.auth import credentials_for

        credentials_for(registry.host)
