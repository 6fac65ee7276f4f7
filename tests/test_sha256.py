"""gpudoctor.sha256 gives hashlib's SHA-256 without importing hashlib."""

from __future__ import annotations

import hashlib

import pytest

from gpudoctor.sha256 import hexdigest
from tests.support.imports import modules_loaded_by


@pytest.mark.parametrize("data", [b"", b"abc", bytes(range(256)) * 1000])
def test_same_digest_as_hashlib(data: bytes) -> None:
    assert hexdigest(data) == hashlib.sha256(data).hexdigest()


def test_does_not_import_hashlib() -> None:
    assert modules_loaded_by("import gpudoctor.sha256", ("hashlib", "_hashlib")) == []
