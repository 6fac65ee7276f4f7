"""Generate the signature catalogs (rules/signatures/catalog-*.yaml) from NVIDIA's own tables.

Each catalog lists every code of one family with its number, name and the vendor's
description, so `gpudoctor explain` can say what any of them means:

    family        source (excerpt under fixtures/catalogs/)
    cuda-driver   CUresult enum and its doc comments, cuda.h of the CUDA toolkit
    cuda-runtime  cudaError enum and its doc comments, driver_types.h; cudaGetErrorString texts of libcudart
    xid           NVIDIA Xid catalog (Ampere and newer) and the older Xid table, docs.nvidia.com
    nccl          ncclResult_t enum of nccl.h and ncclGetErrorString texts of libnccl (nvidia-nccl-cu13 wheel)
    ibverbs       enum ibv_wc_status of verbs.h (libibverbs-dev) and ibv_wc_status_str texts (rdma-core)
    cublas, cudnn, cufft, cusparse: the status enums of the nvidia-* wheels' headers

Two steps, so the generated files can be checked without the toolkits:

    # 1. cut the excerpts out of the installed sources (needs nvcc, the wheels, the .deb)
    python tools/gen_signature_catalogs.py excerpts --cuda /usr/local/cuda \\
        --wheels /tmp/wheels --verbs-include /tmp/deb/usr/include
    # 2. generate the catalogs from the committed excerpts (what the tests re-run)
    python tools/gen_signature_catalogs.py generate [--out rules/signatures]

Step 1 downloads nothing itself: `pip download --no-deps nvidia-nccl-cu13 nvidia-cublas-cu12
nvidia-cudnn-cu12 nvidia-cufft-cu12 nvidia-cusparse-cu12 -d /tmp/wheels` and `apt-get download
libibverbs-dev` (then `dpkg-deb -x`) fetch the inputs; wheels are unpacked to a temp dir, never committed.
"""

from __future__ import annotations

import argparse
import ctypes
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
EXCERPTS = REPO / "fixtures" / "catalogs"
OUT = REPO / "rules" / "signatures"
TOOL = "tools/gen_signature_catalogs.py"

# ---------------------------------------------------------------------------
# C header parsing: one enum's enumerators, values and doc comments.

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+(.+?)[ \t]*$", re.M)


@dataclass
class Enumerator:
    name: str
    value: int
    doc: str = ""
    alias_of: str | None = None


