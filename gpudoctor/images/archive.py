"""Archive source: `docker save` tarballs and OCI image layouts (directory or tar).

Read in place: tar members are streamed with `extractfile`, never extracted; in a
directory only regular files below the root are opened. Member names that are
absolute, climb out with `..`, or are links are never read, so a hostile archive
cannot make gpudoctor touch anything outside it. Every read is size-capped.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from gpudoctor.errors import BadInput, InputMissing
from gpudoctor.facts import ImageFacts, Platform
from gpudoctor.images import manifest as mf
from gpudoctor.images.registry import finish, missing_platform, resolve
from gpudoctor.inputs import open_regular, parse_json


class _Reader(Protocol):
    def read(self, name: str, max_bytes: int) -> bytes | None: ...
    def size(self, name: str) -> int | None: ...


_REF_NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


def _safe_name(name: str) -> str | None:
    """A member name normalised to 'a/b', or None when it is absolute or climbs out."""
    if name.startswith("/") or "\\" in name:
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


# Bounds on an archive's table of contents. A `docker save` tarball holds ~4 members a
# layer and an OCI layout one blob a layer, so images have hundreds; a tar of millions of
# empty headers (14 MB as .tgz) would take a minute and a GB just to list.
MAX_ARCHIVE_MEMBERS = 50_000
# Listing a compressed tar inflates all of it: past this ratio to the file's own size
# (a docker save tar is ~1:1, its layers being compressed already) it is a bomb.
MAX_INFLATION_RATIO = 100
MIN_INFLATED_CAP = 1 << 30


class _TarReader:
    def __init__(self, tar: tarfile.TarFile, where: str, file_size: int) -> None:
        self._tar = tar
        self._where = where
        self._members: dict[str, tarfile.TarInfo] = {}
        inflated_cap = max(MIN_INFLATED_CAP, MAX_INFLATION_RATIO * file_size)
        for count, member in enumerate(tar, 1):  # headers only: data is skipped by seeking
            if count > MAX_ARCHIVE_MEMBERS:
                raise BadInput(f"{where}: more than {MAX_ARCHIVE_MEMBERS} members, not an image archive")
            if tar.offset > inflated_cap:
                raise BadInput(
                    f"{where}: inflates to over {MAX_INFLATION_RATIO} times its size, not an image archive"
                )
            name = _safe_name(member.name)
            if name is not None and member.isreg():
                self._members[name] = member
        tar.members.clear()  # the reader keeps its own index; tarfile's copy is not needed

    def size(self, name: str) -> int | None:
        member = self._members.get(name)
        return member.size if member is not None else None

    def read(self, name: str, max_bytes: int) -> bytes | None:
        member = self._members.get(name)
        if member is None:
            return None
        if member.size > max_bytes:
            raise BadInput(f"{self._where}: {name} is {member.size} bytes, over the {max_bytes}-byte cap")
        stream = self._tar.extractfile(member)
        if stream is None:
            return None
        data = stream.read(max_bytes + 1)
        if len(data) != member.size:
            raise BadInput(f"{self._where}: {name} is truncated")
        return data


def open_in_layout(root: Path, name: str) -> BinaryIO | None:
    """`name` under `root` opened for reading, or None unless it is a regular file inside
    the tree: no absolute or climbing names, no symlink at the end (O_NOFOLLOW) or on the way
    out of the tree, no FIFO or device (O_NONBLOCK, so opening a FIFO cannot block, then
    fstat on what was actually opened)."""
    safe = _safe_name(name)
    if safe is None:
        return None
    path = root / safe
    try:
        resolved = path.resolve()
        if resolved.parent != (root / posixpath.dirname(safe)).resolve() or not resolved.is_relative_to(root):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop in resolve()
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


class _DirReader:
    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def size(self, name: str) -> int | None:
        stream = open_in_layout(self._root, name)
        if stream is None:
            return None
        with stream:
            return os.fstat(stream.fileno()).st_size

    def read(self, name: str, max_bytes: int) -> bytes | None:
        stream = open_in_layout(self._root, name)
        if stream is None:
            return None
        with stream:
            data = stream.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise BadInput(f"{self._root}: {name} is over the {max_bytes}-byte cap")
        return data


@contextmanager
def _open(path: Path) -> Iterator[_Reader]:
    if path.is_dir():
        yield _DirReader(path)
        return
    with open_regular(path) as handle:
        try:
            mode = _tar_mode(handle.read(6))
            handle.seek(0)
            with tarfile.open(fileobj=handle, mode=mode) as tar:
                yield _TarReader(tar, str(path), os.fstat(handle.fileno()).st_size)
        except (tarfile.TarError, EOFError, OSError, zlib.error, NotImplementedError) as exc:
            raise BadInput(f"{path}: not a readable tar archive ({exc.__class__.__name__})") from None


# The compressions `docker save | gzip` and friends produce, told by their magic numbers.
# tarfile's own "r:*" tries each decompressor in turn, and LZMA's headerless legacy format
# takes any bytes: 4 GiB of zeros were decompressed for minutes before being refused.
_COMPRESSED_TAR_MODES = ((b"\x1f\x8b", "r:gz"), (b"BZh", "r:bz2"), (b"\xfd7zXZ\x00", "r:xz"))


def _tar_mode(head: bytes) -> str:
    """The tarfile mode for a file starting with `head`, which is then read from its start."""
    return next((mode for magic, mode in _COMPRESSED_TAR_MODES if head.startswith(magic)), "r:")


def blob_name(digest: str, where: str) -> str:
    """`blobs/ALGORITHM/HEX` for a digest checked first (`sha256:` + 64 hex, ...): a path is
    never built from an unchecked digest such as `sha256:/abs` or `sha256:../x`."""
    algorithm, _, encoded = mf.check_digest(digest, f"{where}: blob").partition(":")
    return f"blobs/{algorithm}/{encoded}"


def _blob(reader: _Reader, digest: str, max_bytes: int, where: str) -> bytes:
    data = reader.read(blob_name(digest, where), max_bytes)
    if data is None:
        raise BadInput(f"{where}: blob {digest[:19]} is missing from the archive")
    mf.verify_digest(data, digest, f"{where}: blob {digest[:19]}")
    return data


def _json(reader: _Reader, name: str, where: str) -> Any:
    data = reader.read(name, mf.MAX_MANIFEST_BYTES)
    if data is None:
        return None
    return parse_json(data, f"{where}: {name}")


def _from_oci(reader: _Reader, wanted: Platform, where: str) -> ImageFacts:
    doc = mf.load_json(reader.read("index.json", mf.MAX_MANIFEST_BYTES) or b"", f"{where}: index.json")
    top = mf.parse(doc, mf.OCI_INDEX, where)
    assert isinstance(top, mf.Index)
    if not top.manifests:
        raise BadInput(f"{where}: index.json lists no images")
    reference = _ref_name(doc) or where
    index_digest = None
    entry, platforms, note = resolve(top, wanted, where)
    for _ in range(4):  # docker save nests: index.json -> image index -> manifest
        if entry is None:
            return missing_platform(reference, "archive", wanted, index_digest, platforms, note)
        doc = mf.load_json(_blob(reader, entry.digest, mf.MAX_MANIFEST_BYTES, where), where)
        parsed = mf.parse(doc, mf.media_type_of(doc, entry.media_type, where), where)
        if isinstance(parsed, mf.Manifest):
            config = mf.load_json(_blob(reader, parsed.config.digest, mf.MAX_CONFIG_BYTES, where), where)
            return finish(config, reference, "archive", parsed, entry.digest, index_digest, platforms, note)
        index_digest = entry.digest
        entry, platforms, note = resolve(parsed, wanted, where)
    raise BadInput(f"{where}: indexes nested too deep")


def _ref_name(index: dict[str, Any]) -> str | None:
    """The image name an OCI layout or docker save records in index.json annotations."""
    entries = index.get("manifests")
    for entry in entries if isinstance(entries, list) else []:
        annotations = entry.get("annotations") if isinstance(entry, dict) else None
        for key in _REF_NAME_ANNOTATIONS if isinstance(annotations, dict) else ():
            value = annotations.get(key)
            if isinstance(value, str) and ("/" in value or ":" in value):
                return value
    return None


def _from_docker_save(reader: _Reader, where: str) -> ImageFacts:
    entries = _json(reader, "manifest.json", where)
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        raise BadInput(f"{where}: manifest.json lists no images")
    entry = entries[0]
    config_name = entry.get("Config")
    if not isinstance(config_name, str):
        raise BadInput(f"{where}: manifest.json entry without a Config")
    data = reader.read(_safe_name(config_name) or "", mf.MAX_CONFIG_BYTES)
    if data is None:
        raise BadInput(f"{where}: config {config_name} is missing or unsafe")
    config = mf.load_json(data, f"{where}: {config_name}")
    tags = entry.get("RepoTags")
    reference = tags[0] if isinstance(tags, list) and tags and isinstance(tags[0], str) else where
    facts = finish(config, reference, "archive", None, None, None, [], None)
    layers = entry.get("Layers") if isinstance(entry.get("Layers"), list) else []
    sizes = [reader.size(_safe_name(str(name)) or "") for name in layers]
    if sizes and all(s is not None for s in sizes):
        facts.size_bytes = sum(s for s in sizes if s is not None)
    else:
        facts.unknown["size_bytes"] = "layer sizes not in the archive"
    return facts


def fetch_from_archive(path: Path, wanted: Platform) -> ImageFacts:
    where = str(path)
    if not path.exists():
        raise InputMissing(f"{path}: no such file or directory")
    with _open(path) as reader:
        if reader.size("oci-layout") is not None and reader.size("index.json") is not None:
            return _from_oci(reader, wanted, where)
        if reader.size("manifest.json") is not None:
            return _from_docker_save(reader, where)
    raise BadInput(f"{where}: neither an OCI image layout (oci-layout, index.json) nor a docker save archive")
