"""Versions and version specifiers with PEP 440 semantics (what `packaging` decides).

Driver, CUDA and compute-capability versions are dotted numbers ("535.54.03", "12.4.1",
"9.0"), and so are the specifiers in rules (">=570,<580", "==12.*"). Those are parsed
and matched here directly. Anything else (pre-releases, local labels such as
"2.14.1+cu130", epochs, "===") is handed to `packaging`, imported only then. Why:
importing packaging compiles two large regular expressions, ~5 ms of the ~60 ms preflight
may take. tests/test_versions.py checks that both paths decide as packaging does.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from functools import lru_cache

TYPE_CHECKING = False  # typing is not imported at run time: see docs/startup.md
if TYPE_CHECKING:
    from typing import Any

_NUMERIC = re.compile(r"\d+(?:\.\d+)*")
_CLAUSE = re.compile(r"(==|!=|<=|>=|<|>|~=)\s*(\d+(?:\.\d+)*)(\.\*)?")


class NumericVersion:
    """A release-only version; orders and compares as packaging.version.Version does."""

    __slots__ = ("release", "_key")

    def __init__(self, release: tuple[int, ...]) -> None:
        self.release = release
        key = list(release)
        while len(key) > 1 and key[-1] == 0:
            key.pop()  # 12.4 == 12.4.0
        self._key = tuple(key)

    def __str__(self) -> str:
        return ".".join(str(part) for part in self.release)

    def __repr__(self) -> str:
        return f"<Version('{self}')>"

    def __hash__(self) -> int:
        return hash(self._key)

    def _pair(self, other: object) -> tuple[Any, Any] | None:
        """Comparable forms of self and other; None when other is not a version."""
        if isinstance(other, NumericVersion):
            return self._key, other._key
        if type(other).__module__.startswith("packaging."):
            from packaging.version import Version

            return Version(str(self)), other
        return None

    def _compare(self, other: object, op: Callable[[Any, Any], bool]) -> bool:
        pair = self._pair(other)
        return NotImplemented if pair is None else bool(op(pair[0], pair[1]))

    def __eq__(self, other: object) -> bool:
        return self._compare(other, operator.eq)

    def __lt__(self, other: object) -> bool:
        return self._compare(other, operator.lt)

    def __le__(self, other: object) -> bool:
        return self._compare(other, operator.le)

    def __gt__(self, other: object) -> bool:
        return self._compare(other, operator.gt)

    def __ge__(self, other: object) -> bool:
        return self._compare(other, operator.ge)


@lru_cache(maxsize=65536)
def parse_version(text: str) -> Any:
    """A comparable version with `.release`, or None when `text` is not a PEP 440 version."""
    stripped = text.strip()
    if _NUMERIC.fullmatch(stripped):
        return NumericVersion(tuple(int(part) for part in stripped.split(".")))
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion:
        return None


_ORDERED = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
Clause = tuple[str, tuple[int, ...], bool]  # operator, release, trailing ".*"


@lru_cache(maxsize=4096)
def _numeric_clauses(spec: str) -> tuple[Clause, ...] | None:
    """The clauses of a specifier set when all are plain numeric ones packaging accepts."""
    clauses = []
    for part in spec.split(","):
        text = part.strip()
        if not text:
            continue
        match = _CLAUSE.fullmatch(text)
        if match is None:
            return None
        op, version, wildcard = match.group(1), match.group(2), bool(match.group(3))
        release = tuple(int(p) for p in version.split("."))
        if (wildcard and op not in ("==", "!=")) or (op == "~=" and len(release) < 2):
            return None  # invalid: let packaging word the refusal
        clauses.append((op, release, wildcard))
    return tuple(clauses)


def valid_specifier(spec: str) -> bool:
    if _numeric_clauses(spec) is not None:
        return True
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        SpecifierSet(spec)
    except InvalidSpecifier:
        return False
    return True


@lru_cache(maxsize=65536)
def spec_contains(spec: str, value: str) -> bool | None:
    """Whether version `value` satisfies specifier set `spec` (pre-releases allowed);
    None when `value` is not a version."""
    version = parse_version(value)
    if version is None:
        return None
    clauses = _numeric_clauses(spec)
    if clauses is not None and isinstance(version, NumericVersion):
        return all(_clause_contains(clause, version.release) for clause in clauses)
    from packaging.specifiers import SpecifierSet

    return bool(SpecifierSet(spec).contains(str(version), prereleases=True))


def _pad(release: tuple[int, ...], length: int) -> tuple[int, ...]:
    return release + (0,) * (length - len(release))


def _clause_contains(clause: Clause, candidate: tuple[int, ...]) -> bool:
    op, release, wildcard = clause
    if op in ("==", "!="):
        if wildcard:  # prefix match on the padded candidate
            equal = _pad(candidate, len(release))[: len(release)] == release
        else:
            length = max(len(candidate), len(release))
            equal = _pad(candidate, length) == _pad(release, length)
        return equal if op == "==" else not equal
    if op == "~=":  # >= release and == release[:-1].*
        prefix = release[:-1]
        return _compare(candidate, release) >= 0 and _pad(candidate, len(prefix))[: len(prefix)] == prefix
    return _ORDERED[op](_compare(candidate, release), 0)


def _compare(left: tuple[int, ...], right: tuple[int, ...]) -> int:
    length = max(len(left), len(right))
    a, b = _pad(left, length), _pad(right, length)
    return (a > b) - (a < b)
