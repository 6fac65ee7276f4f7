"""Every recorded NVML call of every snapshot failing, one at a time, with each error class
of tests/support/nvml_faults.FAULT_CLASSES: how many faults still end in an exit-0 verdict.

    .venv/bin/python tools/nvml_fault_sweep.py [--show N]

The test suite runs a deterministic sample of the same cases (tests/test_probe_nvml.py);
this script runs all of them and prints, per snapshot and error class, the faults ending
in `ok`/`info` (exit 0). Those must all be documented answers (NotSupported from a call
for an optional feature the board is not known to have: the node then reads as a board
without it; see docs/threat-model.md, "ECC"); any other is a bug and makes the script exit 1.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.nvml_faults import (  # noqa: E402
    FAULT_CLASSES,
    SNAPSHOTS_WITH_GPUS,
    diagnose_with_fault,
    documented_answer,
    recorded_calls,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", type=int, default=10, help="list this many faults ending in exit 0")
    args = parser.parse_args()
    started = time.monotonic()
    total = passed = wrong = 0
    per: collections.Counter[tuple[str, str]] = collections.Counter()
    shown: list[str] = []
    for name in SNAPSHOTS_WITH_GPUS:
        for key in recorded_calls(name):
            for error in FAULT_CLASSES:
                total += 1
                verdict = diagnose_with_fault(name, key, error)["verdict"]
                if verdict in ("ok", "info"):
                    passed += 1
                    per[(name, error)] += 1
                    answer = documented_answer(name, key, error)
                    wrong += not answer
                    if len(shown) < args.show:
                        kind = "documented answer" if answer else "FAILURE PASSED"
                        shown.append(f"  {name}: {key} -> {error}: verdict {verdict} ({kind})")
    elapsed = time.monotonic() - started
    print(
        f"{total} faults, {passed} ending in exit 0 ({passed - wrong} documented NotSupported answers, {wrong} not), {elapsed:.1f} s"
    )
    for name in SNAPSHOTS_WITH_GPUS:
        cases = len(recorded_calls(name))
        row = ", ".join(f"{error} {per[(name, error)]}/{cases}" for error in FAULT_CLASSES)
        print(f"{name}: {row}")
    print("\n".join(shown))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
