"""Where binaries come from: a directory tree, a wheel, a tar / `docker save` /
OCI archive, an OCI layout directory, or a local Docker image.

Archive members are streamed and never written to disk. Only regular files
are read: symlinks, hard links and device nodes are never followed, and a
member whose name is absolute or climbs out with `..` is reported and skipped.
Image layers are scanned as they are (files deleted by a later layer's
whiteout are still listed: the scan errs on showing too much).
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, BinaryIO

from isal import igzip

from gpudoctor.errors import BadInput, InputMissing, ServiceUnavailable
from gpudoctor.facts import BinaryFacts, KernelScanFacts, ProbeError
from gpudoctor.kernels import wheel
from gpudoctor.kernels.layers import WHITEOUT_PREFIX, LayerRecord
from gpudoctor.kernels.packages import MAX_TEXT, PackageCollector, text_limit
from gpudoctor.kernels.scan import is_candidate, scan_path, scan_stream
from gpudoctor.progress import progress

_SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")
# What `nvcc -cubin` / `nvcc -fatbin` write, loaded by path with cuModuleLoad.
_DEVICE_CODE_SUFFIXES = (".cubin", ".fatbin")
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
DOCKER_TIMEOUT_S = 120
# A layer inside an archive inside an archive is as deep as images go.
MAX_NESTING = 2
_BUFFER = 1 << 20


@dataclass
class Scanner:
    binaries: list[BinaryFacts] = field(default_factory=list)
    errors: list[ProbeError] = field(default_factory=list)
    collector: PackageCollector = field(default_factory=PackageCollector)
    layers: LayerRecord = field(default_factory=LayerRecord)
    _layer: str = ""  # the image layer being streamed, "" outside layers

    def facts(self) -> KernelScanFacts:
        packages = self.collector.result()
        for binary in self.binaries:
            binary.package = self.collector.owner_of(binary.path, packages)
        binaries = self.layers.resolve(self.binaries)
        return KernelScanFacts(binaries=binaries, packages=packages, errors=self.errors)

    # --- inputs ------------------------------------------------------------

    def add(self, target: str) -> None:
        if os.path.isdir(target):
            self.add_directory(target)
        elif os.path.isfile(target):
            self.add_file(target)
        elif os.path.lexists(target):
            raise BadInput(f"{target}: not a regular file or directory")
        elif _looks_like_image(target):
            self.add_docker_image(target)
        else:
            raise InputMissing(f"{target}: no such file, directory or local image")

    def add_file(self, path: str) -> None:
        if path.endswith((".whl", ".zip")) or zipfile.is_zipfile(path):
            self.add_zip(path)
            return
        with open(path, "rb") as handle:
            head = handle.read(512)
        if _is_archive(head):
            with (
                open(path, "rb") as handle,
                progress(f"scanning {path}", os.path.getsize(path), "bytes") as bar,
            ):
                self.add_tar_stream(ReadTap(handle, lambda data: bar.advance(len(data))), path, depth=0)  # type: ignore[arg-type]
            return
        self.collector.see_path(path)
        # Named like a binary: the error a directory, wheel or tar gives the same bytes.
        result = scan_path(path) or _misnamed(path)
        self.binaries.append(result or BinaryFacts(path=path, error="not an ELF file or fatbin"))

    def add_directory(self, root: str) -> None:
        if os.path.isfile(os.path.join(root, "oci-layout")):
            self._add_oci_layout(root)
            return
        files = list(_tree_files(root))
        with progress(f"scanning {root}", len(files)) as bar:
            for full in files:
                self._add_tree_entry(full, os.path.relpath(full, root))
                bar.advance()

    def _add_tree_entry(self, full: str, shown: str) -> None:
        try:
            info = os.lstat(full)
        except OSError as exc:
            self.errors.append(ProbeError(probe="kernels", message=f"{shown}: {exc}"))
            return
        if stat.S_ISREG(info.st_mode):  # symlinks and devices are never followed
            self._add_tree_file(full, shown)

    def _add_tree_file(self, full: str, shown: str) -> None:
        self.collector.see_path(shown)
        if self.collector.wants_text(shown):
            self.collector.add_text(shown, _read_text_file(full))
            return
        self._keep(scan_path(full, shown) or _misnamed(shown))

    def _add_oci_layout(self, root: str) -> None:
        if os.path.islink(os.path.join(root, "blobs")):
            # os.walk enters a symlink given as its top: blobs -> / would walk the whole host.
            raise BadInput(f"{root}: blobs is a symlink; only blobs inside an OCI layout are read")
        blobs = [
            full for full in _tree_files(os.path.join(root, "blobs")) if stat.S_ISREG(os.lstat(full).st_mode)
        ]
        with progress(f"scanning {root}", sum(os.lstat(full).st_size for full in blobs), "bytes") as bar:
            for full in blobs:
                with open(full, "rb") as handle:
                    if _is_archive(handle.read(512)):
                        handle.seek(0)
                        layer = ReadTap(handle, lambda data: bar.advance(len(data)))
                        self.add_tar_stream(layer, os.path.relpath(full, root), depth=1)  # type: ignore[arg-type]

    def add_tar_stream(self, stream: BinaryIO, label: str, depth: int) -> None:
        count = inflated = 0
        try:
            with _open_tar(stream) as archive:
                for member in archive:
                    # tarfile keeps every header it has read; a stream never goes back to one.
                    archive.members.clear()
                    count, inflated = count + 1, inflated + max(0, member.size)
                    if count > wheel.MAX_MEMBERS:
                        raise wheel.MemberError(f"more than {wheel.MAX_MEMBERS} members")
                    if inflated > wheel.MAX_INFLATED:
                        raise wheel.MemberError(
                            f"members inflate to more than {wheel.MAX_INFLATED >> 30} GiB"
                        )
                    self._add_tar_member(archive, member, label, depth)
        except (tarfile.TarError, *wheel.INFLATE_ERRORS, wheel.MemberError, OSError, ValueError) as exc:
            self.errors.append(
                ProbeError(
                    probe="kernels", message=f"{label}: archive unreadable or cut short: {_one_line(exc)}"
                )
            )

    def add_layer(self, name: str, stream: BinaryIO) -> None:
        """One image layer; call in any order after setting `layers.order` (bottom first)."""
        self._layer = name
        try:
            self.add_tar_stream(stream, name, depth=1)
        finally:
            self._layer = ""

    def _add_tar_member(
        self, archive: tarfile.TarFile, member: tarfile.TarInfo, label: str, depth: int
    ) -> None:
        if not member.isreg():
            return  # links and device nodes are never followed
        base = posixpath.basename(member.name)
        if member.size < 4 and not base.startswith(WHITEOUT_PREFIX) and not _promises_binary(base):
            return  # nothing in it to read (whiteout markers are empty and must be seen)
        name = _safe_member_name(member.name)
        if name is None:
            self.errors.append(
                ProbeError(probe="kernels", message=f"{label}: unsafe member {member.name!r} skipped")
            )
            return
        handle = archive.extractfile(member)
        if handle is not None:
            self._add_member(name, handle, label, depth)

    def add_zip(self, path: str) -> None:
        """A wheel: metadata read, members that may hold device code scanned in parallel."""
        try:
            with zipfile.ZipFile(path) as archive:
                infos = wheel.members(archive)
        except (
            wheel.MemberError,
            zipfile.BadZipFile,
            NotImplementedError,
            OSError,
            ValueError,
            EOFError,
        ) as exc:
            self.binaries.append(BinaryFacts(path=path, error=f"unreadable zip archive: {_one_line(exc)}"))
            return
        scanned: list[tuple[str, zipfile.ZipInfo]] = []
        with wheel.MemberOpener(path) as opener:
            for info in infos:
                name = _safe_member_name(info.filename)
                if name is None:
                    self.errors.append(
                        ProbeError(
                            probe="kernels", message=f"{path}: unsafe member {info.filename!r} skipped"
                        )
                    )
                    continue
                self.collector.see_path(name)
                if self.collector.wants_text(name):
                    text = _guarded(partial(_read_member_text, opener, info, name))
                    if isinstance(text, bytes):
                        self.collector.add_text(name, text.decode("utf-8", "replace"))
                    else:
                        self.binaries.append(BinaryFacts(path=name, error=f"cannot read from {path}: {text}"))
                elif info.file_size >= 4 or _promises_binary(name):
                    head = _guarded(partial(opener.head, info))
                    if isinstance(head, str):
                        self.binaries.append(BinaryFacts(path=name, error=f"cannot read from {path}: {head}"))
                    elif is_candidate(head):
                        scanned.append((name, info))
                    elif (wrong := _misnamed(name)) is not None:
                        self.binaries.append(wrong)

            def scan(item: tuple[str, zipfile.ZipInfo]) -> BinaryFacts | None:
                name, info = item
                reopen = partial(opener, info)
                found = _guarded(lambda: _scan_zip_member(reopen, name))
                if isinstance(found, str):
                    return BinaryFacts(path=name, error=f"cannot read from {path}: {found}")
                return found

            with progress(f"scanning {path}", len(scanned)) as bar:
                for result in wheel.parallel(scan, scanned, cost=lambda item: wheel.member_cost(item[1])):
                    self._keep(result)
                    bar.advance()

    def _add_member(self, name: str, handle: BinaryIO, label: str, depth: int) -> None:
        if self._layer and self.layers.note_whiteout(self._layer, name):
            return
        if depth == 0 and name == "manifest.json":
            self.layers.note_manifest(handle.read(MAX_TEXT).decode("utf-8", "replace"))
            return
        self.collector.see_path(name)
        if self.collector.wants_text(name):
            self.collector.add_text(name, handle.read(text_limit(name)).decode("utf-8", "replace"))
            return
        head = handle.read(512)
        if depth < MAX_NESTING and _is_archive(head):
            nested = io.BufferedReader(_Prefixed(head, handle), _BUFFER)
            outer, self._layer = self._layer, self._layer or name
            try:
                self.add_tar_stream(nested, f"{label}!{name}", depth + 1)  # type: ignore[arg-type]
            finally:
                self._layer = outer
            return
        self._keep(scan_stream(handle, name, head) or _misnamed(name))

    def add_docker_image(self, reference: str, docker_host: str | None = None) -> None:
        try:
            import docker
            import docker.errors
        except ImportError as exc:  # pragma: no cover - docker is a dependency
            raise ServiceUnavailable(f"docker SDK not available: {exc}") from exc
        try:
            client = (
                docker.DockerClient(base_url=docker_host, timeout=DOCKER_TIMEOUT_S)
                if docker_host
                else docker.from_env(timeout=DOCKER_TIMEOUT_S)
            )
            chunks = client.api.get_image(reference)
            self.add_tar_stream(io.BufferedReader(_IterStream(iter(chunks)), _BUFFER), reference, depth=0)  # type: ignore[arg-type]
        except docker.errors.ImageNotFound as exc:
            raise InputMissing(
                f"{reference}: no such local image (pull it first, or scan a `docker save` archive)"
            ) from exc
        except docker.errors.DockerException as exc:
            raise ServiceUnavailable(
                f"{reference}: Docker engine unavailable: {str(exc).splitlines()[0]}"
            ) from exc

    def _keep(self, result: BinaryFacts | None) -> None:
        if result is None:
            return
        if result.error or result.fatbin_entries:
            self.binaries.append(result)
            if self._layer:
                self.layers.binary_layer[id(result)] = self._layer


def _scan_zip_member(reopen: Callable[[], BinaryIO], name: str) -> BinaryFacts | None:
    stream = reopen()
    return scan_stream(stream, name, stream.read(64), reopen=reopen)


def _read_member_text(opener: wheel.MemberOpener, info: zipfile.ZipInfo, name: str) -> bytes:
    return opener(info).read_all(text_limit(name))


def _guarded(read: Callable[[], Any]) -> Any:
    """read(), or the one-line reason it failed on damaged archive data."""
    try:
        return read()
    except (wheel.MemberError, *wheel.INFLATE_ERRORS, OSError, ValueError) as exc:
        return _one_line(exc)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def scan_targets(targets: list[str]) -> KernelScanFacts:
    scanner = Scanner()
    for target in targets:
        scanner.add(target)
    return scanner.facts()


def _open_tar(stream: BinaryIO) -> tarfile.TarFile:
    """A tar stream, gzip inflated by ISA-L in large blocks (tarfile's own gzip
    reader inflates 512-byte headers one by one, in Python)."""
    magic = stream.read(2)
    buffered = io.BufferedReader(_Prefixed(magic, stream), _BUFFER)
    if magic == _GZIP:
        inflated = io.BufferedReader(igzip.IGzipFile(fileobj=buffered, mode="rb"), _BUFFER)  # type: ignore[arg-type]
        return tarfile.open(fileobj=inflated, mode="r|")
    return tarfile.open(fileobj=buffered, mode="r|*")  # type: ignore[arg-type]


def _promises_binary(name: str) -> bool:
    """A name that promises a library or device code: such a file is never skipped as "not a binary"."""
    return bool(_SHARED_OBJECT.search(name)) or name.endswith(_DEVICE_CODE_SUFFIXES)


def _misnamed(name: str) -> BinaryFacts | None:
    """The error for a file whose name promises a binary it is not (no ELF, fatbin or ar magic)."""
    if _SHARED_OBJECT.search(name):
        return BinaryFacts(path=name, error="named like a shared library but not an ELF file")
    if name.endswith(_DEVICE_CODE_SUFFIXES):
        return BinaryFacts(path=name, error="named like a cubin or fatbin but neither")
    return None


def _looks_like_image(target: str) -> bool:
    """An image reference rather than a mistyped path: 'ubuntu', 'repo/x:tag', 'x@sha256:...'."""
    if target.startswith(("/", ".", "~")) or not re.fullmatch(r"[a-z0-9][\w./:@-]*", target):
        return False
    last = target.rsplit("/", 1)[-1]
    return ":" in last or "@" in target or "." not in last


def _is_archive(head: bytes) -> bool:
    return head[:2] == _GZIP or head[:4] == _ZSTD or head[257:262] == b"ustar"


def _safe_member_name(name: str) -> str | None:
    normalised = posixpath.normpath(name.replace("\\", "/"))
    if normalised.startswith("/") or normalised == ".." or normalised.startswith("../"):
        return None
    return normalised


def _tree_files(root: str) -> Iterator[str]:
    """Every file name under root, in a stable order; symlinked directories are not entered."""
    for directory, subdirs, files in os.walk(root, followlinks=False):
        subdirs.sort()
        for name in sorted(files):
            yield os.path.join(directory, name)


def _read_text_file(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read(text_limit(path)).decode("utf-8", "replace")


class ReadTap:
    """A stream whose every read is also handed to `seen` (a digest, a progress bar)."""

    def __init__(self, stream: BinaryIO, seen: Callable[[bytes], object]) -> None:
        self._stream = stream
        self._seen = seen

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._seen(data)
        return data

    def drain(self) -> None:
        """Read to the end (what a reader left unread still counts)."""
        while self.read(_BUFFER):
            pass


class _Prefixed(io.RawIOBase):
    """A stream with bytes already read put back in front."""

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        self._prefix = prefix
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        if self._prefix:
            count = min(len(buffer), len(self._prefix))
            buffer[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _IterStream(io.RawIOBase):
    """A file-like view of an iterator of byte chunks (docker get_image)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count
