"""File access under a re-rootable root.

All file probes read through a FsRoot so tests point them at fixture trees in
the real formats, and a container with the host mounted at /host can scan the
host. `read_text` never raises: a missing or unreadable file is None (for
sysfs/procfs attributes, where either means "not there"). `read_source` tells
the two apart for a file a fact comes from: None when it is not there (an
answer), SourceUnreadable when it is there but cannot be read (a directory, a
FIFO or device, an I/O error, bytes that are not UTF-8): the probe then marks
exactly the facts from that file failed (facts.mark_failed), and no others.

Three kinds of root:
  FsRoot()                      this machine: its files, its commands, its kernel
  FsRoot(DIR, live_kernel=True) `--host-root DIR`: a host mounted into a container on
                                that host; files from DIR, the kernel (uname) is the
                                host's, commands are the container's and are not run
  FsRoot(DIR)                   `--sysfs-root DIR`: a recorded tree, nothing live
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from gpudoctor.inputs import UnusableInput, open_regular


class SourceUnreadable(Exception):
    """A file a fact comes from is there but cannot be read; the message names it."""


class FsRoot:
    def __init__(self, root: str | os.PathLike[str] | None = None, *, live_kernel: bool = False) -> None:
        self.root = Path(root) if root is not None else Path("/")
        self.is_host = root is None  # files and commands are this machine's own
        self.live_kernel = root is None or live_kernel  # uname answers for the scanned host
        if root is None:
            self.label = "this machine"
        elif live_kernel:
            self.label = f"host files under {root}"
        else:
            self.label = f"recorded tree {root}"

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def read_text(self, absolute: str, limit: int = 1 << 20) -> str | None:
        try:
            with self.path(absolute).open("r", encoding="utf-8", errors="replace") as handle:
                return handle.read(limit)
        except OSError:
            return None

    def read_source(self, absolute: str, limit: int = 1 << 20, *, strict: bool = True) -> str | None:
        """The text of regular file `absolute` (at most `limit` bytes); None when nothing is at
        the path; SourceUnreadable when something is but cannot be read as text (UTF-8, or with
        replacement characters where not `strict`)."""
        try:
            with open_regular(self.path(absolute)) as handle:
                data = handle.read(limit)
        except UnusableInput as exc:
            if exc.reason == "no such file":
                return None
            raise SourceUnreadable(f"{absolute}: {exc.reason}") from None
        except OSError as exc:
            raise SourceUnreadable(f"{absolute}: cannot read: {exc.strerror or exc}") from None
        try:
            return data.decode("utf-8", "strict" if strict else "replace")
        except UnicodeDecodeError as exc:
            if len(data) == limit and exc.start > limit - 4:  # a character cut by the limit
                return data[: exc.start].decode("utf-8")
            raise SourceUnreadable(f"{absolute}: not UTF-8 text (byte {exc.start})") from None

    def read_bytes(self, absolute: str, limit: int = 4096) -> bytes | None:
        try:
            with self.path(absolute).open("rb") as handle:
                return handle.read(limit)
        except OSError:
            return None

    def glob(self, pattern: str) -> list[str]:
        """Absolute (root-relative) paths matching pattern, sorted."""
        base = str(self.root).rstrip("/")
        matches = glob.glob(str(self.path(pattern)))
        return sorted("/" + os.path.relpath(m, base) if base else m for m in matches)

    def exists(self, absolute: str) -> bool:
        return self.path(absolute).exists()

    def realpath(self, absolute: str) -> str | None:
        """Root-relative real path (symlinks resolved inside the root)."""
        try:
            resolved = self.path(absolute).resolve(strict=True)
            relative = resolved.relative_to(self.root.resolve())
        except (OSError, ValueError):
            return None
        return "/" + str(relative)
