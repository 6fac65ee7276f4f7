"""Archive source: docker-save tarballs and OCI layouts (directory and tar), read in
place; hostile archives neither escape nor crash."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from gpudoctor.errors import BadInput, InputMissing
from gpudoctor.facts import Platform
from gpudoctor.images import fetch_image
from tests.support.cli import run_gpudoctor
from tests.support.services import OCI_MANIFEST, build_image, docker_save_tar, oci_layout

REPO = Path(__file__).resolve().parent.parent
ENV = json.loads(
    (REPO / "fixtures" / "images" / "nvidia-cuda_12.1.1-base-ubuntu2204_amd64.json").read_text()
)["env"]


def test_docker_save_tarball(tmp_path: Path) -> None:
    tar = docker_save_tar(tmp_path / "img.tar", ENV, "example.test/cuda:12.1")
    facts = fetch_image(str(tar))  # an existing path is an archive
    assert facts.source == "archive"
    assert facts.reference == "example.test/cuda:12.1"
    assert facts.cuda_version == "12.1.105"
    assert facts.require[0].startswith("cuda>=12.1 brand=tesla")
    assert facts.platform == Platform("linux", "amd64")
    assert facts.size_bytes is not None and facts.size_bytes > 0


def test_gzipped_docker_save_tarball(tmp_path: Path) -> None:
    tar = docker_save_tar(tmp_path / "img.tar", ENV, "example.test/cuda:12.1")
    gz = tmp_path / "img.tar.gz"
    gz.write_bytes(gzip.compress(tar.read_bytes()))
    assert fetch_image(str(gz), source="archive").cuda_version == "12.1.105"


@pytest.mark.parametrize("as_tar", [False, True])
def test_oci_layout_single_manifest(tmp_path: Path, as_tar: bool) -> None:
    image = build_image(ENV, media_type=OCI_MANIFEST)
    target = tmp_path / ("layout.tar" if as_tar else "layout")
    if not as_tar:
        target.mkdir()
    oci_layout(target, [(image, None)], as_tar=as_tar)
    facts = fetch_image(str(target), source="archive")
    assert facts.digest == image.digest
    assert facts.reference == "example.test/gpu/app:1"
    assert facts.size_bytes == len(image.layers[0])


@pytest.mark.parametrize("as_tar", [False, True])
def test_oci_layout_multi_platform(tmp_path: Path, as_tar: bool) -> None:
    amd = build_image(ENV, media_type=OCI_MANIFEST)
    arm = build_image(
        {"CUDA_VERSION": "12.1.1", "NVIDIA_REQUIRE_CUDA": "cuda>=12.1"}, arch="arm64", media_type=OCI_MANIFEST
    )
    target = tmp_path / ("layout.tar" if as_tar else "layout")
    if not as_tar:
        target.mkdir()
    oci_layout(
        target,
        [(amd, {"os": "linux", "architecture": "amd64"}), (arm, {"os": "linux", "architecture": "arm64"})],
        as_tar=as_tar,
    )
    facts = fetch_image(str(target), platform="linux/arm64")
    assert facts.platforms == [Platform("linux", "amd64"), Platform("linux", "arm64")]
    assert facts.digest == arm.digest and facts.require == ["cuda>=12.1"]
    assert facts.index_digest is not None


def test_tampered_blob_is_caught(tmp_path: Path) -> None:
    image = build_image(ENV, media_type=OCI_MANIFEST)
    layout = tmp_path / "layout"
    layout.mkdir()
    oci_layout(layout, [(image, None)], as_tar=False)
    config = next(p for p in (layout / "blobs" / "sha256").iterdir() if p.read_bytes() == image.config)
    config.write_bytes(image.config.replace(b"12.1", b"99.9"))
    with pytest.raises(BadInput, match="digest mismatch"):
        fetch_image(str(layout), source="archive")


def test_missing_archive() -> None:
    with pytest.raises(InputMissing):
        fetch_image("/nonexistent/image.tar", source="archive")


def test_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(BadInput, match="not a readable tar archive"):
        fetch_image(str(junk), source="archive")


# --- hostile archives -------------------------------------------------------------------


def _member(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def _hostile(path: Path, build: object) -> Path:
    with tarfile.open(path, "w") as tar:
        build(tar)  # type: ignore[operator]
    return path


def _snapshot(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")}


HOSTILE = {
    # found by the red-team run: json.loads' RecursionError and int() ValueError were exit 70
    "manifest nested 100,000 deep": lambda tar: _member(
        tar, "manifest.json", b"[" * 100_000 + b"]" * 100_000
    ),
    "manifest integer of 5,000 digits": lambda tar: _member(
        tar, "manifest.json", b'[{"Config": ' + b"9" * 5000 + b"}]"
    ),
    "absolute manifest": lambda tar: _member(tar, "/manifest.json", b'[{"Config":"/etc/passwd"}]'),
    "dotdot manifest": lambda tar: _member(tar, "../manifest.json", b"[]"),
    "config escapes with ..": lambda tar: (
        _member(tar, "manifest.json", b'[{"Config":"../../../../etc/passwd","Layers":[]}]'),
    ),
    "config absolute": lambda tar: _member(tar, "manifest.json", b'[{"Config":"/etc/hostname","Layers":[]}]'),
    "manifest is a symlink": lambda tar: _member(
        tar, "manifest.json", type=tarfile.SYMTYPE, linkname="/etc/passwd"
    ),
    "config is a symlink": lambda tar: (
        _member(tar, "manifest.json", b'[{"Config":"c.json","Layers":[]}]'),
        _member(tar, "c.json", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
    ),
    "config is a hard link": lambda tar: (
        _member(tar, "manifest.json", b'[{"Config":"c.json","Layers":[]}]'),
        _member(tar, "c.json", type=tarfile.LNKTYPE, linkname="/etc/passwd"),
    ),
    "oci blob digest escapes": lambda tar: (
        _member(tar, "oci-layout", b"{}"),
        _member(
            tar,
            "index.json",
            json.dumps({"manifests": [{"digest": "sha256:../../../etc/passwd", "size": 1}]}).encode(),
        ),
    ),
    "not JSON": lambda tar: _member(tar, "manifest.json", b"\xff\xfe not json"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_archive_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    archive = _hostile(tmp_path / "evil.tar", HOSTILE[case])
    before = _snapshot(tmp_path)
    with pytest.raises(BadInput) as err:
        fetch_image(str(archive), source="archive")
    assert "\n" not in str(err.value) and "root:" not in str(err.value)
    assert str(archive) in str(err.value)  # every refusal names the archive
    assert _snapshot(tmp_path) == before  # nothing extracted, nothing written


def test_huge_member_sizes_are_refused_without_reading(tmp_path: Path) -> None:
    archive = tmp_path / "huge.tar"
    with tarfile.open(archive, "w") as tar:
        _member(tar, "manifest.json", b'[{"Config":"c.json","Layers":[]}]')
    data = bytearray(archive.read_bytes())
    # Append a header that claims a 64 GiB config and no data: a truncated, lying archive.
    header = tarfile.TarInfo("c.json")
    header.size = 64 << 30
    block = header.tobuf(format=tarfile.GNU_FORMAT)
    end = data.rfind(b"manifest.json")
    tail_start = (end // 512 + 1) * 512 + 512  # after manifest header + its one data block
    archive.write_bytes(bytes(data[:tail_start]) + block)
    with pytest.raises(BadInput):
        fetch_image(str(archive), source="archive")


def test_oversize_config_is_capped(tmp_path: Path) -> None:
    archive = tmp_path / "big.tar"
    with tarfile.open(archive, "w") as tar:
        _member(tar, "manifest.json", b'[{"Config":"c.json","Layers":[]}]')
        _member(tar, "c.json", b"{" + b" " * (9 << 20) + b"}")
    with pytest.raises(BadInput, match="over the 8388608-byte cap"):
        fetch_image(str(archive), source="archive")


def test_directory_with_symlink_escape(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text("{}")
    os.symlink("/etc/passwd", layout / "index.json")
    with pytest.raises(BadInput, match="neither an OCI image layout"):
        fetch_image(str(layout), source="archive")


def test_cli_on_hostile_archive_has_no_traceback(tmp_path: Path) -> None:
    archive = _hostile(tmp_path / "evil.tar", HOSTILE["config escapes with .."])
    node = REPO / "fixtures" / "facts" / "nodes" / "A100-SXM4-80GB_535.54.03.json"
    report = tmp_path / "node.json"
    report.write_text(json.dumps({"node": json.loads(node.read_text())}))
    done = run_gpudoctor("preflight", str(archive), "--node", str(report), timeout=60, cwd=tmp_path)
    assert done.returncode == 65
    assert done.stderr.startswith("gpudoctor: ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("compression", ["bz2", "xz"])
def test_compressed_docker_save_tarballs(tmp_path: Path, compression: str) -> None:
    """The compression is told by its magic number (gzip above, bzip2 and xz here)."""
    import bz2
    import lzma

    tar = docker_save_tar(tmp_path / "img.tar", ENV, "example.test/cuda:12.1")
    packed = tmp_path / f"img.tar.{compression}"
    packed.write_bytes((bz2.compress if compression == "bz2" else lzma.compress)(tar.read_bytes()))
    assert fetch_image(str(packed), source="archive").cuda_version == "12.1.105"


def test_gigabytes_of_zeros_are_refused_at_once(tmp_path: Path) -> None:
    """tarfile's "r:*" let LZMA's headerless format decompress 4 GiB of zeros for minutes
    (found by the red-team run); a file without a known magic number is read as a plain tar."""
    zeros = tmp_path / "zeros.tar"
    with open(zeros, "wb") as handle:
        handle.truncate(4 << 30)  # sparse: no disk used
    done = run_gpudoctor(
        "preflight",
        str(zeros),
        "--node",
        str(REPO / "fixtures/nvidia-smi/Tesla-T4_515.105.01.xml"),
        timeout=30,
    )
    assert done.returncode == 65, done.stderr
    assert done.stderr.count("\n") == 1 and str(zeros) in done.stderr
