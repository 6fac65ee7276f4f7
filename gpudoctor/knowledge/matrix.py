"""Matrix tables (`kind: matrix` files in rules/matrix/): schema and typed look-ups.

Each file holds one table (`table: <name>`) of rows; every row carries `refs`
(URLs) and an optional `note` (where sources disagree). Look-ups load the
shipped tables once per process:

    gpu_by_name("NVIDIA A800-SXM4-80GB").compute_capability   -> "8.0"
    gpu_by_pci_id("2330").architecture                       -> "hopper"
    min_driver_for_cuda("12.4.1")                            -> "550.54.15"
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from gpudoctor.knowledge.schema import RuleFileError, check_keys
from gpudoctor.versions import parse_version

# column -> (type, required); every table also has refs (required) and note (optional).
_STR, _INT, _BOOL, _VERSION, _STRS, _INTS = "str", "int", "bool", "version", "list[str]", "list[int]"
TABLES: dict[str, dict[str, tuple[str, bool]]] = {
    "cuda_toolkit_driver": {"cuda": (_VERSION, True), "min_driver": (_VERSION, True)},
    "cuda_mvc": {"cuda_major": (_INT, True), "min_driver": (_VERSION, True)},
    "forward_compat": {"cuda": (_VERSION, True), "host_branches": (_INTS, True)},
    "driver_branches": {
        "branch": (_INT, True),
        "designation": (_STR, True),
        "eol": (_STR, True),
        "max_cuda_major": (_INT, False),
    },
    "architectures": {
        "architecture": (_STR, True),
        "compute_capabilities": (_STRS, True),
        "first_cuda": (_VERSION, True),
        "last_cuda": (_VERSION, False),
        "min_driver_branch": (_INT, False),
        "last_driver_branch": (_INT, False),
        "open_module": (_STR, True),
    },
    "compute_capabilities": {
        "cc": (_VERSION, True),
        "architecture": (_STR, True),
        "first_cuda": (_VERSION, True),
        "last_cuda": (_VERSION, False),
    },
    "gpus": {
        "names": (_STRS, True),
        "pci_device_ids": (_STRS, False),
        "architecture": (_STR, True),
        "compute_capability": (_VERSION, True),
        "datacenter": (_BOOL, True),
        "form_factor": (_STR, True),
        "nvswitch_baseboard": (_BOOL, False),
        "grace": (_BOOL, False),
        "min_driver_branch": (_INT, False),
        "open_module_required": (_BOOL, False),
        "forward_compat": (_STR, False),
        "ecc": (_BOOL, False),
    },
    "gpu_chips": {
        "chips": (_STRS, True),
        "architecture": (_STR, True),
        "compute_capability": (_VERSION, True),
        "evidence": (_STR, True),
    },
}
_DESIGNATIONS = ("ltsb", "pb", "nfb")
_OPEN_MODULE = ("required", "supported", "unsupported")
# NVIDIA's forward-compatibility page: "applicable only for systems with NVIDIA Data Center
# GPUs; Select NGC Server Ready SKUs of RTX cards; Jetson boards". It names no RTX SKU, so
# an RTX professional board is `select_rtx`: eligibility unknown.
FORWARD_COMPAT = ("datacenter", "jetson", "select_rtx", "no")


@dataclass(frozen=True)
class MatrixTable:
    name: str
    rows: list[dict[str, Any]]
    path: str


def _check_value(value: Any, kind: str) -> bool:
    if kind == _STR:
        return isinstance(value, str) and bool(value.strip())
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _VERSION:
        return isinstance(value, str) and parse_version(value) is not None
    if kind == _STRS:
        return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
    if kind == _INTS:
        return isinstance(value, list) and bool(value) and all(isinstance(v, int) for v in value)
    return False


def _is_eol(text: str) -> bool:
    year, _, month = text.partition("-")
    return text in ("unknown", "unlisted") or (
        len(year) == 4 and year.isdigit() and month.isdigit() and 1 <= int(month) <= 12
    )


def validate_matrix_document(doc: dict[str, Any], path: str) -> list[MatrixTable]:
    check_keys(doc, {"kind", "table", "rows"}, None, "")
    name = doc.get("table")
    if not isinstance(name, str) or name not in TABLES:
        raise RuleFileError(None, "table", f"expected one of {', '.join(TABLES)}, got {name!r}")
    columns = TABLES[name]
    rows = doc.get("rows")
    if not isinstance(rows, list) or not rows:
        raise RuleFileError(None, "rows", "expected a non-empty list of rows")
    for i, row in enumerate(rows):
        where = f"rows[{i}]"
        if not isinstance(row, dict):
            raise RuleFileError(None, where, "a row must be a mapping")
        row_id = f"{name}[{i}]"
        check_keys(row, {*columns, "refs", "note", "source"}, row_id, f"{where}.")
        for column, (kind, required) in columns.items():
            if column not in row or row[column] is None:
                if required:
                    raise RuleFileError(row_id, f"{where}.{column}", "missing")
                continue
            if not _check_value(row[column], kind):
                raise RuleFileError(row_id, f"{where}.{column}", f"expected {kind}, got {row[column]!r}")
        refs = row.get("refs")
        field_report = row.get("source") == "field report"
        if not field_report and (
            not isinstance(refs, list)
            or not refs
            or not all(str(r).startswith(("https://", "http://")) for r in refs)
        ):
            raise RuleFileError(
                row_id, f"{where}.refs", "every row needs a list of URLs (or source: field report)"
            )
        if name == "driver_branches" and not _is_eol(row["eol"]):
            raise RuleFileError(row_id, f"{where}.eol", 'must be "YYYY-MM", "unlisted" or "unknown"')
        if name == "driver_branches" and row["designation"] not in _DESIGNATIONS:
            raise RuleFileError(row_id, f"{where}.designation", f"must be one of {', '.join(_DESIGNATIONS)}")
        if name == "gpus" and row.get("forward_compat", "datacenter") not in FORWARD_COMPAT:
            raise RuleFileError(
                row_id, f"{where}.forward_compat", f"must be one of {', '.join(FORWARD_COMPAT)}"
            )
        if name == "architectures" and row["open_module"] not in _OPEN_MODULE:
            raise RuleFileError(row_id, f"{where}.open_module", f"must be one of {', '.join(_OPEN_MODULE)}")
    return [MatrixTable(name, rows, str(path))]


# --- typed look-ups ----------------------------------------------------------------


@dataclass(frozen=True)
class GpuModel:
    names: tuple[str, ...]
    architecture: str
    compute_capability: str
    datacenter: bool
    form_factor: str
    pci_device_ids: tuple[str, ...] = ()
    nvswitch_baseboard: bool = False
    grace: bool = False
    min_driver_branch: int | None = None
    open_module_required: bool = False
    forward_compat: str | None = None  # FORWARD_COMPAT; None: "datacenter" if datacenter else "no"
    ecc: bool | None = None  # True: an NVIDIA page says the board has ECC memory; None: not known
    refs: tuple[str, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class Architecture:
    architecture: str
    compute_capabilities: tuple[str, ...]
    first_cuda: str
    open_module: str
    last_cuda: str | None = None
    min_driver_branch: int | None = None
    last_driver_branch: int | None = None
    refs: tuple[str, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class ComputeCapability:
    cc: str
    architecture: str
    first_cuda: str
    last_cuda: str | None = None
    refs: tuple[str, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class DriverBranch:
    branch: int
    designation: str
    eol: str = "unknown"  # "YYYY-MM", "unlisted" (out of support, date unpublished) or "unknown"
    max_cuda_major: int | None = None
    refs: tuple[str, ...] = ()
    note: str | None = None


def _typed(cls: type, row: dict[str, Any]) -> Any:
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in row.items() if k != "source"}
    return cls(**values)


@lru_cache(maxsize=1)
def _tables() -> dict[str, list[dict[str, Any]]]:
    """The shipped matrix tables, loaded once per process."""
    from gpudoctor.knowledge.loader import load_kind, shipped_root

    tables: dict[str, list[dict[str, Any]]] = {}
    for _path, loaded in load_kind("matrix", [shipped_root()]):
        for matrix_table in loaded:
            tables.setdefault(matrix_table.name, []).extend(matrix_table.rows)
    return tables


def table(name: str) -> list[dict[str, Any]]:
    return _tables().get(name, [])


@lru_cache(maxsize=1)
def _gpu_models() -> tuple[GpuModel, ...]:
    return tuple(_typed(GpuModel, row) for row in table("gpus"))


@lru_cache(maxsize=4096)
def gpu_by_name(name: str | None) -> GpuModel | None:
    """The product row whose name globs match `name` (case-insensitive), first match wins."""
    if not name:
        return None
    lowered = name.strip().lower()
    for model in _gpu_models():
        if any(fnmatchcase(lowered, pattern.lower()) for pattern in model.names):
            return model
    return None


def normal_device_id(device_id: str | None) -> str | None:
    """ "2330", "0x2330" or NVML's combined "233010DE" -> "2330"; None if it is none of those."""
    if not device_id:
        return None
    text = device_id.strip().upper().removeprefix("0X")
    if len(text) == 8 and text.endswith("10DE"):
        text = text[:4]
    valid = len(text) == 4 and text != "0000" and all(c in "0123456789ABCDEF" for c in text)
    return text if valid else None


