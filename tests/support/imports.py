"""Which modules a piece of code loads, measured in a fresh interpreter (lazy imports stay lazy)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent

# Appended to the code under test; only `sys` (always loaded) is imported to report.
_REPORT = """
import sys as _sys
_names = {names!r}
print(repr(sorted(m for m in _sys.modules if any(m == n or m.startswith(n + ".") for n in _names))), file=_sys.stderr)
"""


def modules_loaded_by(code: str, names: Iterable[str]) -> list[str]:
    """Run `code` in a fresh interpreter; the loaded modules that are, or are under, one of
    `names`, sorted. The code's own failure fails the test with its stderr."""
    probe = code + _REPORT.format(names=tuple(names))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    loaded: list[str] = ast.literal_eval(done.stderr.splitlines()[-1])
    return loaded
