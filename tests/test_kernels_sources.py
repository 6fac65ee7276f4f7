"""Sources: directory tree, wheel, tar / docker save / OCI layout, hostile archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from gpudoctor.errors import InputMissing
from gpudoctor.facts import KernelScanFacts
from gpudoctor.kernels.packages import PackageCollector
from gpudoctor.kernels.sources import scan_targets
from tests.kernels_tree import build_site_packages


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_site_packages(tmp_path / "site-packages")


def summary(scan: KernelScanFacts) -> dict[str, object]:
    return {
        "binaries": {
            b.path.split("site-packages/")[-1]: (b.cubins, b.ptx, b.package, b.error) for b in scan.binaries
        },
        "packages": {
            (p.name, p.version, p.cuda_variant, p.detail.get("flash_attn_generation")) for p in scan.packages
        },
    }


EXPECTED_BINARIES = {
    "bin/tool": (["sm_89"], ["sm_89"], None, None),
    "broken.so": ([], [], None, "named like a shared library but not an ELF file"),
    "flash_attn_3/_C.abi3.so": (["sm_90a"], [], "flash-attn-3", None),
    "torch/lib/libtorch_cuda.so": (["sm_75", "sm_80", "sm_86", "sm_90"], ["sm_90"], "torch", None),
}
EXPECTED_PACKAGES = {
    ("torch", "2.14.1+cu130", "cu130", None),
    ("flash-attn-3", "3.0.0b1", None, "fa3"),
    ("nvidia-cuda-runtime", "13.5.37", None, None),
    ("libcudart", "13", None, None),
}


def test_directory_tree(tree: Path) -> None:
    result = summary(scan_targets([str(tree)]))
    assert result["binaries"] == EXPECTED_BINARIES
    assert result["packages"] == EXPECTED_PACKAGES


def test_torch_cuda_detail_from_version_py(tree: Path) -> None:
    torch = next(p for p in scan_targets([str(tree)]).packages if p.name == "torch")
    assert torch.detail["cuda"] == "13.0"


def test_wheel_is_streamed(tree: Path, tmp_path: Path) -> None:
    wheel = tmp_path / "bundle-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(tree).as_posix())
    assert summary(scan_targets([str(wheel)])) == {
        "binaries": EXPECTED_BINARIES,
        "packages": EXPECTED_PACKAGES,
    }


def layer_bytes(tree: Path, prefix: str = "usr/lib/python3/site-packages") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        archive.add(tree, arcname=prefix)
    return gzip.compress(raw.getvalue(), compresslevel=1)


def test_docker_save_archive(tree: Path, tmp_path: Path) -> None:
    layer = layer_bytes(tree)
    digest = hashlib.sha256(layer).hexdigest()
    archive_path = tmp_path / "image.tar"
    with tarfile.open(archive_path, "w") as archive:
        for name, data in (
            (f"blobs/sha256/{digest}", layer),
            ("manifest.json", json.dumps([{"Layers": [f"blobs/sha256/{digest}"]}]).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    result = summary(scan_targets([str(archive_path)]))
    assert result["binaries"] == EXPECTED_BINARIES
    assert result["packages"] == EXPECTED_PACKAGES


def test_oci_layout_directory(tree: Path, tmp_path: Path) -> None:
    layout = tmp_path / "oci"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layer = layer_bytes(tree)
    (blobs / hashlib.sha256(layer).hexdigest()).write_bytes(layer)
    (blobs / ("0" * 64)).write_text('{"schemaVersion": 2}')
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    assert summary(scan_targets([str(layout)]))["binaries"] == EXPECTED_BINARIES


def test_hostile_members_are_never_followed_or_written(tmp_path: Path) -> None:
    payload = (Path(__file__).parent.parent / "fixtures/fatbins/bin/plain_sm80.so").read_bytes()
    archive_path = tmp_path / "evil.tar"
    with tarfile.open(archive_path, "w") as archive:
        for name in ("../../escape.so", "/abs/evil.so", "ok/lib.so"):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
        link = tarfile.TarInfo("ok/link.so")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
        device = tarfile.TarInfo("ok/dev.so")
        device.type, device.devmajor, device.devminor = tarfile.CHRTYPE, 1, 3
        archive.addfile(device)
    scan = scan_targets([str(archive_path)])
    assert [b.path for b in scan.binaries] == ["ok/lib.so"]
    assert sorted(e.message.split("member ")[1] for e in scan.errors) == [
        "'../../escape.so' skipped",
        "'/abs/evil.so' skipped",
    ]
    assert not (tmp_path.parent / "escape.so").exists()


def test_truncated_archive_is_an_error_not_a_crash(tree: Path, tmp_path: Path) -> None:
    layer = layer_bytes(tree)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(layer[: len(layer) // 2])
    scan = scan_targets([str(cut)])
    assert scan.errors and "cut short" in scan.errors[0].message


def test_symlinks_in_a_tree_are_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.so").symlink_to(Path(__file__).parent.parent / "fixtures/fatbins/bin/plain_sm80.so")
    assert scan_targets([str(root)]).binaries == []


def test_missing_input() -> None:
    with pytest.raises(InputMissing):
        scan_targets(["/nonexistent/path/x"])


@pytest.mark.parametrize(
    ("path", "generation"),
    [
        ("flash_attn_2_cuda.cpython-311-x86_64-linux-gnu.so", "fa2"),
        ("usr/lib/python3/dist-packages/flash_attn_3/_C.abi3.so", "fa3"),
        ("site-packages/flash_attn_interface.py", "fa3"),
        ("site-packages/flash_attn/cute/interface.py", "fa4"),
        # torch vendors FlashAttention sources and licences: not an installed flash-attn
        ("torch-2.14.1.dist-info/licenses/third_party/flash-attention/flash_attn/cute/LICENSE", None),
        ("torch/include/ATen/native/transformers/cuda/flash_attn/flash_api.h", None),
    ],
)
def test_flash_attn_generation_from_layout(path: str, generation: str | None) -> None:
    collector = PackageCollector()
    collector.see_path(path)
    assert collector.flash_attn_generations == ({generation} if generation else set())


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def test_later_layers_overwrite_and_delete(tmp_path: Path) -> None:
    """docker save with two layers stored top layer first: manifest.json decides the order."""
    bins = Path(__file__).parent.parent / "fixtures/fatbins/bin"
    site = "usr/lib/python3/site-packages/"
    bottom = _tar_bytes(
        {
            site + "torch/lib/libtorch_cuda.so": (bins / "plain_sm80.so").read_bytes(),
            site + "flash_attn_3/_C.abi3.so": (bins / "arch_90a.so").read_bytes(),
            site + "xformers/_C.so": (bins / "sm86_87_88.so").read_bytes(),
        }
    )
    top = _tar_bytes(
        {
            site + "torch/lib/libtorch_cuda.so": (bins / "multi_cubin_ptx.so").read_bytes(),
            site + "flash_attn_3/.wh._C.abi3.so": b"",
            site + "xformers/.wh..wh..opq": b"",
        }
    )
    archive_path = tmp_path / "save.tar"
    manifest = json.dumps([{"Config": "c.json", "Layers": ["bottom/layer.tar", "top/layer.tar"]}]).encode()
    with tarfile.open(archive_path, "w") as archive:
        for name, data in (("top/layer.tar", top), ("bottom/layer.tar", bottom), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    binaries = scan_targets([str(archive_path)]).binaries
    assert [(b.path, b.cubins) for b in binaries] == [
        (site + "torch/lib/libtorch_cuda.so", ["sm_75", "sm_80", "sm_86", "sm_90"])
    ]


def test_members_in_flight_stay_within_the_memory_budget() -> None:
    """Wheel members are scanned several at a time, but never more than the byte budget
    allows at once (one at least), whatever the number of members: results in order."""
    import threading
    import time

    from gpudoctor.kernels import wheel

    lock = threading.Lock()
    running: list[int] = []
    together: list[int] = []  # what was in flight whenever two or more were

    def work(cost: int) -> int:
        with lock:
            running.append(cost)
            if len(running) > 1:
                together.append(sum(running))
        time.sleep(0.002)
        with lock:
            running.remove(cost)
        return cost

    costs = [30, 5, 5, 40, 50, 1, 1, 1, 100, 2] * 20
    results = list(wheel.parallel(work, costs, cost=lambda cost: cost, budget=60))
    assert results == costs
    assert together and max(together) <= 60  # several at a time, never over budget (the 100s alone)