@lru_cache(maxsize=4096)
def gpu_by_pci_id(device_id: str | None) -> GpuModel | None:
    """By PCI device id: "2330", "0x2330" or NVML's combined "233010DE"."""
    text = normal_device_id(device_id)
    if text is None:
        return None
    for model in _gpu_models():
        if text in model.pci_device_ids:
            return model
    return None


@lru_cache(maxsize=64)
def architecture(name: str | None) -> Architecture | None:
    for row in table("architectures"):
        if row["architecture"] == name:
            return _typed(Architecture, row)  # type: ignore[no-any-return]
    return None


@lru_cache(maxsize=64)
def compute_capability(cc: str | None) -> ComputeCapability | None:
    version = parse_version(cc) if cc else None
    if version is None:
        return None
    for row in table("compute_capabilities"):
        if parse_version(row["cc"]) == version:
            return _typed(ComputeCapability, row)  # type: ignore[no-any-return]
    return None


@lru_cache(maxsize=64)
def driver_branch(branch: int | None) -> DriverBranch | None:
    for row in table("driver_branches"):
        if row["branch"] == branch:
            return _typed(DriverBranch, row)  # type: ignore[no-any-return]
    return None


def _major_minor(version: Any) -> tuple[int, int]:
    release = (*version.release, 0)
    return release[0], release[1]


