"""A cache of parsed rule files, keyed by the content's hash.

Parsing the shipped YAML is most of a short command's run time (about 45 ms of
a 130 ms `scan --from-nvidia-smi`); loading the same data with marshal takes
about 1 ms. The cache holds only plain data (marshal refuses anything else),
lives in the user's cache directory, and is skipped silently when that
directory cannot be written (a read-only container) or GPUDOCTOR_NO_CACHE is
set. A corrupt entry is ignored and rewritten: the YAML stays the source.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from pathlib import Path

from gpudoctor.sha256 import hexdigest

TYPE_CHECKING = False  # typing is not imported at run time: see docs/startup.md
if TYPE_CHECKING:
    from typing import Any

_FORMAT = b"gpudoctor-parsecache-1\n"


def cache_dir() -> Path | None:
    if os.environ.get("GPUDOCTOR_NO_CACHE"):
        return None
    explicit = os.environ.get("GPUDOCTOR_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpudoctor"


def _entry(text: str) -> Path | None:
    directory = cache_dir()
    if directory is None:
        return None
    digest = hexdigest(text.encode("utf-8"))[:40]
    return directory / f"yaml-{digest}.marshal"


def get(text: str) -> Any | None:
    entry = _entry(text)
    if entry is None:
        return None
    try:
        blob = entry.read_bytes()
    except OSError:
        return None
    if not blob.startswith(_FORMAT):
        return None
    try:
        return marshal.loads(blob[len(_FORMAT) :])
    except (EOFError, ValueError, TypeError):
        return None


def put(text: str, doc: Any) -> None:
    entry = _entry(text)
    if entry is None:
        return
    try:
        payload = marshal.dumps(doc)
    except ValueError:
        return  # not plain data (e.g. a YAML date): parse it each time
    import tempfile  # only a cache miss writes

    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".yaml-", dir=entry.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(_FORMAT + payload)
        os.replace(tmp, entry)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
