"""`gpudoctor preflight IMAGE --deep [--pull-layers]`: the kernel scan of an image's layers.

Images are real-format (gzip layers holding the nvcc-built fixtures, config,
manifest) as an OCI layout, an OCI tar, and pushed to a real registry on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.kernels_support import FATBINS
from tests.support.cli import run_gpudoctor, run_on_a_terminal
from tests.support.services import (
    DOCKER_MANIFEST,
    BuiltImage,
    Dockerd,
    Registry,
    canonical,
    digest_of,
    dockerd,  # noqa: F401 - pytest fixture
    image_config,
    layer_tar,
    oci_layout,
    push_image,
    registry,  # noqa: F401 - pytest fixture
)

REPO = Path(__file__).resolve().parent.parent
SITE = "usr/local/lib/python3.12/site-packages/"
LAYER_FILES = {
    SITE + "torch/lib/libtorch_cuda.so": "multi_cubin_ptx.so",  # sm_75..sm_90 + PTX sm_90
    SITE + "flash_attn_3/_C.abi3.so": "arch_90a.so",
}


def kernel_image(
    layer_files: dict[str, str] = LAYER_FILES, extra: dict[str, bytes] | None = None
) -> BuiltImage:
    """An image with one gzip layer: nvcc-built fixtures at `layer_files` paths, torch's version.py, `extra`."""
    files = {name: (FATBINS / "bin" / fixture).read_bytes() for name, fixture in layer_files.items()}
    files[SITE + "torch/version.py"] = b"__version__ = '2.14.1+cu130'\ncuda = '13.0'\n"
    files.update(extra or {})
    raw = layer_tar(files)
    layer = gzip.compress(raw, mtime=0)
    config = canonical(image_config({"CUDA_VERSION": "13.0.2"}, "amd64", None, [digest_of(raw)]))
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": len(config),
            "digest": digest_of(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": len(layer),
                "digest": digest_of(layer),
            }
        ],
    }
    return BuiltImage(config, [layer], canonical(manifest), DOCKER_MANIFEST)


def volta_node(tmp_path: Path) -> Path:
    node = json.loads((REPO / "fixtures/facts/nodes/8x-Tesla-V100S-PCIE-32GB_460.73.01.json").read_text())
    node["host"]["cpu_arch"] = "x86_64"
    path = tmp_path / "volta.json"
    path.write_text(json.dumps({"node": node}))
    return path