def enum_block(text: str, enum_name: str) -> str:
    """The source text of `enum_name` (a typedef name or an enum tag), braces included."""
    tag = re.search(rf"\benum\s+(?:\w+\s+)*?{re.escape(enum_name)}\s*\{{", text)
    if tag:
        start = tag.start()
        brace = tag.end() - 1
    else:
        tail = re.search(rf"\}}\s*{re.escape(enum_name)}\s*;", text)
        if not tail:
            raise ValueError(f"enum {enum_name} not found")
        brace = text.rfind("{", 0, tail.start())
        start = text.rfind("typedef", 0, brace)
    depth = 0
    for index in range(brace, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                end = text.find(";", index)
                return text[start : end + 1]
    raise ValueError(f"enum {enum_name}: unbalanced braces")


def clean_doc(raw: str) -> str:
    text = raw.strip()
    text = re.sub(r"^/\*\*?<?|\*/$", "", text).strip()
    lines = [re.sub(r"^\s*\*\s?", "", line) for line in text.splitlines()]
    text = " ".join(line.strip() for line in lines)
    text = re.sub(r"@since[^.]*\.[^ ]*", "", text)
    text = re.sub(r"\\(?:p|ref|c|e)\s+", "", text)
    text = text.replace("::", "")
    return re.sub(r"\s+", " ", text).strip()


def _evaluate(expr: str, known: dict[str, int]) -> int | None:
    expr = expr.strip()
    shift = re.fullmatch(r"\(?\s*(\w+)\s*<<\s*(\w+)\s*\)?", expr)
    if shift:
        left, right = (_evaluate(part, known) for part in shift.groups())
        return None if left is None or right is None else left << right
    if expr in known:
        return known[expr]
    try:
        return int(expr.rstrip("uUlL"), 0)
    except ValueError:
        return None


def parse_enum(text: str, enum_name: str) -> list[Enumerator]:
    block = enum_block(text, enum_name)
    body = block[block.index("{") + 1 : block.rindex("}")]
    comments = [(m.start(), m.group(0)) for m in _COMMENT.finditer(body)]
    stripped = _COMMENT.sub(lambda m: " " * len(m.group(0)), body)
    items: list[tuple[int, str, str | None]] = []
    offset = 0
    for part in stripped.split(","):
        found = re.search(r"([A-Za-z_]\w*)(?:\s+[A-Z_][A-Z0-9_]*)*\s*(?:=\s*(.+?))?\s*$", part.strip(), re.S)
        if found and part.strip():
            position = offset + part.index(found.group(1))
            items.append((position, found.group(1), found.group(2)))
        offset += len(part) + 1
    known: dict[str, int] = {}
    result: list[Enumerator] = []
    next_value = 0
    for _position, name, expr in items:
        alias = expr.strip() if expr and expr.strip() in known else None
        value = next_value if expr is None else _evaluate(expr, known)
        if value is None:
            continue
        known[name] = value
        next_value = value + 1
        result.append(Enumerator(name, value, alias_of=alias))
    # A `/** doc */` comment documents the next enumerator, a `/**< doc */` one the previous.
    positions = [p for p, _n, _e in items if _n in known]
    by_position = {p: e for p, e in zip(positions, result, strict=True)}
    for at, comment in comments:
        if not comment.startswith("/**"):
            continue
        if comment.startswith("/**<"):
            before = [p for p in positions if p < at]
            target = by_position[before[-1]] if before else None
        else:
            after = [p for p in positions if p > at]
            target = by_position[after[0]] if after else None
        if target is not None and not target.doc:
            target.doc = clean_doc(comment)
    return result


def defines(text: str) -> dict[str, str]:
    return {m.group(1): _COMMENT.sub("", m.group(2)).strip() for m in _DEFINE.finditer(text)}


# ---------------------------------------------------------------------------
# Families: how each one's codes are written in logs, and what to tell the user.


@dataclass
class Entry:
    code: int
    name: str
    description: str
    severity: str = "fail"
    messages: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Catalog:
    family: str
    id_prefix: str
    title: str
    source: str
    version: str
    refs: list[str]
    recognizers: list[dict[str, str]]
    cause: str
    fix: str
    entries: list[Entry]
    inputs: list[str]

    def document(self) -> dict[str, object]:
        entries = []
        for entry in sorted(self.entries, key=lambda e: (e.code, e.name)):
            item: dict[str, object] = {"code": entry.code, "name": entry.name}
            if entry.description:
                item["description"] = entry.description
            if entry.severity != "fail":
                item["severity"] = entry.severity
            if entry.messages:
                item["messages"] = entry.messages
            item.update(entry.extra)
            entries.append(item)
        return {
            "kind": "signatures",
            "catalog": {
                "family": self.family,
                "id_prefix": self.id_prefix,
                "title": self.title,
                "source": self.source,
                "version": self.version,
                "refs": self.refs,
                "recognizers": self.recognizers,
                "cause": self.cause,
                "fix": self.fix,
                "entries": entries,
            },
        }


def _read(name: str) -> str:
    return (EXCERPTS / name).read_text(encoding="utf-8")


def _not_an_error(doc: str) -> bool:
    # NVIDIA's own words for result codes that report a state, not a failure (e.g. NOT_READY).
    return "not actually an error" in doc.lower()


def _name_recognizer(names: list[str]) -> dict[str, str]:
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=lambda n: (-len(n), n)))
    return {"regex": rf"\b(?P<name>{alternatives})\b", "key": "name"}


def _cuda_entries(text: str, enum_name: str, skip: str) -> list[Entry]:
    entries = []
    for item in parse_enum(text, enum_name):
        if item.name == skip or item.value == 0:
            continue
        entries.append(Entry(item.value, item.name, item.doc, "info" if _not_an_error(item.doc) else "fail"))
    return entries


