"""Necessary literals of a regular expression, for the prefilter.

A line can only match a pattern if it contains at least one of the pattern's
necessary literals (lower-cased). The prefilter searches the lower-cased bytes of
a whole chunk for these literals with `bytes.find` (fast, C speed) and runs the
full regular expressions only on the few lines that contain one.
"""

from __future__ import annotations

import re
from typing import Any

# re._parser is the parser the re module itself uses (sre_parse before 3.11).
try:
    from re import _constants as sre_constants  # type: ignore[attr-defined]
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

MIN_LITERAL = 3

_LITERAL = sre_constants.LITERAL
_SUBPATTERN = sre_constants.SUBPATTERN
_BRANCH = sre_constants.BRANCH
_MAX_REPEAT = sre_constants.MAX_REPEAT
_MIN_REPEAT = sre_constants.MIN_REPEAT
_ZERO_WIDTH = {sre_constants.AT, sre_constants.ASSERT_NOT, sre_constants.ASSERT}


def _score(alternatives: list[str]) -> tuple[int, int]:
    # Longer is rarer (fewer false hits); fewer alternatives means fewer scans.
    return (min(len(a) for a in alternatives), -len(alternatives))


def _sequence(items: Any) -> list[str] | None:
    """Best necessary literal set of a parsed sequence, or None."""
    candidates = _candidates(items)
    return max(candidates, key=_score) if candidates else None


def _candidates(items: Any) -> list[list[str]]:
    """The necessary literal sets of a parsed sequence: every match holds one literal of each."""
    candidates: list[list[str]] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            candidates.append(["".join(run)])
            run.clear()

    for op, arg in items:
        if op == _LITERAL:
            run.append(chr(arg))
            continue
        if op in _ZERO_WIDTH:
            continue  # anchors and lookarounds consume nothing: the run goes on
        close_run()
        if op == _SUBPATTERN:
            inner = _sequence(arg[-1])
            if inner:
                candidates.append(inner)
        elif op == _BRANCH:
            union: list[str] = []
            for branch in arg[1]:
                inner = _sequence(branch)
                if not inner:
                    union = []
                    break
                union.extend(inner)
            if union:
                candidates.append(sorted(set(union)))
        elif op in (_MAX_REPEAT, _MIN_REPEAT) and arg[0] >= 1:
            inner = _sequence(arg[2])
            if inner:
                candidates.append(inner)
    close_run()
    return candidates


def necessary_literals(pattern: str) -> list[str] | None:
    """Lower-cased literals at least one of which every match contains, or None.

    Returns None when no alternative set has literals of at least MIN_LITERAL
    characters (the pattern then cannot be prefiltered and must say `literal:`).
    """
    parsed = sre_parse.parse(pattern, re.IGNORECASE)
    found = _sequence(list(parsed))
    if not found or min(len(a) for a in found) < MIN_LITERAL:
        return None
    return sorted({a.lower() for a in found})


def every_necessary_literal(pattern: str) -> list[str]:
    """Lower-cased literals every match contains, each of them (not one of several): a line
    missing any cannot match, which is cheaper to tell than running the regex."""
    parsed = sre_parse.parse(pattern, re.IGNORECASE)
    return sorted({c[0].lower() for c in _candidates(list(parsed)) if len(c) == 1 and len(c[0]) >= 2})
