"""Matrix tables (`kind: matrix`): validated on load and exposed as typed look-ups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpudoctor.knowledge.schema import RuleFileError


def validate_matrix_document(doc: dict[str, Any], path: Path) -> list[Any]:
    raise RuleFileError(None, "kind", "matrix tables are not supported yet")
