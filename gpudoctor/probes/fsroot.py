"""File access under a re-rootable root.

All file probes read through a FsRoot so tests point them at fixture trees in
the real formats, and a container with the host mounted at /host can scan the
host. Reads never raise: a missing or unreadable file is None.

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
