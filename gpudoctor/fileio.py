"""Atomic output: readers (node_exporter, NFD, dashboards) never see half a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from gpudoctor.errors import CannotWrite


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write text to path through a temp file in the same directory and rename(2)."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise CannotWrite(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise CannotWrite(f"cannot write {target}: {exc.strerror or exc}") from None