def preflight(image: str, node: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    done = run_gpudoctor(
        "preflight",
        image,
        "--node",
        str(node),
        "--format",
        "json",
        *extra,
        cwd=REPO,
        env={"DOCKER_HOST": "unix:///nonexistent"},
    )
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr


def kernel_rules(report: dict[str, Any]) -> set[str]:
    return {f["rule_id"] for f in report["findings"] if f["rule_id"].startswith("GD-KERN-")}


@pytest.mark.parametrize("as_tar", [False, True], ids=["oci-dir", "oci-tar"])
def test_deep_scan_of_an_archive(tmp_path: Path, as_tar: bool) -> None:
    layout = oci_layout(
        tmp_path / ("image.tar" if as_tar else "layout"), [(kernel_image(), None)], as_tar=as_tar
    )
    code, report, stderr = preflight(str(layout), volta_node(tmp_path), "--deep")
    assert code == 2, stderr
    assert {"GD-KERN-001", "GD-KERN-002"} <= kernel_rules(report)
    paths = {b["path"] for b in report["image"]["kernels"]["binaries"]}
    assert paths == set(LAYER_FILES)


def test_deep_scan_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    """--deep reads every layer: a bar on a terminal's stderr (drawn at once here), none when piped."""
    layout = oci_layout(tmp_path / "layout", [(kernel_image(), None)], as_tar=False)
    args = ["preflight", str(layout), "--node", str(volta_node(tmp_path)), "--deep"]
    env = {"GPUDOCTOR_PROGRESS_AFTER": "0", "COLUMNS": "120", "DOCKER_HOST": "unix:///nonexistent"}
    assert f"scanning the layers of {layout}" in run_on_a_terminal(args, env, stream="stderr")
    assert "scanning" not in run_gpudoctor(*args, env=env).stderr


def test_without_deep_there_is_no_kernel_scan(tmp_path: Path) -> None:
    layout = oci_layout(tmp_path / "layout", [(kernel_image(), None)], as_tar=False)
    _, report, _ = preflight(str(layout), volta_node(tmp_path))
    assert report["image"]["kernels"] is None and kernel_rules(report) == set()


@pytest.mark.services
def test_remote_image_needs_pull_layers(registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    push_image(registry, "kern/torch", "1", kernel_image())
    image = f"{registry.host}/kern/torch:1"
    insecure = ("--insecure-registry", registry.host)
    mark = registry.log_mark()
    _, report, _ = preflight(image, volta_node(tmp_path), "--deep", *insecure)
    assert report["image"]["kernels"] is None
    assert "--pull-layers" in report["image"]["unknown"]["kernels"]
    assert digest_of(kernel_image().layers[0]) not in registry.log_since(mark)

    code, report, stderr = preflight(image, volta_node(tmp_path), "--deep", "--pull-layers", *insecure)
    assert "downloading 1 layers" in stderr
    assert code == 2 and {"GD-KERN-001", "GD-KERN-002"} <= kernel_rules(report)
    torch = next(p for p in report["image"]["kernels"]["packages"] if p["name"] == "torch")
    assert torch["version"] == "2.14.1+cu130"


def docker_save(path: Path, repo_tag: str, image: BuiltImage | None = None) -> Path:
    """A `docker save` tarball of a kernel_image()'s content (uncompressed layer, as docker load wants)."""
    import tarfile

    image = image or kernel_image()
    raw = gzip.decompress(image.layers[0])
    config = image.config
    config_name = digest_of(config).split(":")[1] + ".json"
    layer_name = digest_of(raw).split(":")[1] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [repo_tag], "Layers": [layer_name]}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in ((config_name, config), (layer_name, raw), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.services
def test_local_docker_image_is_streamed_from_the_engine(dockerd: Dockerd, tmp_path: Path) -> None:  # noqa: F811
    dockerd.load(docker_save(tmp_path / "save.tar", "kern/torch:1"))
    done = run_gpudoctor(
        "kernels",
        "kern/torch:1",
        "--gpu",
        "10.0",
        "--format",
        "json",
        timeout=300,
        cwd=REPO,
        env={"DOCKER_HOST": dockerd.host},
    )
    report = json.loads(done.stdout)
    assert {b["path"] for b in report["binaries"]} == set(LAYER_FILES)
    assert "GD-KERN-002" in {f["rule_id"] for f in report["findings"]}

    code, report, stderr = preflight(
        "kern/torch:1", volta_node(tmp_path), "--source", "docker", "--docker-host", dockerd.host, "--deep"
    )
    assert {"GD-KERN-001", "GD-KERN-002"} <= kernel_rules(report), stderr


def test_missing_local_image_is_one_line(tmp_path: Path) -> None:
    done = run_gpudoctor("kernels", "no-such-image:1", cwd=REPO, env={"DOCKER_HOST": "unix:///nonexistent"})
    assert done.returncode == 69 and len(done.stderr.strip().splitlines()) == 1


def test_a_layout_blob_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    layout = oci_layout(tmp_path / "layout", [(kernel_image(), None)], as_tar=False)
    blob = layout / "blobs" / "sha256" / digest_of(kernel_image().layers[0]).split(":")[1]
    blob.unlink()
    blob.symlink_to("/dev/zero")  # would otherwise be read forever
    code, _, stderr = preflight(str(layout), volta_node(tmp_path), "--deep")
    assert code == 65 and "not a regular file" in stderr and len(stderr.strip().splitlines()) == 1
