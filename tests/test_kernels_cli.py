"""`gpudoctor kernels` end to end through the real CLI: JSON contract, findings, exit codes."""

from __future__ import annotations

import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.kernels_support import FATBINS
from tests.kernels_tree import build_site_packages
from tests.support.cli import run_gpudoctor, run_on_a_terminal

REPO = Path(__file__).resolve().parent.parent
NODES = REPO / "fixtures" / "facts" / "nodes"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    # A wide terminal: the checks below read whole paths, which a narrow table folds.
    return run_gpudoctor("kernels", *args, cwd=REPO, env={"COLUMNS": "250"})


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_site_packages(tmp_path_factory.mktemp("kernels") / "site-packages")


def test_json_contract_without_gpus(tree: Path) -> None:
    done = run(str(tree), "--format", "json")
    # broken.so (named like a library, not ELF) cannot be read: unknown, exit 3.
    assert done.returncode == 3, done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "unknown"
    broken = next(b for b in report["binaries"] if b["path"] == "broken.so")
    assert set(broken["per_gpu"].values()) == {"unknown"}
    torch = next(b for b in report["binaries"] if b["path"].endswith("libtorch_cuda.so"))
    assert torch["cubins"] == ["sm_75", "sm_80", "sm_86", "sm_90"]
    assert torch["ptx"] == ["sm_90"]
    assert torch["compressed"] is True
    assert torch["per_gpu"]["7.0"] == "none" and torch["per_gpu"]["9.0"] == "native"
    assert torch["per_gpu"]["12.1"] == "jit"
    assert {"name": "torch", "version": "2.14.1+cu130", "cuda_variant": "cu130"}.items() <= next(
        p for p in report["packages"] if p["name"] == "torch"
    ).items()
    assert "findings" not in report


def test_volta_fails_and_blackwell_loses_flash_attention(tree: Path) -> None:
    done = run(str(tree), "--gpu", "7.0", "--gpu", "10.0", "--format", "json")
    report = json.loads(done.stdout)
    fired = {f["rule_id"]: f for f in report["findings"]}
    assert done.returncode == 2
    assert "torch 2.14.1+cu130 has no kernel for sm_70" in fired["GD-KERN-001"]["message"]
    assert "flash-attn-3 3.0.0b1 (fa3)" in fired["GD-KERN-002"]["message"]
    assert fired["GD-KERN-002"]["subjects"] == ["0", "1"]
    assert fired["GD-KERN-001"]["subjects"] == ["0"]
    assert "GD-KERN-004" in fired  # torch on 10.0 runs only through PTX JIT


def test_hopper_is_fully_covered(tree: Path) -> None:
    done = run(str(tree), "--gpu", "9.0", "--format", "json")
    report = json.loads(done.stdout)
    # Only bin/tool (sm_89 cubin + PTX) needs JIT on Hopper; torch and FA3 are native;
    # broken.so could not be read, so the verdict is unknown, never ok.
    fired = {f["rule_id"]: f["message"] for f in report["findings"]}
    assert set(fired) == {"GD-KERN-004", "GD-KERN-007"}
    assert "bin/tool" in fired["GD-KERN-004"] and "libtorch" not in fired["GD-KERN-004"]
    assert "broken.so: named like a shared library" in fired["GD-KERN-007"]
    assert done.returncode == 3


def test_node_driver_too_old_for_the_ptx(tree: Path) -> None:
    # A100 (8.0) on driver 535 (CUDA 12.2): the CUDA 13.0 PTX of ptx_only_75.so cannot be JIT-compiled.
    done = run(
        str(FATBINS / "bin" / "ptx_only_75.so"), "--node", str(NODES / "A100-SXM4-80GB_535.54.03.json")
    )
    assert done.returncode == 2
    assert "FAIL GD-KERN-006" in done.stdout and "GD-KERN-003" not in done.stdout
    (row,) = [line for line in done.stdout.splitlines() if line.rstrip().endswith("- / sm_75")]
    assert "ptx_only_75.so" in row and "✗ none" in row  # CC 8.0: PTX this driver cannot JIT


