"""Group one signature's matching lines into incidents, as the log streams by.

An incident is one occurrence of a failure: the lines of its required patterns, the
context lines that belong to it, and the values captured from those lines only.
Lines belong together when they are at most `WINDOW` lines apart and come from the
same origin (the same rank / process / NCCL host:pid prefix, when the lines carry one),
so a signature's values never come from an unrelated log pasted 50 lines further on; a log
boundary in a concatenation (gpudoctor.explain.matcher.BOUNDARY) ends every open incident.
Identical repeats (same signature or catalog entry, same captured values, same text
with its numbers masked) collapse into one incident with a count and first/last line;
different ones stay separate entries.

Memory stays bounded: a few recent context lines per signature, the evidence lines of
each incident's first occurrence, and at most `MAX_INCIDENTS` distinct incidents per
signature (further distinct ones are not kept).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from gpudoctor.explain.catalog import CatalogEntry
from gpudoctor.explain.signatures import Signature

WINDOW = 30  # lines: how far apart two lines of one incident may be
ADJACENT = 2  # lines: a differently worded line this close says the same occurrence again
MAX_EVIDENCE = 12  # lines kept per incident
MAX_INCIDENTS = 50  # distinct incidents kept per signature
_RECENT = 64  # context lines remembered for an incident that starts later

# Where a line says which rank / process wrote it (torch "[rank3]:", vLLM "(VllmWorker rank=1 pid=42)",
# NCCL "host:1234:1240 [0] NCCL ..."). Looked for near the start of the line only.
_ORIGIN = re.compile(
    r"\[rank\s*(?P<rank>\d+)\]|\((?:\w+\s+)?(?:rank=(?P<rank2>\d+)\s+)?pid=(?P<pid>\d+)\)"
    r"|(?P<nccl>[\w.-]+:\d+:\d+) \[\d+\]"
)
_TIMESTAMP = re.compile(
    r"^\s*(?:\[\s*\d+\.\d+\]\s*|\[?\d{4}-\d{2}-\d{2}[T ][\d:.,]+(?:Z|[+-]\d{2}:?\d{2})?\]?\s*"
    r"|[A-Z][a-z]{2}\s+\d+\s+[\d:]{8}\s+)"
)
_DIGITS = re.compile(r"\d+")


def origin_of(text: str) -> str | None:
    match = _ORIGIN.search(text[:160])
    if match is None:
        return None
    return match.group("rank") or match.group("rank2") or match.group("pid") or match.group("nccl")


def _same_origin(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b


def shape(text: str) -> str:
    """A line's text without its timestamp and with its numbers masked: repeats compare equal."""
    return _DIGITS.sub("#", _TIMESTAMP.sub("", text)).strip()


@dataclass(slots=True)
class Evidence:
    line: int
    text: str
    pattern: int
    groups: dict[str, str]
    origin: str | None
    entry: CatalogEntry | None = None
    shape: str = ""  # shape(text), computed once per distinct line by the matcher


@dataclass
class Incident:
    signature: Signature
    entry: CatalogEntry | None
    evidence: list[Evidence]  # of the first occurrence, line order
    captured: dict[str, str]
    values: dict[str, list[str]]
    first_line: int
    last_line: int
    count: int  # required-pattern lines over all occurrences

    @property
    def id(self) -> str:
        return self.entry.id if self.entry is not None else self.signature.id

    @property
    def line_numbers(self) -> list[int]:
        return sorted({e.line for e in self.evidence})


@dataclass
class _Cluster:
    origin: str | None
    anchor: int  # last required line
    evidence: list[Evidence] = field(default_factory=list)
    patterns: set[int] = field(default_factory=set)
    required_lines: int = 0
    last: int = 0
    shapes: set[str] = field(default_factory=set)  # of the required lines
    values: dict[str, str] = field(default_factory=dict)  # captured so far

    def repeats(self, evidence: Evidence) -> bool:
        """A second line of a required pattern starts the next incident (identical ones merge
        later), unless it follows at once in other words and captures nothing that contradicts
        this one: a tool's "-> system not yet initialized" and its "code=802(...)" on the next
        line are one failure, while consecutive Xid lines of two GPUs differ in their values."""
        if evidence.pattern not in self.patterns:
            return False
        rewords = evidence.line - self.last <= ADJACENT and evidence.shape not in self.shapes
        return not rewords or any(self.values.get(k, v) != v for k, v in evidence.groups.items())

    def add(self, evidence: Evidence, required: bool) -> None:
        self.last = max(self.last, evidence.line)
        if len(self.evidence) < MAX_EVIDENCE:
            self.evidence.append(evidence)
        self.patterns.add(evidence.pattern)
        if required:
            self.required_lines += 1
            self.anchor = evidence.line
            self.shapes.add(evidence.shape)
            for name, value in evidence.groups.items():
                self.values.setdefault(name, value)


