"""Site-local rule files and directories: the --rules values, then $GPUDOCTOR_RULES.

Imported when a command runs, not with its options: pathlib stays out of
gpudoctor.commands.common (and so out of --help and usage errors).
"""

from __future__ import annotations

import os
from pathlib import Path

from gpudoctor.commands.common import RULES_ENV


def rule_dirs_from(options: list[str]) -> list[Path]:
    dirs = [Path(p) for p in options]
    env = os.environ.get(RULES_ENV, "")
    dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    return dirs
