"""SHA-256 without loading OpenSSL.

`hashlib` imports `_hashlib`, which loads libcrypto: ~3 ms, a twentieth of preflight's
whole budget (docs/startup.md), for two digests of a few KB (a manifest, a config blob).
CPython ships its own SHA-256 as `_sha256` (3.11) / `_sha2` (3.12+); the digest is the
same bytes (tests/test_sha256.py). Where neither exists, hashlib.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: see docs/startup.md
if TYPE_CHECKING:
    from collections.abc import Callable

    sha256: Callable[[bytes], object]

try:
    from _sha256 import sha256  # type: ignore[import-not-found, no-redef]
except ImportError:  # CPython 3.12+, or another implementation
    try:
        from _sha2 import sha256  # type: ignore[import-not-found, no-redef]
    except ImportError:
        from hashlib import sha256  # type: ignore[assignment]


def hexdigest(data: bytes) -> str:
    return sha256(data).hexdigest()  # type: ignore[attr-defined, no-any-return]
