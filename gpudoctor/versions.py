"""Versions and version specifiers as `packaging` (PEP 440) decides them, in the form the
rules and the matrix need: None for text that is not a version instead of an exception,
and pre-releases allowed when matching ("13.0.0rc1" satisfies ">12.9").

Driver, CUDA and compute-capability versions are dotted numbers ("535.54.03", "12.4.1",
"9.0"); "12.4" equals "12.4.0" as PEP 440 says.
"""

from __future__ import annotations

from functools import lru_cache

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

# Counts, sizes, branches and version components in any input fit in 18 digits; int() of a
# longer string is slow, and past 4300 digits Python refuses it (ValueError, which would be
# an internal error on bad input).
MAX_DIGITS = 18


def count_from(text: str | None) -> int | None:
    """A non-negative integer written in ASCII digits ("²" and "٣" are digits to isdigit),
    at most MAX_DIGITS long; None for anything else."""
    if not text or len(text) > MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def branch_of(version: str | None) -> int | None:
    """580 from "580.65.06": the branch is the first component of a driver version."""
    if not version:
        return None
    return count_from(version.split(".")[0])


@lru_cache(maxsize=65536)
def parse_version(text: str) -> Version | None:
    """The version `text` names, or None when it is not a PEP 440 version."""
    try:
        return Version(text)
    except ValueError:  # InvalidVersion, or packaging's int() of a number over 4300 digits
        return None


def major_minor(version: str | None) -> tuple[int, int] | None:
    """(13, 0) for "13.0.2" or "13"; None when not a version."""
    parsed = parse_version(version) if version else None
    if parsed is None:
        return None
    release = (*parsed.release, 0)
    return release[0], release[1]


@lru_cache(maxsize=4096)
def _specifier_set(spec: str) -> SpecifierSet | None:
    try:
        specifier = SpecifierSet(spec)
        specifier.contains("0", prereleases=True)  # parses each clause's version now
    except (InvalidSpecifier, ValueError):  # ValueError: a number over 4300 digits
        return None
    return specifier


def valid_specifier(spec: str) -> bool:
    return _specifier_set(spec) is not None


def spec_contains(spec: str, value: str) -> bool | None:
    """Whether version `value` satisfies specifier set `spec` (pre-releases allowed);
    None when `value` is not a version. `spec` must be valid (valid_specifier)."""
    version = parse_version(value)
    specifier = _specifier_set(spec)
    if version is None or specifier is None:
        return None
    return specifier.contains(version, prereleases=True)
