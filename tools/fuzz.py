"""The long fuzz run: the property tests of tests/test_fuzz.py (every input parser, seeded
from fixtures/) with many more examples and a random seed each run.

    .venv/bin/python tools/fuzz.py [--examples 2000] [-k xml]

A crash is printed by Hypothesis with the shrunk input; fix it and add that input as an
@example to tests/test_fuzz.py, so it stays a regression test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per property")
    parser.add_argument("-k", default="", help="only the properties matching this pytest -k expression")
    args = parser.parse_args()
    env = {**os.environ, "GPUDOCTOR_FUZZ_PROFILE": "fuzz-long", "GPUDOCTOR_FUZZ_EXAMPLES": str(args.examples)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz.py"]
    if args.k:
        argv += ["-k", args.k]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=REPO, env=env, check=False)
    print(f"{args.examples} examples per property, {time.monotonic() - started:.0f} s")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
