"""Output files: readers (node_exporter, NFD, dashboards) never see half a file, and
what is at the path stays what it was.

A regular file (or a symlink to one) is replaced atomically through a temp file in
its directory and rename(2), keeping its mode and owner. Anything else already at
the path is never replaced: a character device (/dev/null, /dev/full, a tty) or a
FIFO with a reader is written through, like a shell redirection would; a FIFO
without a reader, a socket or a directory is refused (CannotWrite, exit 73).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from gpudoctor.errors import CannotWrite

NEW_FILE_MODE = 0o644


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write text (UTF-8) to path (see the module docstring); a new or replaced file's data
    is on disk before it appears at the path."""
    target = Path(path)
    payload = text.encode("utf-8", "backslashreplace")
    try:
        # Through symlinks (/dev/stdout -> /proc/self/fd/1 -> a pipe): the link stays, what
        # it leads to is written. os.stat follows /proc's magic links, realpath cannot.
        existing = os.stat(target)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise CannotWrite(f"cannot write {target}: {exc.strerror or exc}") from None
    if existing is None or stat.S_ISREG(existing.st_mode):
        _replace(Path(os.path.realpath(target)), payload, existing, shown=target)
    elif stat.S_ISCHR(existing.st_mode) or stat.S_ISFIFO(existing.st_mode):
        _write_through(target, payload, fifo=stat.S_ISFIFO(existing.st_mode), shown=target)
    else:
        kind = "a directory" if stat.S_ISDIR(existing.st_mode) else "not a regular file"
        raise CannotWrite(f"cannot write {target}: it is {kind}")


def _replace(target: Path, payload: bytes, existing: os.stat_result | None, shown: Path) -> None:
    import tempfile  # only when writing a file: stdout output needs none of it

    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise CannotWrite(f"cannot write {shown}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if existing is None:
            os.chmod(tmp_name, NEW_FILE_MODE)
        else:
            _keep_owner_and_mode(tmp_name, existing, shown)
        os.replace(tmp_name, target)
    except (OSError, CannotWrite) as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, CannotWrite):
            raise
        raise CannotWrite(f"cannot write {shown}: {exc.strerror or exc}") from None


def _keep_owner_and_mode(tmp_name: str, existing: os.stat_result, shown: Path) -> None:
    mine = os.stat(tmp_name)
    if (mine.st_uid, mine.st_gid) != (existing.st_uid, existing.st_gid):
        try:
            os.chown(tmp_name, existing.st_uid, existing.st_gid)
        except PermissionError:
            raise CannotWrite(
                f"cannot write {shown}: it belongs to uid {existing.st_uid}, gid {existing.st_gid}, "
                "and a replacement written by this user could not keep that owner"
            ) from None
    # After chown, which clears set-id bits.
    os.chmod(tmp_name, stat.S_IMODE(existing.st_mode))


def _write_through(target: Path, payload: bytes, *, fifo: bool, shown: Path) -> None:
    # A FIFO opened for writing blocks until a reader comes: O_NONBLOCK makes "no reader"
    # an immediate ENXIO instead of a hang; the writes themselves then block as usual.
    flags = os.O_WRONLY | os.O_NOCTTY | (os.O_NONBLOCK if fifo else 0)
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        reason = "no process is reading this FIFO" if exc.errno == errno.ENXIO else exc.strerror or str(exc)
        raise CannotWrite(f"cannot write {shown}: {reason}") from None
    try:
        if fifo:
            os.set_blocking(fd, True)
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError as exc:
        raise CannotWrite(f"cannot write {shown}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def stdout_errors() -> Iterator[None]:
    """Writing to stdout: a full disk or a dead device is CannotWrite (exit 73); a reader
    that went away (`| head`) stays BrokenPipeError for the CLI to treat as no error."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        # Nothing more can reach stdout: point it at /dev/null so the flush at exit is quiet.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise CannotWrite(f"cannot write to standard output: {exc.strerror or exc}") from None
