"""Python distributions and CUDA runtime libraries seen while walking a tree.

Facts come from files, never from importing anything: `*.dist-info/METADATA`
and `*.egg-info/PKG-INFO` (Name/Version), `*.dist-info/RECORD` (which
distribution installed which file: the authoritative owner of a binary,
PyPA "Recording installed projects"), `torch/version.py` (`__version__`,
`cuda`), flash-attn's module layout for its generation (FA2 `flash_attn_2_cuda`,
FA3 "hopper" `flash_attn_3` / `flash_attn_interface`, FA4 CuTe `flash_attn/cute`)
and `libcudart.so.<version>` file names.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
from dataclasses import dataclass, field

from gpudoctor.facts import PackageFacts

# Small text files worth reading; everything else is only looked at by name.
_METADATA = re.compile(r"(^|/)[^/]+\.(dist-info/METADATA|egg-info/PKG-INFO)$")
_RECORD = re.compile(r"(^|/)([^/]+)\.dist-info/RECORD$")
_TORCH_VERSION = re.compile(r"(^|/)torch/version\.py$")
_CUDART = re.compile(r"(^|/)libcudart\.so\.(\d+(?:\.\d+)*)$")
_VARIANT = re.compile(r"\+(cu\d+|rocm[\d.]+|cpu|xpu)\b")
MAX_TEXT = 1 << 20
MAX_RECORD = 32 << 20  # torch's RECORD is ~2 MB
_PACKAGE_ROOTS = ("site-packages", "dist-packages")

INTERESTING = (
    "torch",
    "flash-attn",
    "flash-attn-3",
    "flash-attn-4",
    "xformers",
    "vllm",
    "sglang",
    "triton",
    "tensorrt-llm",
    "deepspeed",
    "cupy",
    "jax",
    "jaxlib",
)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def is_interesting(name: str) -> bool:
    # cupy ships as cupy-cuda11x / cupy-cuda12x / cupy-cuda13x, one name per CUDA major.
    return name in INTERESTING or name.startswith(("nvidia-", "jax-cuda", "cupy-"))


def text_limit(path: str) -> int:
    return MAX_RECORD if _RECORD.search(path) else MAX_TEXT


@dataclass
class PackageCollector:
    packages: dict[str, PackageFacts] = field(default_factory=dict)
    cudart: dict[str, str] = field(default_factory=dict)  # path -> version
    flash_attn_generations: set[str] = field(default_factory=set)
    torch_version_py: dict[str, str] = field(default_factory=dict)
    recorded: dict[str, str] = field(default_factory=dict)  # file path -> distribution, from RECORD

    def wants_text(self, path: str) -> bool:
        return bool(_METADATA.search(path) or _RECORD.search(path) or _TORCH_VERSION.search(path))

    def owner_of(self, binary_path: str, packages: list[PackageFacts]) -> str | None:
        """The distribution whose RECORD lists the file; the path rule only for files no RECORD lists."""
        owner = self.recorded.get(posixpath.normpath(binary_path.replace("\\", "/")))
        return owner if owner is not None else owner_of(binary_path, packages)

    def see_path(self, path: str) -> None:
        """Facts carried by a file's name alone."""
        match = _CUDART.search(path)
        if match:
            self.cudart[path] = match.group(2)
        generation = _flash_attn_generation(path)
        if generation:
            self.flash_attn_generations.add(generation)

    def add_text(self, path: str, text: str) -> None:
        record = _RECORD.search(path)
        if record:
            self._add_record(path, record.group(2), text)
            return
        if _TORCH_VERSION.search(path):
            self.torch_version_py = _torch_version_py(text)
            self.torch_version_py["path"] = path
            return
        headers = _headers(text)
        name, version = headers.get("name"), headers.get("version")
        if not name:
            return
        key = normalise(name)
        if not is_interesting(key):
            return
        self.packages[key] = PackageFacts(
            name=key, version=version, cuda_variant=_variant(version), path=path
        )

    def _add_record(self, path: str, dist_info: str, text: str) -> None:
        """RECORD rows are "path,hash,size", paths relative to the directory holding the .dist-info."""
        name = normalise(dist_info.split("-", 1)[0])
        root = posixpath.dirname(posixpath.dirname(path))
        for row in csv.reader(io.StringIO(text)):
            if row and row[0]:
                self.recorded[posixpath.normpath(posixpath.join(root, row[0]))] = name

    def result(self) -> list[PackageFacts]:
        packages = dict(self.packages)
        torch_info = self.torch_version_py
        if torch_info.get("version"):
            torch = packages.get("torch") or PackageFacts(name="torch", path=torch_info.get("path"))
            # version.py carries the local variant ("2.14.1+cu130") that METADATA may omit.
            if not torch.version or torch_info["version"].startswith(f"{torch.version}+"):
                torch.version = torch_info["version"]
            torch.cuda_variant = torch.cuda_variant or _variant(torch_info["version"])
            if torch_info.get("cuda"):
                torch.detail["cuda"] = torch_info["cuda"]
            packages["torch"] = torch
        if self.flash_attn_generations:
            generations = ",".join(sorted(self.flash_attn_generations))
            owner = next(
                (packages[n] for n in ("flash-attn", "flash-attn-3", "flash-attn-4") if n in packages), None
            )
            if owner is None:
                owner = packages["flash-attn"] = PackageFacts(name="flash-attn")
            owner.detail["flash_attn_generation"] = generations
        for path, version in sorted(self.cudart.items()):
            name = f"libcudart:{path}"
            packages[name] = PackageFacts(name="libcudart", version=version, path=path)
        return [packages[key] for key in sorted(packages)]


