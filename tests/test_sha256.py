"""gpudoctor.sha256 gives hashlib's SHA-256 without importing hashlib."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from gpudoctor.sha256 import hexdigest


@pytest.mark.parametrize("data", [b"", b"abc", bytes(range(256)) * 1000])
def test_same_digest_as_hashlib(data: bytes) -> None:
    assert hexdigest(data) == hashlib.sha256(data).hexdigest()


def test_does_not_import_hashlib() -> None:
    code = "import sys, gpudoctor.sha256; print('hashlib' in sys.modules, '_hashlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
