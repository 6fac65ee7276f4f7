"""Shell-style globs for product names and rule operands, without a regex per pattern.

fnmatch compiles every pattern to a regular expression on first use; matching one GPU
name against the product table compiled ~30 of them (~1.3 ms, a noticeable part of
preflight's budget). Patterns in gpudoctor's data use only `*`, which is matched here by
splitting on it; a pattern with `?` or `[` still goes to fnmatch, so the meaning is
fnmatch's either way (tests/test_globs.py compares the two).
"""

from __future__ import annotations

import fnmatch


def glob_match(text: str, pattern: str) -> bool:
    """fnmatch.fnmatchcase(text, pattern), case-sensitive like it."""
    if "?" in pattern or "[" in pattern:
        return fnmatch.fnmatchcase(text, pattern)
    first, *middle_and_last = pattern.split("*")
    if not middle_and_last:
        return text == pattern
    *middle, last = middle_and_last
    if len(text) < len(first) + len(last) or not text.startswith(first) or not text.endswith(last):
        return False
    position, end = len(first), len(text) - len(last)
    for piece in middle:
        found = text.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True