def _entries_with_messages(text: str, enum_name: str, strings: dict[str, str], skip: str = "") -> list[Entry]:
    """The enum's non-zero codes, each described and recognised by the library's own message text."""
    entries = []
    for item in parse_enum(text, enum_name):
        if item.value == 0 or item.name == skip:
            continue
        message = strings.get(item.name, "")
        entries.append(Entry(item.value, item.name, message, messages=[message] if message else []))
    return entries


def cuda_driver() -> Catalog:
    text = _read("cuda.h.excerpt")
    version = defines(text)["CUDA_VERSION"]
    entries = _cuda_entries(text, "CUresult", "CUDA_SUCCESS")
    return Catalog(
        family="cuda-driver",
        id_prefix="GD-CUDRV",
        title="CUDA driver API error",
        source=f"cuda.h of the CUDA toolkit (CUDA_VERSION {version}), enum cudaError_enum (CUresult) and its doc comments",
        version=version,
        refs=["https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__TYPES.html"],
        recognizers=[
            _name_recognizer([e.name for e in entries]),
            {"regex": r"\bCUresult\s*[:=]?\s*(?P<code>\d{1,4})\b", "key": "code"},
            {"regex": r"\bCUDA driver (?:API )?error(?: code)?\s*[:=]?\s*(?P<code>\d{1,4})\b", "key": "code"},
        ],
        cause="The CUDA driver API returned {entry.name} ({entry.code}): {entry.description}",
        fix=(
            "Act on the first CUDA error in the log: later ones are often its consequences (a failed context "
            "makes every later call fail). Find the call that returned it, and check the driver, the GPU and "
            "what the call was given against NVIDIA's description."
        ),
        entries=entries,
        inputs=["cuda.h.excerpt"],
    )


def _cudart_strings() -> dict[int, str]:
    strings: dict[int, str] = {}
    for line in _read("cudart_error_strings.txt").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        code, _name, message = line.split("|", 2)
        strings[int(code)] = message
    return strings


def cuda_runtime() -> Catalog:
    text = _read("driver_types.h.excerpt")
    version = defines(text)["CUDART_VERSION"]
    entries = _cuda_entries(text, "cudaError", "cudaSuccess")
    strings = _cudart_strings()
    for entry in entries:
        message = strings.get(entry.code)
        if message and message != "unrecognized error code":
            entry.messages = [message]
    return Catalog(
        family="cuda-runtime",
        id_prefix="GD-CUDART",
        title="CUDA runtime API error",
        source=(
            f"driver_types.h of the CUDA toolkit (CUDART_VERSION {version}), enum cudaError and its doc comments; "
            "messages: cudaGetErrorString of the toolkit's libcudart"
        ),
        version=version,
        refs=["https://docs.nvidia.com/cuda/cuda-runtime-api/group__CUDART__TYPES.html"],
        recognizers=[
            _name_recognizer([e.name for e in entries]),
            {"regex": r"\bCUDA (?:runtime )?error(?: code)?\s*[:=]?\s*(?P<code>\d{1,5})\b", "key": "code"},
            {"regex": r"\bcudaError(?:_t)?\s*[:=]?\s*(?P<code>\d{1,5})\b", "key": "code"},
            {"regex": r"\bCUDA error: (?P<message>[^\n]+)", "key": "message"},
        ],
        cause='The CUDA runtime returned {entry.name} ({entry.code}, "{entry.message}"): {entry.description}',
        fix=(
            "Act on the first CUDA error in the log: CUDA errors are sticky, later ones are often consequences. "
            "Kernel errors are reported asynchronously at a later API call, so rerun with CUDA_LAUNCH_BLOCKING=1 "
            "to see the call that failed; then check it against NVIDIA's description."
        ),
        entries=entries,
        inputs=["driver_types.h.excerpt", "cudart_error_strings.txt"],
    )


def _pipe_rows(name: str) -> list[list[str]]:
    rows = []
    for line in _read(name).splitlines():
        if line.startswith("#") or not line.strip():
            continue
        rows.append(line.split("|"))
    return rows


def _header_value(name: str, key: str) -> str:
    for line in _read(name).splitlines():
        if line.startswith(f"# {key}:"):
            return line.split(":", 1)[1].strip()
    raise ValueError(f"{name}: no '# {key}:' line")


