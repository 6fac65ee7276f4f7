"""One rules directory's files of one `kind:`, parsed, in one cache entry checked by stat.

Every run of scan or preflight loads the shipped rules and matrix. Listing the tree,
reading each file and looking each one up in the content-hashed parse cache cost
about 3.5 ms; reading one entry per (directory, kind) and comparing stat results
costs about 0.5 ms. The entry records every directory's mtime (a file added or
removed changes it) and every YAML file's (mtime, ctime, size): ctime cannot be
set back by a user or an unpacker, so a rewritten file misses. File times tick
coarsely (a kernel clock tick, whole seconds on some file systems), so two writes
of the same size in one tick look alike: as git does with its index, a file
changed less than RACY_NS ago is not trusted, and a tree holding one is read
again on every load and not stored. A miss re-reads only the files whose stat
changed and rewrites the entry; parse errors are raised as before and leave no
entry. The YAML stays the source and validation
still runs on every load; this only skips finding, reading and parsing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from gpudoctor.knowledge.parsecache import read_entry, write_entry
from gpudoctor.sha256 import hexdigest

TYPE_CHECKING = False  # typing is not imported at run time: see docs/startup.md
if TYPE_CHECKING:
    from typing import Any

YAML_SUFFIXES = (".yaml", ".yml")
RACY_NS = 2_000_000_000  # FAT and some network file systems keep 2-second times
_FORMAT = b"gpudoctor-treecache-1\n"

StatKey = tuple[int, int, int]
# file -> (its kind, its parsed document, or None when the file is another kind's)
Classify = Callable[[str], "tuple[str, dict[str, Any] | None]"]
# (directory mtimes, [(file, stat key)] in load order, {file: document} of the kind)
Snapshot = tuple[dict[str, int], list[tuple[str, StatKey]], dict[str, "dict[str, Any]"]]

_MEMO: dict[tuple[str, str], Snapshot] = {}


def stat_key(path: str) -> StatKey:
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size


def settled(key: StatKey) -> bool:
    """Whether a file with this stat can be told apart from its next rewrite by stat alone."""
    return time.time_ns() - max(key[0], key[1]) >= RACY_NS


def documents(directory: str, kind: str, classify: Classify) -> list[tuple[str, StatKey, dict[str, Any]]]:
    """(file, stat key, document) of every file of `kind` under `directory`, in path order.

    `classify` reads one file and says its kind, parsing it when the kind is wanted
    (it raises the loader's one-line errors).
    """
    root = os.path.realpath(directory)
    name = f"tree-{kind}-{hexdigest(f'{root}|{kind}'.encode())[:32]}.marshal"
    snapshot = _MEMO.get((root, kind))
    if snapshot is None:
        snapshot = _well_formed(read_entry(name, _FORMAT))
    if snapshot is None or not _fresh(snapshot):
        snapshot = _rebuild(root, classify, snapshot)
        if all(settled(key) for _file, key in snapshot[1]):
            write_entry(name, _FORMAT, snapshot)
            _MEMO[(root, kind)] = snapshot
        else:
            _MEMO.pop((root, kind), None)  # just written to: read it again next time
    else:
        _MEMO[(root, kind)] = snapshot
    _dirs, files, docs = snapshot
    return [(file, key, docs[file]) for file, key in files if file in docs]


def _well_formed(data: Any) -> Snapshot | None:
    """A cache entry of the expected shape (a damaged one is simply rebuilt)."""
    if not (isinstance(data, tuple) and len(data) == 3):
        return None
    dirs, files, docs = data
    if not (isinstance(dirs, dict) and isinstance(files, list) and isinstance(docs, dict)):
        return None
    for entry in files:
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str)):
            return None
    if not all(isinstance(doc, dict) for doc in docs.values()):
        return None
    return data


def _fresh(snapshot: Snapshot) -> bool:
    dirs, files, _docs = snapshot
    try:
        for directory, mtime in dirs.items():
            if os.stat(directory).st_mtime_ns != mtime:
                return False
        for file, key in files:
            if stat_key(file) != key:
                return False
    except OSError:
        return False
    return True


def _rebuild(root: str, classify: Classify, old: Snapshot | None) -> Snapshot:
    dirs: dict[str, int] = {}
    listed: list[str] = []
    _walk(root, dirs, listed)
    known = dict(old[1]) if old is not None else {}
    old_docs = old[2] if old is not None else {}
    files: list[tuple[str, StatKey]] = []
    seen: set[str] = set()
    docs: dict[str, dict[str, Any]] = {}
    for path in listed:
        file = os.path.realpath(path)
        if file in seen:
            continue  # a symlink to a file already listed
        try:
            key = stat_key(file)  # before reading: a change after it shows next time
        except OSError:
            continue  # removed while listing
        seen.add(file)
        files.append((file, key))
        if known.get(file) == key:
            if file in old_docs:
                docs[file] = old_docs[file]
            continue
        _kind, doc = classify(file)
        if doc is not None:
            docs[file] = doc
    return dirs, files, docs


def _walk(directory: str, dirs: dict[str, int], files: list[str]) -> None:
    """YAML files under `directory` in path-component order (as sorted Paths would be).

    A directory's mtime is taken before it is listed, so an entry never claims a
    listing newer than the one it holds. Symlinked directories are not followed.
    """
    try:
        dirs[directory] = os.stat(directory).st_mtime_ns
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _walk(entry.path, dirs, files)
        elif os.path.splitext(entry.name)[1] in YAML_SUFFIXES and entry.is_file():
            files.append(entry.path)