@lru_cache(maxsize=1024)
def min_driver_for_cuda(cuda_version: str | None) -> str | None:
    """Minimum Linux driver of a CUDA toolkit release ("12.4.1" -> "550.54.15"); None if not in the matrix.

    A release between two rows of the same minor takes the lower row (update
    releases share the driver branch); a minor not in the matrix is unknown.
    """
    wanted = parse_version(cuda_version) if cuda_version else None
    if wanted is None:
        return None
    same_minor = []
    for row in table("cuda_toolkit_driver"):
        version = parse_version(row["cuda"])
        if version is not None and _major_minor(version) == _major_minor(wanted):
            same_minor.append((version, row["min_driver"]))
    released = [entry for entry in same_minor if entry[0] <= wanted]
    if released:
        return max(released, key=lambda entry: entry[0])[1]
    # a bare "12.4" names the GA release
    return min(same_minor, key=lambda entry: entry[0])[1] if same_minor else None


@lru_cache(maxsize=64)
def mvc_floor(cuda_major: int | None) -> str | None:
    """The minor-version-compatibility driver floor of a CUDA major (13 -> "580")."""
    for row in table("cuda_mvc"):
        if row["cuda_major"] == cuda_major:
            return str(row["min_driver"])
    return None


@lru_cache(maxsize=256)
def forward_compat_branches(cuda_version: str | None) -> tuple[int, ...] | None:
    """Host branches the cuda-compat package of that CUDA major.minor supports, where known."""
    wanted = parse_version(cuda_version) if cuda_version else None
    if wanted is None:
        return None
    for row in table("forward_compat"):
        version = parse_version(row["cuda"])
        if version is not None and _major_minor(version) == _major_minor(wanted):
            return tuple(row["host_branches"])
    return None