def xid() -> Catalog:
    archive: dict[int, list[str]] = {}
    for code, failure in _pipe_rows("xid-archive.txt"):
        low, _, high = code.partition("-")
        for number in range(int(low), int(high or low) + 1):
            archive.setdefault(number, []).append(failure.strip())
    entries = []
    for code, mnemonic, description, immediate, investigatory in _pipe_rows("xid-catalog.txt"):
        number = int(code)
        older = [f for f in archive.get(number, []) if f not in ("Unused", "Reserved")]
        text = description.strip()
        if older and text in ("Unused", ""):
            text = f"{text} on Ampere and newer; on Volta and older: {'; '.join(older)}"
        elif older and older != [text]:
            text = f"{text} (on Volta and older: {'; '.join(older)})"
        severity = "info" if immediate.strip() == "IGNORE" else "fail"
        entries.append(
            Entry(
                number,
                mnemonic.strip(),
                text,
                severity,
                extra={
                    "immediate_action": immediate.strip() or "not given",
                    "investigatory_action": investigatory.strip() or "not given",
                },
            )
        )
    return Catalog(
        family="xid",
        id_prefix="GD-XID",
        title="NVIDIA driver Xid event",
        source=(
            f"NVIDIA Xid catalog ({_header_value('xid-catalog.txt', 'SOURCE')}, retrieved "
            f"{_header_value('xid-catalog.txt', 'RETRIEVED').split(',')[0]}) and the older Xid table "
            f"({_header_value('xid-archive.txt', 'SOURCE')})"
        ),
        version=_header_value("xid-catalog.txt", "RETRIEVED").split(",")[0],
        refs=[
            "https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html",
            "https://docs.nvidia.com/deploy/xid-errors/archive/index.html",
        ],
        recognizers=[
            {
                "regex": r"\bXid \((?:PCI:)?(?P<pci>[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}(?:\.[0-9a-f])?)\):? (?P<code>\d{1,3})\b",
                "key": "code",
            },
            {"regex": r"\bXid[ =:#]{1,3}(?P<code>\d{1,3})\b", "key": "code"},
        ],
        cause="Xid {entry.code} ({entry.name}) on GPU {captured.pci|'(PCI address not in the log)'}: {entry.description}",
        fix=(
            "NVIDIA's resolution bucket for this Xid: immediate action {entry.immediate_action}, "
            "investigatory action {entry.investigatory_action} (see the Xid catalog)."
        ),
        entries=entries,
        inputs=["xid-catalog.txt", "xid-archive.txt"],
    )


def _string_table(name: str) -> dict[str, str]:
    table = {}
    for row in _pipe_rows(name):
        table[row[1]] = row[2]
    return table


def nccl() -> Catalog:
    text = _read("nccl.h.excerpt")
    found = defines(text)
    version = f"{found['NCCL_MAJOR']}.{found['NCCL_MINOR']}.{found['NCCL_PATCH']}"
    strings = _string_table("nccl_error_strings.txt")
    entries = _entries_with_messages(text, "ncclResult_t", strings, skip="ncclNumResults")
    return Catalog(
        family="nccl",
        id_prefix="GD-NCCL",
        title="NCCL result code",
        source=f"nccl.h of NCCL {version} (PyPI nvidia-nccl-cu13), ncclResult_t; messages: ncclGetErrorString of its libnccl.so.2",
        version=version,
        refs=["https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/api/types.html#ncclresult-t"],
        recognizers=[
            _name_recognizer([e.name for e in entries]),
            {"regex": r"\bNCCL error\b[^\n]*?, (?P<message>[a-z][^,\n]*)", "key": "message"},
        ],
        cause="NCCL returned {entry.name} ({entry.code}): {entry.description}",
        fix=(
            "Rerun with NCCL_DEBUG=INFO (NCCL_DEBUG_SUBSYS=INIT,NET for setup failures): the NCCL WARN line "
            "just before this error names the failing call (CUDA, socket, IB verbs) on the failing rank."
        ),
        entries=entries,
        inputs=["nccl.h.excerpt", "nccl_error_strings.txt"],
    )


