"""One streaming pass over a log: literal prefilter, then the signatures' regexes.

The log is read in binary chunks and cut at the last newline of each chunk.
Each block is lower-cased once (ASCII only, so byte offsets do not move) and
searched for every distinct necessary literal of every pattern at once with an
Aho-Corasick automaton (ahocorasick_rs; one pass in native code). Without it,
`bytes.find` per literal does the same job, slower. Only the lines holding a
literal are decoded (invalid UTF-8 is replaced, never fatal) and matched
against the patterns whose literals they hold. Memory stays bounded: a chunk,
a carried partial line, and the first few hits of each pattern.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from gpudoctor.explain.catalog import CatalogEntry
from gpudoctor.explain.incidents import Evidence, Incident, IncidentTracker, origin_of, shape, tracker_for
from gpudoctor.explain.signatures import Signature

CHUNK_BYTES = 8 * 1024 * 1024
# A "line" longer than this (binary junk, a minified blob) is cut into pieces so
# memory stays bounded; a message split across the cut may be missed.
MAX_LINE_BYTES = 1024 * 1024
# The regexes see at most this much of a line, centred on the prefilter hit.
REGEX_WINDOW = 8 * 1024
# Logs repeat lines (a warning per step, an Xid per process); each distinct
# candidate line is matched once. Bounded: the cache is dropped when full.
LINE_CACHE_ENTRIES = 4096


@dataclass
class ScanResult:
    lines: int
    bytes_read: int
    incidents: list[Incident]


Target = tuple[int, int]  # (signature index, pattern index)
# A prefilter literal is cut to this many bytes: every match holds the cut literal too, and
# the automaton's construction grows with the square of a literal's length (a site
# signature of one 100,000-character literal took `explain` hours before a single line).
MAX_LITERAL_BYTES = 256
# Where one log ends and the next begins in a concatenation: this project's fixture header
# (`# SOURCE: URL`) and the header `tail`/`head` print between files (`==> name <==`).
# An incident never takes lines or values across such a line.
_BOUNDARY = re.compile(r"^(?:# SOURCE: |==> .* <==\s*$)")
BOUNDARY_LITERALS = (b"# source: ", b"==> ")
BOUNDARY: Target = (-1, -1)


def _automaton(literals: list[bytes]) -> Any:
    import ahocorasick_rs

    # The DFA form costs a few MB for ~100 literals and scans about 1.7x faster
    # than the default NFA on a 100 MB log.
    return ahocorasick_rs.BytesAhoCorasick(literals, implementation=ahocorasick_rs.Implementation.DFA)


def _holds_all(text: str, literals: tuple[str, ...]) -> bool:
    # A loop, not all(<generator>): this runs for every candidate pattern of every line.
    for literal in literals:  # noqa: SIM110
        if literal not in text:
            return False
    return True


class Matcher:
    def __init__(self, signatures: Sequence[Signature], *, use_automaton: bool = True) -> None:
        self.signatures = list(signatures)
        by_literal: dict[bytes, list[Target]] = {}
        for s_index, signature in enumerate(self.signatures):
            for p_index, pattern in enumerate(signature.patterns):
                for literal in pattern.literals:
                    key = literal.encode("utf-8").lower()[:MAX_LITERAL_BYTES]
                    by_literal.setdefault(key, []).append((s_index, p_index))
        for literal in BOUNDARY_LITERALS:
            by_literal.setdefault(literal, []).append(BOUNDARY)
        self.literals: list[tuple[bytes, tuple[Target, ...]]] = [
            (literal, tuple(targets)) for literal, targets in sorted(by_literal.items())
        ]
        self.automaton = _automaton([literal for literal, _ in self.literals]) if use_automaton else None
        # raw line -> (text, origin, matches, shape): a repeated line is matched once
        self._line_cache: dict[bytes, tuple[str, str | None, list[Any], str]] = {}

    def scan(self, stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> ScanResult:
        state = [tracker_for(s) for s in self.signatures]
        carry = b""
        lines = 0
        total = 0
        while True:
            chunk = stream.read(chunk_bytes)
            if not chunk:
                break
            total += len(chunk)
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n")
            if cut == -1:
                if len(data) < MAX_LINE_BYTES:
                    carry = data
                    continue
                cut = len(data) - 1  # one giant line: take it as it is
            block, carry = data[: cut + 1], data[cut + 1 :]
            self._scan_block(block, lines, state)
            lines += block.count(b"\n")
        if carry:
            self._scan_block(carry, lines, state)
            lines += 1
        incidents = [incident for tracker in state for incident in tracker.finish()]
        return ScanResult(lines=lines, bytes_read=total, incidents=incidents)

    def scan_bytes(self, data: bytes) -> ScanResult:
        return self.scan(io.BytesIO(data))

    def _candidates(self, lower: bytes) -> dict[int, tuple[int, int, set[Target] | None]]:
        """line start -> (line end, first hit offset, targets or None) for lines holding a literal.

        The automaton path leaves targets to `_line_targets` (None here), so a
        line repeated many times is searched once, through the line cache.
        """
        if self.automaton is not None:
            return self._candidates_automaton(lower)
        found: dict[int, tuple[int, int, set[Target] | None]] = {}
        for literal, targets in self.literals:
            pos = lower.find(literal)
            while pos != -1:
                start = lower.rfind(b"\n", 0, pos) + 1
                end = lower.find(b"\n", pos)
                if end == -1:
                    end = len(lower)
                entry = found.get(start)
                if entry is None:
                    found[start] = (end, pos, set(targets))
                elif entry[2] is not None:
                    entry[2].update(targets)
                pos = lower.find(literal, end)
        return found

    def _candidates_automaton(self, lower: bytes) -> dict[int, tuple[int, int, set[Target] | None]]:
        found: dict[int, tuple[int, int, set[Target] | None]] = {}
        end = -1
        for _literal_index, hit, _hit_end in self.automaton.find_matches_as_indexes(lower):
            if hit < end:
                continue  # this line is already taken
            start = lower.rfind(b"\n", 0, hit) + 1
            end = lower.find(b"\n", hit)
            if end == -1:
                end = len(lower)
            found[start] = (end, hit, None)
        return found

    def _line_targets(self, lower_line: bytes) -> set[Target]:
        # The block-wide search reports non-overlapping matches only; search the
        # one line again, overlapping, to get every literal it holds.
        targets: set[Target] = set()
        for index, _s, _e in self.automaton.find_matches_as_indexes(lower_line, overlapping=True):
            targets.update(self.literals[index][1])
        return targets

    def _scan_block(self, block: bytes, first_line: int, state: list[IncidentTracker]) -> None:
        candidates = self._candidates(block.lower())
        if not candidates:
            return
        line_number = first_line + 1
        counted_to = 0
        cache = self._line_cache
        for start in sorted(candidates):
            end, hit, targets = candidates[start]
            line_number += block.count(b"\n", counted_to, start)
            counted_to = start
            if end - start > REGEX_WINDOW:
                start = max(start, hit - REGEX_WINDOW // 2)
                end = min(end, start + REGEX_WINDOW)
            raw = block[start:end]
            known = cache.get(raw)
            if known is None:
                if targets is None:
                    targets = self._line_targets(raw.lower())
                text = raw.decode("utf-8", "replace").rstrip("\r")
                known = (text, origin_of(text), self._match_line(text, targets), shape(text))
                if len(cache) >= LINE_CACHE_ENTRIES:
                    cache.clear()
                cache[raw] = known
            text, origin, results, text_shape = known
            for s_index, p_index, groups, entry in results:
                if s_index < 0:
                    for tracker in state:
                        tracker.boundary()
                    continue
                state[s_index].add(Evidence(line_number, text, p_index, groups, origin, entry, text_shape))

    def _match_line(
        self, text: str, targets: Iterable[Target]
    ) -> list[tuple[int, int, dict[str, str], CatalogEntry | None]]:
        """(signature, pattern, named groups, catalog entry) for each target pattern that matches `text`.

        A catalog match resolves to its entry (no entry: no match). A line a hand-written
        signature with one required pattern explains is not reported again by a catalog.
        """
        results: list[tuple[int, int, dict[str, str], CatalogEntry | None]] = []
        catalog_hits: list[tuple[int, int, dict[str, str], CatalogEntry | None]] = []
        explained = False
        excluded: dict[int, bool] = {}
        lower = text.lower()
        for s_index, p_index in sorted(targets):
            if s_index < 0:
                if _BOUNDARY.match(text):
                    results.append((s_index, p_index, {}, None))
                continue
            signature = self.signatures[s_index]
            pattern = signature.patterns[p_index]
            # Many signatures share a prefilter literal (every Xid one has "xid"): a literal
            # the line lacks rules a pattern out faster than its regex can.
            if not _holds_all(lower, pattern.every):
                continue
            match = pattern.regex.search(text)
            if match is None:
                continue
            groups = {k: v for k, v in match.groupdict().items() if v is not None}
            if signature.catalog is not None:
                entry = signature.catalog.resolve(p_index, groups)
                if entry is not None:
                    catalog_hits.append((s_index, p_index, groups, entry))
                continue
            if s_index not in excluded:
                excluded[s_index] = any(x.search(text) for x in signature.exclude)
            if excluded[s_index]:
                continue
            if signature.patterns[p_index].required and signature.required_count == 1:
                explained = True
            results.append((s_index, p_index, groups, None))
        if not explained:
            seen: set[tuple[int, str]] = set()
            for hit in catalog_hits:  # one incident per entry and line, whichever recognizer found it
                key = (hit[0], hit[3].id if hit[3] is not None else "")
                if key not in seen:
                    seen.add(key)
                    results.append(hit)
        return results
