"""Every JSON `gpudoctor kernels` prints validates against the shipped kernels schema,
and the schema rejects documents that break the contract (issue 5)."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpudoctor.report.schema import schema_path
from tests.kernels_support import BINARIES, FATBINS, write_tar
from tests.kernels_tree import build_site_packages
from tests.support.schema_check import REPO, printed_json, validator, violations

NODES = REPO / "fixtures" / "facts" / "nodes"
EXIT_FOR = {"ok": 0, "info": 0, "warn": 1, "fail": 2, "unknown": 3}
# Without --gpu/--node nothing is judged; with them the kernel rules run.
OPTIONS = {
    "no-gpu": (),
    "gpu": ("--gpu", "9.0"),
    "gpus-comma": ("--gpu", "7.0,12.0", "--gpu", "10.0"),
    "node-xml": ("--node", str(REPO / "fixtures" / "nvidia-smi" / "Tesla-T4_515.105.01.xml")),
    "node-json-unknown-facts": ("--node", str(NODES / "GTX-1660-Ti_418.43.json")),
    "node-and-gpu": ("--node", str(NODES / "RTX-3080_595.58.03.json"), "--gpu", "9.0"),
}


def kernels_json(*args: str) -> dict[str, Any]:
    report, code = printed_json("kernels", "kernels", *args, "--format", "json")
    assert code == EXIT_FOR[report["verdict"]], (code, report["verdict"])
    return report


def _layer(tree: Path) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        archive.add(tree, arcname="usr/lib/python3/site-packages")
    return gzip.compress(raw.getvalue(), compresslevel=1)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every kind of input the scanner reads, built from the committed nvcc fixtures."""
    root = tmp_path_factory.mktemp("kernels-schema")
    tree = build_site_packages(root / "site-packages")
    wheel = root / "bundle-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(tree).as_posix())
    layer = _layer(tree)
    digest = hashlib.sha256(layer).hexdigest()
    docker_save = write_tar(
        root / "image.tar",
        {
            f"blobs/sha256/{digest}": layer,
            "manifest.json": json.dumps([{"Layers": [f"blobs/sha256/{digest}"]}]).encode(),
        },
    )
    oci = root / "oci"
    (oci / "blobs" / "sha256").mkdir(parents=True)
    (oci / "blobs" / "sha256" / digest).write_bytes(layer)
    (oci / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    payload = (FATBINS / "bin" / "plain_sm80.so").read_bytes()
    hostile = write_tar(root / "hostile.tar", {"../../escape.so": payload, "ok/lib.so": payload})
    truncated = root / "cut.tar.gz"
    truncated.write_bytes(layer[: len(layer) // 2])
    return {
        "fatbins": FATBINS / "bin",
        "site-packages": tree,
        "wheel": wheel,
        "docker-save": docker_save,
        "oci-layout": oci,
        "hostile-tar": hostile,
        "truncated-tar": truncated,
    }


def test_schema_is_valid_and_ships_inside_the_package() -> None:
    validator("kernels")
    assert schema_path("kernels").is_relative_to(REPO / "gpudoctor" / "kernels")


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize(
    "source",
    ["fatbins", "site-packages", "wheel", "docker-save", "oci-layout", "hostile-tar", "truncated-tar"],
)
def test_every_source_with_and_without_gpus(sources: dict[str, Path], source: str, option: str) -> None:
    report = kernels_json(str(sources[source]), *OPTIONS[option])
    assert ("findings" in report) == (option != "no-gpu")
    if source in ("hostile-tar", "truncated-tar"):
        assert report["errors"], "an unsafe or cut archive is reported as a scan error"
    else:
        assert report["binaries"]


@pytest.mark.parametrize("binary", BINARIES, ids=lambda p: p.name)
@pytest.mark.parametrize("option", ["no-gpu", "node-xml"])
def test_every_fixture_binary(binary: Path, option: str) -> None:
    report = kernels_json(str(binary), *OPTIONS[option])
    for row in report["binaries"]:
        if row["entries"]:
            assert sorted(row["per_gpu"]) == sorted(report["compute_capabilities"])


def test_unknown_findings_name_their_missing_facts(sources: dict[str, Path], tmp_path: Path) -> None:
    # "Graphics Device" (a driver older than the GPU) is identified by its device id 2184 (TU116);
    # without the id nothing says which GPU it is.
    node = json.loads((NODES / "GTX-1660-Ti_418.43.json").read_text(encoding="utf-8"))
    node["gpus"][0]["pci_device_id"] = None
    path = tmp_path / "graphics-device-no-id.json"
    path.write_text(json.dumps(node), encoding="utf-8")
    report = kernels_json(str(sources["fatbins"]), "--node", str(path))
    assert report["verdict"] == "unknown"
    assert all(f["missing_facts"] for f in report["findings"] if f["severity"] == "unknown")


@pytest.fixture(scope="module")
def judged(sources: dict[str, Path]) -> dict[str, Any]:
    """A real report with binaries, packages, a per-file error and findings."""
    report = kernels_json(str(sources["site-packages"]), *OPTIONS["node-xml"])
    assert report["findings"] and report["packages"] and any("error" in b for b in report["binaries"])
    return report


def _first_with_entries(doc: dict[str, Any]) -> dict[str, Any]:
    return next(b for b in doc["binaries"] if b["entries"])


def _verdict_without_findings(doc: dict[str, Any]) -> None:
    del doc["findings"]  # nothing was judged, yet the verdict says fail
    doc["verdict"] = "fail"


BROKEN: dict[str, Callable[[dict[str, Any]], None]] = {
    "bad finding severity": lambda d: d["findings"][0].update(severity="critical"),
    "bad per-GPU verdict": lambda d: _first_with_entries(d)["per_gpu"].update({"9.0": "maybe"}),
    "per-GPU key not a compute capability": lambda d: _first_with_entries(d)["per_gpu"].update(
        {"sm_90": "native"}
    ),
    "target without sm_": lambda d: _first_with_entries(d).update(cubins=["90a"]),
    "bad entry kind": lambda d: _first_with_entries(d)["entries"][0].update(kind="elf"),
    "verdict without findings": _verdict_without_findings,
    "verdict not a severity": lambda d: d.update(verdict="bad"),
    "missing packages": lambda d: d.pop("packages"),
    "errored binary with verdicts": lambda d: next(b for b in d["binaries"] if "error" in b).update(
        per_gpu={"9.0": "none"}
    ),
    "package detail not a string": lambda d: d["packages"][0].update(flash_attn_generation=3),
    "unknown top-level field": lambda d: d.update(extra=True),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_schema_rejects_broken_documents(judged: dict[str, Any], breakage: str) -> None:
    assert violations("kernels", judged) == []
    broken = copy.deepcopy(judged)
    BROKEN[breakage](broken)
    assert violations("kernels", broken), breakage
