"""A cache of parsed rule files, keyed by the content's hash.

Parsing the shipped YAML is most of a short command's run time (about 45 ms of
a 130 ms `scan --from-nvidia-smi`); loading the same data with marshal takes
about 1 ms. The cache holds only plain data (marshal refuses anything else),
lives in the user's cache directory, and is skipped silently when that
directory cannot be written (a read-only container) or GPUDOCTOR_NO_CACHE is
set. A corrupt entry is ignored and rewritten: the YAML stays the source.

`read_entry` / `write_entry` are shared with `gpudoctor.knowledge.treecache`.
"""

from __future__ import annotations

import marshal
import os

from gpudoctor.sha256 import hexdigest

TYPE_CHECKING = False  # typing is not imported at run time: see docs/startup.md
if TYPE_CHECKING:
    from typing import Any

_FORMAT = b"gpudoctor-parsecache-1\n"


def cache_dir() -> str | None:
    if os.environ.get("GPUDOCTOR_NO_CACHE"):
        return None
    explicit = os.environ.get("GPUDOCTOR_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gpudoctor")


def read_entry(name: str, magic: bytes) -> Any | None:
    """The data stored under `name` (never None), or None when absent, disabled or corrupt."""
    directory = cache_dir()
    if directory is None:
        return None
    try:
        with open(os.path.join(directory, name), "rb") as handle:
            blob = handle.read()
    except OSError:
        return None
    if not blob.startswith(magic):
        return None
    try:
        return marshal.loads(blob[len(magic) :])
    except (EOFError, ValueError, TypeError):
        return None


def write_entry(name: str, magic: bytes, data: Any) -> None:
    """Store plain data under `name` atomically; silently nothing when it cannot be."""
    directory = cache_dir()
    if directory is None:
        return
    try:
        payload = marshal.dumps(data)
    except ValueError:
        return  # not plain data (e.g. a YAML date): parse it each time
    from gpudoctor.errors import CannotWrite  # only a cache miss writes
    from gpudoctor.fileio import write_atomic

    try:
        os.makedirs(directory, exist_ok=True)
        write_atomic(os.path.join(directory, name), magic + payload, durable=False)
    except (OSError, CannotWrite):
        return  # an unwritable cache directory is skipped


def _name(text: str) -> str:
    return f"yaml-{hexdigest(text.encode('utf-8'))[:40]}.marshal"


def get(text: str) -> Any | None:
    return read_entry(_name(text), _FORMAT)


def put(text: str, doc: Any) -> None:
    write_entry(_name(text), _FORMAT, doc)