def _ibv_strings() -> dict[str, str]:
    text = _read("rdma-core_ibv_wc_status_str.c")
    return dict(re.findall(r"\[(IBV_WC_\w+)\]\s*=\s*\"([^\"]*)\"", text))


def ibverbs() -> Catalog:
    text = _read("verbs.h.excerpt")
    version = _header_value("verbs.h.excerpt", "VERSION")
    strings = _ibv_strings()
    entries = _entries_with_messages(text, "ibv_wc_status", strings)
    return Catalog(
        family="ibverbs",
        id_prefix="GD-IBV",
        title="InfiniBand/RoCE work completion error",
        source=f"enum ibv_wc_status of infiniband/verbs.h (Debian libibverbs-dev {version}); texts: ibv_wc_status_str of rdma-core",
        version=version,
        refs=["https://man7.org/linux/man-pages/man3/ibv_poll_cq.3.html"],
        recognizers=[
            _name_recognizer([e.name for e in entries]),
            {
                "regex": r"\bGot completion\b[^\n]*?\b(?:with error|with status|status)\s*[=:]?\s*(?P<code>\d{1,2})\b",
                "key": "code",
            },
        ],
        cause='An RDMA work request completed with status {entry.code} ({entry.name}, "{entry.description}").',
        fix=(
            "Check the fabric path between the two ranks named on the line (ibv_devinfo, port state, link "
            "errors with perfquery/ethtool -S); on RoCE check the GID index and traffic class NCCL uses."
        ),
        entries=entries,
        inputs=["verbs.h.excerpt", "rdma-core_ibv_wc_status_str.c"],
    )


@dataclass
class LibrarySpec:
    family: str
    id_prefix: str
    title: str
    excerpt: str
    enum_name: str
    version_keys: tuple[str, ...]
    package: str
    header: str
    refs: list[str]
    fix: str


LIBRARIES = [
    LibrarySpec(
        "cublas",
        "GD-CUBLAS",
        "cuBLAS status",
        "cublas_api.h.excerpt",
        "cublasStatus_t",
        ("CUBLAS_VER_MAJOR", "CUBLAS_VER_MINOR", "CUBLAS_VER_PATCH"),
        "nvidia-cublas-cu12",
        "cublas_api.h",
        ["https://docs.nvidia.com/cuda/cublas/#cublasstatus-t"],
        "Check that the cuBLAS the program loads was built for this GPU's architecture and this CUDA driver "
        "(a status from a library call often reports an earlier CUDA error or missing kernels for the GPU).",
    ),
    LibrarySpec(
        "cudnn",
        "GD-CUDNN",
        "cuDNN status",
        "cudnn_graph.h.excerpt",
        "cudnnStatus_t",
        ("CUDNN_MAJOR", "CUDNN_MINOR", "CUDNN_PATCHLEVEL"),
        "nvidia-cudnn-cu12",
        "cudnn_graph.h",
        [
            "https://docs.nvidia.com/deeplearning/cudnn/backend/latest/api/cudnn-graph-library.html#cudnnstatus-t"
        ],
        "Check that the cuDNN the program loads is the version the framework was built against and supports "
        "this GPU and CUDA version; rerun with CUDNN_LOGERR_DBG=1 CUDNN_LOGDEST_DBG=stderr for the failing call.",
    ),
    LibrarySpec(
        "cufft",
        "GD-CUFFT",
        "cuFFT result",
        "cufft.h.excerpt",
        "cufftResult",
        ("CUFFT_VER_MAJOR", "CUFFT_VER_MINOR", "CUFFT_VER_PATCH"),
        "nvidia-cufft-cu12",
        "cufft.h",
        ["https://docs.nvidia.com/cuda/cufft/#cufftresult"],
        "Check the plan parameters and that the cuFFT the program loads matches its CUDA version and this GPU.",
    ),
    LibrarySpec(
        "cusparse",
        "GD-CUSPARSE",
        "cuSPARSE status",
        "cusparse.h.excerpt",
        "cusparseStatus_t",
        ("CUSPARSE_VER_MAJOR", "CUSPARSE_VER_MINOR", "CUSPARSE_VER_PATCH"),
        "nvidia-cusparse-cu12",
        "cusparse.h",
        ["https://docs.nvidia.com/cuda/cusparse/#cusparsestatus-t"],
        "Check the call's arguments and that the cuSPARSE the program loads matches its CUDA version and this GPU.",
    ),
]


