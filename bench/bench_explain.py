"""Time `gpudoctor explain` on a 100 MB log beside `grep -E -c` with the same patterns.

The log is mostly healthy lines (the real healthy fixtures: vLLM, NCCL INFO,
trainer, driver-load output) with a few failure lines from the failure
fixtures spread through it. grep gets every required pattern of every shipped
signature and every recognizer of every catalog family, translated to POSIX ERE (named and non-capturing groups become
plain groups, \\d becomes [0-9], lazy quantifiers greedy, lookaheads are
dropped, character classes become POSIX brackets, so grep's set is a superset;
grep has no per-line exclusions, so it also counts lines explain deliberately
ignores, such as TensorFlow's benign library probe), case-insensitive like
explain, in the same run. Both read the file from the page cache (one warm-up
read first). Each command runs 3 times; the best time is printed, and the
ratio of the best times (target: explain within 3x of grep).

    .venv/bin/python bench/bench_explain.py [--mb 100] [--keep PATH]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gpudoctor.explain import load_signatures  # noqa: E402

LOGS = REPO / "fixtures" / "logs"
FAILURES_PER_LOG = 25


def _lines(paths: list[Path]) -> list[bytes]:
    lines: list[bytes] = []
    for path in paths:
        for line in path.read_bytes().splitlines():
            if line.strip() and not line.startswith(b"# SOURCE:"):
                lines.append(line)
    return lines


def make_log(target: Path, megabytes: int, seed: int = 7) -> int:
    """Write the log; return the number of failure lines planted."""
    rng = random.Random(seed)
    healthy = _lines(sorted((LOGS / "healthy").glob("*.log")))
    required = [p.regex for p in searched_patterns()]
    # Only lines that are failures on their own (not commands or context lines around them).
    failures = [
        line
        for line in _lines(sorted((LOGS / "threads").glob("*.log")))
        if any(r.search(line.decode("utf-8", "replace")) for r in required)
    ]
    size = megabytes * 1024 * 1024
    block = b"\n".join(rng.choice(healthy) for _ in range(20000)) + b"\n"
    blocks_needed = size // len(block) + 1
    plant_at = set(rng.sample(range(blocks_needed), min(FAILURES_PER_LOG, blocks_needed)))
    written = 0
    with target.open("wb") as out:
        for index in range(blocks_needed):
            out.write(block)
            written += len(block)
            if index in plant_at:
                out.write(rng.choice(failures) + b"\n")
    return len(plant_at)


def _drop_lookaheads(pattern: str) -> str:
    """Remove every `(?!...)` / `(?=...)` group (ERE has none; the result matches a superset)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith(("(?!", "(?="), i):
            depth, i = 1, i + 3
            while i < len(pattern) and depth:
                if pattern[i] == "\\":
                    i += 1
                elif pattern[i] == "(":
                    depth += 1
                elif pattern[i] == ")":
                    depth -= 1
                i += 1
            continue
        out.append(pattern[i])
        i += 1
    return "".join(out)


_BRACKET_ESCAPES = {"s": "[:space:]", "w": "[:alnum:]_", "d": "0-9", "\\": "\\", ".": ".", "-": "-"}


def _bracket(body: str) -> str:
    """A Python character class body -> a POSIX bracket expression."""
    negate = body.startswith("^")
    body = body[1:] if negate else body
    items: list[str] = []
    close = ""
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            escaped = body[i + 1]
            if escaped == "]":
                close = "]"  # POSIX: a literal ] goes first
            else:
                items.append(_BRACKET_ESCAPES.get(escaped, escaped))
            i += 2
            continue
        items.append(body[i])
        i += 1
    return "[" + ("^" if negate else "") + close + "".join(items) + "]"


def to_ere(pattern: str) -> str:
    src = _drop_lookaheads(pattern)
    out: list[str] = []
    i = 0
    while i < len(src):
        char = src[i]
        if char == "\\":
            out.append(src[i : i + 2])
            i += 2
        elif char == "[":
            j = i + 1
            while j < len(src) and src[j] != "]":
                j += 2 if src[j] == "\\" else 1
            out.append(_bracket(src[i + 1 : j]))
            i = j + 1
        else:
            out.append(char)
            i += 1
    ere = "".join(out)
    ere = re.sub(r"\(\?P<\w+>", "(", ere)
    ere = ere.replace("(?:", "(")
    ere = ere.replace("\\d", "[0-9]").replace("*?", "*").replace("+?", "+").replace("??", "?")
    return ere


def searched_patterns() -> list:
    """What explain looks for: every required pattern of each signature, and every recognizer of
    each catalog family (a name alternation of all its entries, a code form, a message form)."""
    return [
        p for s in load_signatures().signatures for p in s.patterns if p.required or s.catalog is not None
    ]


def grep_patterns() -> list[str]:
    return [to_ere(p.regex.pattern) for p in searched_patterns()]


def timed(
    command: list[str], env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, timeout=600, env=env)
    return time.perf_counter() - start, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--keep", type=Path, default=None, help="write the log here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = args.keep or Path(tmp) / "bench.log"
        planted = make_log(log, args.mb)
        patterns = Path(tmp) / "patterns.ere"
        ere = grep_patterns()
        patterns.write_text("\n".join(ere) + "\n")
        log.read_bytes()  # warm the page cache for both
        env_c = {**os.environ, "LC_ALL": "C"}
        grep_s, grep_done = timed(["grep", "-E", "-c", "-i", "-f", str(patterns), str(log)], env_c)
        grep_utf8_s, _ = timed(
            ["grep", "-E", "-c", "-i", "-f", str(patterns), str(log)], {**os.environ, "LC_ALL": "C.UTF-8"}
        )
        explain_s, explain_done = timed(
            [sys.executable, "-m", "gpudoctor", "explain", str(log), "--format", "json"]
        )
        import json

        report = json.loads(explain_done.stdout)
        size_mb = log.stat().st_size / (1024 * 1024)
        print(f"log: {size_mb:.0f} MiB, {report['log']['lines']} lines, {planted} failure lines planted")
        signatures = load_signatures().signatures
        families = [s for s in signatures if s.catalog is not None]
        entries = sum(len(s.catalog.entries) for s in families)
        print(
            f"patterns: {len(ere)} (required patterns of {len(signatures) - len(families)} signatures, "
            f"recognizers of {len(families)} catalog families with {entries} entries)"
        )
        print(
            f"grep -E -c -i (LC_ALL=C):      {grep_s:6.2f} s  ({grep_done.stdout.decode().strip()} matching lines)"
        )
        print(f"grep -E -c -i (LC_ALL=C.UTF-8): {grep_utf8_s:6.2f} s")
        print(
            f"gpudoctor explain:              {explain_s:6.2f} s  "
            f"({sum(m['count'] for m in report['matches'])} matching lines, {len(report['matches'])} incidents)"
        )
        fastest_grep = min(grep_s, grep_utf8_s)
        print(f"ratio explain / fastest grep:   {explain_s / fastest_grep:.2f}x  (target <= 3x)")


if __name__ == "__main__":
    main()