def test_table_lists_per_file_errors_and_goes_on(tree: Path) -> None:
    done = run(str(tree))
    assert done.returncode == 3
    assert "broken.so" in done.stdout and "error: named like a shared library" in done.stdout
    assert "libtorch_cuda.so" in done.stdout


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["/no/such/dir"], 66, "no such file"),
        ([str(FATBINS / "bin"), "--gpu", "9"], 64, "not a compute capability"),
        ([str(FATBINS / "bin"), "--gpu", ""], 64, "no compute capability given"),
        ([str(FATBINS / "bin"), "--gpu", " , "], 64, "no compute capability given"),
        # No cubin can name these (a fatbin's arch field is one byte): not a GPU to judge.
        ([str(FATBINS / "bin"), "--gpu", "9999999999999999999.0"], 64, "'9999999999999999999.0'"),
        ([str(FATBINS / "bin"), "--gpu", "25.6"], 64, "not a compute capability"),
        ([str(FATBINS / "bin"), "--gpu", "sm_256"], 64, "'sm_256'"),
        ([str(FATBINS / "bin"), "--gpu", "0.5"], 64, "not a compute capability"),
        ([str(FATBINS / "bin"), "--gpu", "\u00b2.0"], 64, "not a compute capability"),
        ([str(FATBINS / "bin"), "--node", "/no/such/node.json"], 66, ""),
    ],
)
def test_bad_input_is_one_line(args: list[str], code: int, text: str) -> None:
    done = run(*args)
    assert done.returncode == code
    assert len(done.stderr.strip().splitlines()) == 1 and text in done.stderr
    assert "Traceback" not in done.stderr


def test_a_node_gpu_no_device_code_can_target_is_unknown(tmp_path: Path) -> None:
    # A node report is someone else's file: a compute capability past what a fatbin's arch
    # byte can name is not "no kernel" (and not an internal error), it is unknown.
    node = json.loads((REPO / "fixtures/facts/nodes/8x-Tesla-V100S-PCIE-32GB_460.73.01.json").read_text())
    for gpu in node["gpus"]:
        gpu.update(compute_capability="99.9", pci_device_id=None, name="Mystery")
    (tmp_path / "node.json").write_text(json.dumps(node))
    done = run(str(FATBINS / "bin"), "--node", str(tmp_path / "node.json"), "--format", "json")
    assert done.returncode == 3, done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "unknown"
    assert "none device code can be built for" in done.stdout and "internal error" not in done.stderr


# The bar is drawn at once here (GPUDOCTOR_PROGRESS_AFTER=0), not after the usual second.
AT_ONCE = {"GPUDOCTOR_PROGRESS_AFTER": "0", "COLUMNS": "120"}


@pytest.mark.parametrize("shape", ["tree", "wheel", "tar"])
def test_progress_bar_on_a_terminal_only(tree: Path, tmp_path: Path, shape: str) -> None:
    """A tree, wheel or tar scan draws a bar on stderr when it is a terminal, nothing when it
    is piped or with --quiet, and never a byte of it in the JSON on stdout."""
    target = tree
    if shape == "wheel":
        target = tmp_path / "site-1.0-py3-none-any.whl"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:
            for path in sorted(tree.rglob("*")):
                wheel.write(path, path.relative_to(tree).as_posix())
    elif shape == "tar":
        target = tmp_path / "site.tar"
        with tarfile.open(target, "w") as archive:
            archive.add(tree, arcname=".")
    shown = run_on_a_terminal(["kernels", str(target)], AT_ONCE, stream="stderr")
    assert f"scanning {target}" in shown
    assert "━" in shown  # rich's bar
    assert run_on_a_terminal(["kernels", str(target), "--quiet"], AT_ONCE, stream="stderr") == ""
    piped = run_gpudoctor("kernels", str(target), "--format", "json", env=AT_ONCE)
    assert piped.stderr == "" and json.loads(piped.stdout)["binaries"]
    on_screen = run_on_a_terminal(["kernels", str(target), "--format", "json"], AT_ONCE, stream="stdout")
    assert json.loads(on_screen)["binaries"]  # stdout is the JSON, nothing else