def library(spec: LibrarySpec) -> Catalog:
    text = _read(spec.excerpt)
    found = defines(text)
    version = ".".join(found[key] for key in spec.version_keys)
    entries = []
    items = parse_enum(text, spec.enum_name)
    names = {item.value: item.name for item in items if item.alias_of is None}
    for item in items:
        if item.value == 0:
            continue
        description = item.doc
        if item.alias_of is not None or (item.name != names.get(item.value) and item.value in names):
            canonical = item.alias_of or names[item.value]
            description = (
                f"{description} (older name of {canonical})".strip()
                if description
                else f"Older name of {canonical}."
            )
        entries.append(Entry(item.value, item.name, description))
    return Catalog(
        family=spec.family,
        id_prefix=spec.id_prefix,
        title=spec.title,
        source=f"{spec.header} of {spec.package} {version} (PyPI wheel), enum {spec.enum_name}",
        version=version,
        refs=spec.refs,
        recognizers=[_name_recognizer([e.name for e in entries])],
        cause=f"{spec.title.split()[0]} returned {{entry.name}} ({{entry.code}}). {{entry.description}}",
        fix=spec.fix,
        entries=entries,
        inputs=[spec.excerpt],
    )


def catalogs() -> list[Catalog]:
    return [cuda_driver(), cuda_runtime(), xid(), nccl(), ibverbs(), *(library(spec) for spec in LIBRARIES)]


def render(catalog: Catalog) -> str:
    header = [
        f"# GENERATED by {TOOL} from fixtures/catalogs/{', fixtures/catalogs/'.join(catalog.inputs)}; do not edit.",
        f"# Source: {catalog.source}.",
        f"# Version: {catalog.version}. Entries: {len(catalog.entries)}.",
    ]
    body = yaml.safe_dump(catalog.document(), sort_keys=False, allow_unicode=True, width=110)
    return "\n".join(header) + "\n" + body


def generate(out: Path) -> dict[str, int]:
    counts = {}
    for catalog in catalogs():
        (out / f"catalog-{catalog.family}.yaml").write_text(render(catalog), encoding="utf-8")
        counts[catalog.family] = len(catalog.entries)
    return counts


# ---------------------------------------------------------------------------
# Step 1: cut the excerpts out of the installed sources.


def _excerpt(source: Path, label: str, enum_names: list[str], define_keys: list[str]) -> str:
    text = source.read_text(encoding="utf-8", errors="replace")
    found = defines(text)
    lines = [f"/* SOURCE: {label}", " * EXCERPT: the version defines and the enums below, verbatim. */"]
    lines += [f"#define {key} {found[key]}" for key in define_keys]
    lines += [enum_block(text, name) for name in enum_names]
    return "\n".join(lines) + "\n"


def _wheel_header(wheels: Path, package: str, header: str, tmp: Path) -> tuple[Path, str]:
    prefix = package.replace("-", "_")
    wheel = next(iter(sorted(wheels.glob(f"{prefix}-*.whl"))), None)
    if wheel is None:
        raise SystemExit(f"no {prefix}-*.whl in {wheels} (pip download --no-deps {package} -d {wheels})")
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(f"/include/{header}"))
        target = tmp / header
        target.write_bytes(archive.read(member))
    return target, wheel.name


def _cudart_strings_table(cuda: Path, tmp: Path) -> str:
    program = tmp / "cudart_strings.c"
    program.write_text((REPO / "tools" / "catalog_sources" / "cudart_strings.c").read_text())
    binary = tmp / "cudart_strings"
    subprocess.run([str(cuda / "bin" / "nvcc"), "-o", str(binary), str(program)], check=True)
    output = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    version = defines((cuda / "include" / "cuda_runtime_api.h").read_text())["CUDART_VERSION"]
    return (
        f"# SOURCE: cudaGetErrorName / cudaGetErrorString of libcudart (CUDART_VERSION {version}), printed by "
        "tools/catalog_sources/cudart_strings.c\n# code|name|message\n" + output
    )


