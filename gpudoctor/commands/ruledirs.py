"""Site-local rule files and directories: the --rules values, then $GPUDOCTOR_RULES.

Plain strings: the loader takes str or PathLike, and pathlib stays off the
start-up path (docs/startup.md).
"""

from __future__ import annotations

import os

from gpudoctor.commands.common import RULES_ENV


def rule_dirs_from(options: list[str]) -> list[str]:
    env = os.environ.get(RULES_ENV, "")
    return [*options, *(p for p in env.split(os.pathsep) if p)]
