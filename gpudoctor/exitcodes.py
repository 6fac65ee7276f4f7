"""Exit codes: Nagios plugin convention for verdicts, sysexits for errors.

Health-check systems (Nagios, NHC, Slurm HealthCheckProgram, Kubernetes probes)
already understand 0/1/2/3; errors that prevent any verdict use sysexits.h.
"""

from __future__ import annotations

from collections.abc import Iterable

OK = 0
WARN = 1
FAIL = 2
UNKNOWN = 3

USAGE = 64  # EX_USAGE: bad command line
DATAERR = 65  # EX_DATAERR: bad input data (malformed file, bad rule file)
NOINPUT = 66  # EX_NOINPUT: input file missing or unreadable
UNAVAILABLE = 69  # EX_UNAVAILABLE: a needed service (registry, docker) is unavailable
SOFTWARE = 70  # EX_SOFTWARE: internal error (a bug in gpudoctor)
CANTCREAT = 73  # EX_CANTCREAT: cannot write the output file
TEMPFAIL = 75  # EX_TEMPFAIL: temporary failure (rate limited, 503, timed out after retries): retry later
NOPERM = 77  # EX_NOPERM: the registry refused the credentials or denied access (401/403)

# Severity order, worst last. "unknown" ranks above "warn": a node we could not
# check must never look healthier than one with a known, minor problem; a
# definite "fail" still wins, since it is what a health check must act on.
SEVERITY_ORDER = ("ok", "info", "warn", "unknown", "fail")
RUNS = ("ok", "info", "warn")  # an image with this verdict starts; warn: with a caveat the findings name
CLEAN = ("ok", "info")  # nothing to fix

_VERDICT_EXIT = {"ok": OK, "info": OK, "warn": WARN, "fail": FAIL, "unknown": UNKNOWN}


SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITY_ORDER)}  # sort keys: worse ranks higher


def worst(severities: Iterable[str]) -> str:
    """The worst severity of an iterable of severities; 'ok' for none."""
    rank = SEVERITY_RANK
    result = "ok"
    for severity in severities:
        if rank[severity] > rank[result]:
            result = severity
    return result


def for_verdict(verdict: str) -> int:
    return _VERDICT_EXIT[verdict]