def owner_of(binary_path: str, packages: list[PackageFacts]) -> str | None:
    """Where no RECORD lists the file: the distribution whose top-level
    directory holds binary_path, by name, when exactly one can."""
    parts = binary_path.replace("\\", "/").split("/")
    for index, part in enumerate(parts[:-1]):
        candidate = normalise(part)
        if candidate == "nvidia" and index + 1 < len(parts) - 1:
            # nvidia/curand/ may come from nvidia-curand or nvidia-curand-cu12, and
            # nvidia/cu13/ from any CUDA 13 wheel: a name guess only when unambiguous.
            sub = normalise(parts[index + 1])
            matches = [
                p.name
                for p in packages
                if p.name in (f"nvidia-{sub}", f"nvidia-{sub}-cu11", f"nvidia-{sub}-cu12")
            ]
            return matches[0] if len(matches) == 1 else None
        for package in packages:
            if (
                package.name == candidate
                or package.name == candidate.replace("-", "")
                or (candidate.startswith("flash-attn") and package.name.startswith("flash-attn"))
            ):
                return package.name
    return None


def _flash_attn_generation(path: str) -> str | None:
    """FA generation from a top-level module (directly under site-packages or
    at the root of a wheel); torch's own vendored flash_attn sources do not count."""
    parts = path.replace("\\", "/").split("/")
    for index, part in enumerate(parts):
        if index and parts[index - 1] not in _PACKAGE_ROOTS:
            continue
        rest = parts[index + 1 : index + 2]
        if part.startswith("flash_attn_2_cuda"):
            return "fa2"
        if part in ("flash_attn_3", "flash_attn_interface.py") or part.startswith("flash_attn_3_cuda"):
            return "fa3"
        if part == "flash_attn" and rest == ["cute"]:
            return "fa4"
    return None


def _headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the body (long description) follows the first blank line
        key, sep, value = line.partition(":")
        if sep and key.lower() in ("name", "version") and key.lower() not in headers:
            headers[key.lower()] = value.strip()
    return headers


def _torch_version_py(text: str) -> dict[str, str]:
    info: dict[str, str] = {}
    for key, pattern in (
        ("version", r"^__version__\s*=\s*['\"]([^'\"]+)"),
        ("cuda", r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)"),
    ):
        match = re.search(pattern, text, re.MULTILINE)
        if match:
            info[key] = match.group(1)
    return info


def _variant(version: str | None) -> str | None:
    match = _VARIANT.search(version or "")
    return match.group(1) if match else None
