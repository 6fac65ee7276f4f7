"""What a node would report after installing another driver, derived from the matrix.

`installed_driver(driver, gpus, version)` -> (the new `driver` section, notes). The
facts are the ones a real install reports and the rules read:

  version, branch    as given ("650.12"; a bare branch "620" stands for "a driver of R620")
  cuda_version       what nvidia-smi prints as "CUDA Version": the newest CUDA toolkit of
                     rules/matrix/cuda_toolkit_driver.yaml whose minimum driver this version meets.
                     For a driver newer than every branch in that table it is a lower bound,
                     said so in the notes (a newer toolkit may be supported too).
  kernel_module      "open" where a GPU requires the open modules (Blackwell, Grace; gpus and
                     architectures tables), "proprietary" where a GPU does not support them
                     (pre-Turing), else the flavour the node loads today (both are offered;
                     the installer decides), unknown if that is unknown.
  component versions the NVML library and kernel module versions, where the node reported
                     them, become the new version (a completed install: no mismatch).

The branch's lifecycle (designation, end of life) is not set here: gpudoctor.derive.node
derives it from the branch as it does for any node.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from gpudoctor.knowledge import matrix
from gpudoctor.versions import branch_of, parse_version

_DRIVER_VERSION = re.compile(r"^[0-9]{3,4}(\.[0-9]{1,4}){0,2}$")


def valid_driver_version(text: str) -> bool:
    """'650.12', '580.95.05' or a bare branch '620'."""
    return bool(_DRIVER_VERSION.match(text))


def _cuda_rows() -> list[tuple[Any, Any, str]]:
    """(driver version, CUDA version, CUDA text) per toolkit row, newest CUDA first."""
    rows = []
    for row in matrix.table("cuda_toolkit_driver"):
        driver, cuda = parse_version(row["min_driver"]), parse_version(row["cuda"])
        if driver is not None and cuda is not None:
            rows.append((driver, cuda, row["cuda"]))
    rows.sort(key=lambda r: r[1], reverse=True)
    return rows


def reported_cuda_version(version: str) -> tuple[str | None, str | None]:
    """("13.0", None) for 580.95.05; (lower bound, note) beyond the table; (None, reason) below it."""
    wanted = parse_version(version)
    if wanted is None:
        return None, f"driver version {version!r} is not a version"
    rows = _cuda_rows()
    for driver, cuda, _text in rows:
        if wanted >= driver:
            release = (*cuda.release, 0)
            reported = f"{release[0]}.{release[1]}"
            newest_branch = max(r[0].release[0] for r in rows)
            if wanted.release[0] > newest_branch:
                return reported, (
                    f"driver {version} is newer than every driver in the CUDA toolkit/driver table "
                    f"(newest: R{newest_branch}): CUDA {reported} is a lower bound of what it supports"
                )
            return reported, None
    return None, f"driver {version} is older than every driver in the CUDA toolkit/driver table"


def _module_flavour(gpus: list[dict[str, Any]], today: str | None) -> tuple[str | None, str | None]:
    required, unsupported = [], []
    for gpu in gpus:
        model = matrix.gpu_by_name(gpu.get("name")) or matrix.gpu_by_pci_id(gpu.get("pci_device_id"))
        arch = matrix.architecture(gpu.get("architecture") or (model.architecture if model else None))
        if (model and model.open_module_required) or (arch and arch.open_module == "required"):
            required.append(str(gpu.get("name")))
        elif arch and arch.open_module == "unsupported":
            unsupported.append(str(gpu.get("name")))
    if required and not unsupported:
        return "open", None
    if unsupported and not required:
        return "proprietary", None
    if required and unsupported:
        return None, "GPUs that need the open module beside GPUs that do not support it"
    if today:
        return today, None
    return None, "kernel module flavour: both are offered for these GPUs and today's is unknown"


def installed_driver(
    driver: dict[str, Any], gpus: list[dict[str, Any]], version: str
) -> tuple[dict[str, Any], list[str]]:
    """The node's `driver` section after installing `version`, and notes on what is assumed."""
    new = copy.deepcopy(driver)
    unknown: dict[str, str] = dict(new.get("unknown") or {})
    notes: list[str] = []
    new.update(present=True, version=version, branch=branch_of(version))
    for key in ("present", "version", "branch"):
        unknown.pop(key, None)
    cuda, note = reported_cuda_version(version)
    new["cuda_version"] = cuda
    if cuda is None:
        unknown["cuda_version"] = str(note)
    else:
        unknown.pop("cuda_version", None)
        if note:
            notes.append(note)
    flavour, reason = _module_flavour(gpus, driver.get("kernel_module"))
    new["kernel_module"] = flavour
    if flavour is None:
        unknown["kernel_module"] = str(reason)
    else:
        unknown.pop("kernel_module", None)
    for key in ("kernel_module_version", "nvml_version"):
        if new.get(key) is not None:
            new[key] = version
    if new.get("library_mismatch") is not None:
        new["library_mismatch"] = False
    new["unknown"] = unknown
    return new, notes
