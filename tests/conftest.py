"""Shared test configuration. Domain fixtures live in tests/support/<domain>.py
and are imported by the test modules that use them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


def require_service(available: bool, what: str) -> None:
    """Skip locally when a real service cannot be started; fail in CI, where
    .ci/run installs everything the tests need."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} not available on this machine")
