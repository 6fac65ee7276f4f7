"""Atomic output: readers (node_exporter, NFD, dashboards) never see half a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from gpudoctor.errors import CannotWrite


def write_atomic(path: str | os.PathLike[str], data: str | bytes, *, durable: bool = True) -> None:
    """Write text (UTF-8) or bytes to path through a temp file in the same directory and
    rename(2). `durable` syncs the data to disk before the rename; a cache that is simply
    rebuilt when lost passes False."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise CannotWrite(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise CannotWrite(f"cannot write {target}: {exc.strerror or exc}") from None