def _nccl_strings_table(wheels: Path, tmp: Path) -> str:
    wheel = next(iter(sorted(wheels.glob("nvidia_nccl_cu13-*.whl"))))
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith("/lib/libnccl.so.2"))
        target = tmp / "libnccl.so.2"
        target.write_bytes(archive.read(member))
        header = archive.read(next(n for n in archive.namelist() if n.endswith("/include/nccl.h"))).decode()
    library_handle = ctypes.CDLL(str(target))
    get = library_handle.ncclGetErrorString
    get.restype = ctypes.c_char_p
    get.argtypes = [ctypes.c_int]
    rows = [f"{e.value}|{e.name}|{get(e.value).decode()}" for e in parse_enum(header, "ncclResult_t")]
    return (
        f"# SOURCE: ncclGetErrorString of libnccl.so.2 from the PyPI wheel {wheel.name}\n# code|name|message\n"
        + "\n".join(rows)
        + "\n"
    )


def write_excerpts(cuda: Path, wheels: Path, verbs_include: Path, verbs_version: str) -> None:
    include = cuda / "include"
    (EXCERPTS / "cuda.h.excerpt").write_text(
        _excerpt(include / "cuda.h", f"{include / 'cuda.h'} (CUDA toolkit)", ["CUresult"], ["CUDA_VERSION"])
    )
    runtime = _excerpt(
        include / "driver_types.h", f"{include / 'driver_types.h'} (CUDA toolkit)", ["cudaError"], []
    )
    cudart_version = defines((include / "cuda_runtime_api.h").read_text())["CUDART_VERSION"]
    runtime = runtime.replace(
        " verbatim. */\n",
        f" verbatim. */\n#define CUDART_VERSION {cudart_version}  /* cuda_runtime_api.h */\n",
        1,
    )
    (EXCERPTS / "driver_types.h.excerpt").write_text(runtime)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        (EXCERPTS / "cudart_error_strings.txt").write_text(_cudart_strings_table(cuda, tmp))
        header, wheel = _wheel_header(wheels, "nvidia-nccl-cu13", "nccl.h", tmp)
        (EXCERPTS / "nccl.h.excerpt").write_text(
            _excerpt(
                header,
                f"nvidia/nccl/include/nccl.h of {wheel}",
                ["ncclResult_t"],
                ["NCCL_MAJOR", "NCCL_MINOR", "NCCL_PATCH"],
            )
        )
        (EXCERPTS / "nccl_error_strings.txt").write_text(_nccl_strings_table(wheels, tmp))
        for spec in LIBRARIES:
            header, wheel = _wheel_header(wheels, spec.package, spec.header, tmp)
            text = header.read_text()
            if spec.family == "cudnn":  # the version defines live in cudnn_version.h
                version_header, _ = _wheel_header(wheels, spec.package, "cudnn_version.h", tmp)
                header.write_text(version_header.read_text() + "\n" + text)
            (EXCERPTS / spec.excerpt).write_text(
                _excerpt(header, f"{spec.header} of {wheel}", [spec.enum_name], list(spec.version_keys))
            )
    verbs = _excerpt(
        verbs_include / "infiniband" / "verbs.h",
        f"infiniband/verbs.h of the Debian package libibverbs-dev {verbs_version}",
        ["ibv_wc_status"],
        [],
    )
    (EXCERPTS / "verbs.h.excerpt").write_text(f"# VERSION: {verbs_version}\n" + verbs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    step1 = commands.add_parser(
        "excerpts", help="cut fixtures/catalogs/ excerpts out of the installed sources"
    )
    step1.add_argument("--cuda", type=Path, default=Path("/usr/local/cuda"))
    step1.add_argument("--wheels", type=Path, required=True)
    step1.add_argument("--verbs-include", type=Path, required=True)
    step1.add_argument("--verbs-version", required=True)
    step2 = commands.add_parser("generate", help="write rules/signatures/catalog-*.yaml from the excerpts")
    step2.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.command == "excerpts":
        write_excerpts(args.cuda, args.wheels, args.verbs_include, args.verbs_version)
        return 0
    counts = generate(args.out)
    print(", ".join(f"{family}: {n}" for family, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