class IncidentTracker:
    """The incidents of one hand-written signature (all required patterns within one window)."""

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self.required = {i for i, p in enumerate(signature.patterns) if p.required}
        self.recent: deque[Evidence] = deque(maxlen=_RECENT)
        self.open: _Cluster | None = None
        self.incidents: dict[tuple[object, ...], Incident] = {}
        # (identity, text shape) -> (captured values, incident): where _covering looks
        self.by_text: dict[tuple[str, str], list[tuple[frozenset[tuple[str, str]], Incident]]] = {}
        self.claimed = 0  # last line of the previous incident: context up to here is its own

    def add(self, evidence: Evidence) -> None:
        required = evidence.pattern in self.required
        cluster = self.open
        if cluster is not None and evidence.line - cluster.anchor > WINDOW:
            self._close()
            cluster = None
        if required:
            if cluster is not None and (
                not _same_origin(cluster.origin, evidence.origin) or cluster.repeats(evidence)
            ):
                self._close()
                cluster = None
            if cluster is None:
                cluster = self.open = _Cluster(evidence.origin, evidence.line)
                for before in self.recent:
                    if (
                        before.line > self.claimed
                        and evidence.line - before.line <= WINDOW
                        and _same_origin(before.origin, evidence.origin)
                    ):
                        cluster.add(before, required=False)
            elif cluster.origin is None:
                cluster.origin = evidence.origin
            cluster.add(evidence, required=True)
        else:
            if cluster is not None and _same_origin(cluster.origin, evidence.origin):
                cluster.add(evidence, required=False)
            self.recent.append(evidence)

    def boundary(self) -> None:
        """The log ends here (a concatenation's next file begins): nothing carries over."""
        self._close()
        self.recent.clear()

    def finish(self) -> list[Incident]:
        self._close()
        return list(self.incidents.values())

    def _close(self) -> None:
        cluster, self.open = self.open, None
        if cluster is None or not self.required <= cluster.patterns:
            return
        self.claimed = cluster.last
        self._record(cluster.evidence, cluster.required_lines, None, cluster.last)

    def _captured(self, evidence: list[Evidence]) -> tuple[dict[str, str], dict[str, list[str]]]:
        """First value of each group (required lines first, then the nearest context line) and all distinct ones."""
        convert = self.signature.convert
        if len(evidence) == 1:  # most incidents: one line, so one value per group
            groups = evidence[0].groups.items()
            return {name: convert[name](raw) if name in convert else raw.strip() for name, raw in groups}, {}
        required_lines = [e.line for e in evidence if e.pattern in self.required]

        def rank(e: Evidence) -> tuple[int, int]:
            if e.pattern in self.required:
                return (0, e.line)
            return (1, min((abs(e.line - r) for r in required_lines), default=0))

        first: dict[str, str] = {}
        every: dict[str, list[str]] = {}
        for item in sorted(evidence, key=rank):
            for name, raw in item.groups.items():
                value = convert[name](raw) if name in convert else raw.strip()
                first.setdefault(name, value)
                values = every.setdefault(name, [])
                if value not in values and len(values) < 10:
                    values.append(value)
        return first, {k: v for k, v in every.items() if len(v) > 1}

    def _record(self, evidence: list[Evidence], count: int, entry: CatalogEntry | None, last: int) -> None:
        if len(evidence) > 1:
            evidence = sorted(evidence, key=lambda e: e.line)
            anchor = next(e for e in evidence if e.pattern in self.required)
        else:
            anchor = evidence[0]
        captured, values = self._captured(evidence)
        identity = entry.id if entry is not None else self.signature.id
        key: tuple[object, ...] = (identity, tuple(sorted(captured.items())), self._shape(anchor))
        known = self.incidents.get(key) or self._covering(identity, captured, key[2])
        first, last = evidence[0].line, max(last, evidence[-1].line)
        if known is not None:
            known.count += count
            known.last_line = max(known.last_line, last)
            return
        if len(self.incidents) >= MAX_INCIDENTS:
            return
        incident = Incident(self.signature, entry, evidence, captured, values, first, last, count)
        self.incidents[key] = incident
        self.by_text.setdefault((identity, key[2]), []).append((frozenset(captured.items()), incident))

    def _shape(self, anchor: Evidence) -> str:
        return anchor.shape

    def _covering(self, identity: str, captured: dict[str, str], text: str) -> Incident | None:
        """An incident this one repeats with fewer values (context printed once, before the first)."""
        values = captured.items()
        for known_values, incident in self.by_text.get((identity, text), ()):
            if values <= known_values:
                return incident
        return None


class CatalogTracker(IncidentTracker):
    """The incidents of one catalog family: each recognised line is one entry's incident."""

    def add(self, evidence: Evidence) -> None:
        self._record([evidence], 1, evidence.entry, evidence.line)

    def _captured(self, evidence: list[Evidence]) -> tuple[dict[str, str], dict[str, list[str]]]:
        # The group that named the entry is the entry itself; keep the others (a PCI address).
        catalog = self.signature.catalog
        assert catalog is not None
        keys = set(catalog.keys)
        first, values = super()._captured(evidence)
        return {k: v for k, v in first.items() if k not in keys}, {
            k: v for k, v in values.items() if k not in keys
        }

    def _shape(self, anchor: Evidence) -> str:
        return ""  # one entry with the same values is one incident, whatever else its lines say

    def _record(self, evidence: list[Evidence], count: int, entry: CatalogEntry | None, last: int) -> None:
        # Catalog lines have no required pattern: each line is its own anchor.
        self.required = {evidence[0].pattern}
        super()._record(evidence, count, entry, last)


def tracker_for(signature: Signature) -> IncidentTracker:
    return CatalogTracker(signature) if signature.catalog is not None else IncidentTracker(signature)
