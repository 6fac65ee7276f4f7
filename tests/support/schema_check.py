"""Run the real CLI and check the JSON it prints against the schema shipped in the package."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from gpudoctor.report.schema import load_schema
from tests.support.cli import run_gpudoctor

REPO = Path(__file__).resolve().parent.parent.parent
VERDICT_EXITS = (0, 1, 2, 3)


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def violations(schema: str, document: Any) -> list[str]:
    """Why the schema rejects `document`, one line per error (empty: it accepts it)."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator(schema).iter_errors(document)
    ]


def printed_json(
    schema: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> tuple[Any, int]:
    """`gpudoctor ARGS` in a fresh interpreter: its stdout parsed and validated against
    `schema`, and its exit code, which must be a verdict (0-3), not an error."""
    done = run_gpudoctor(*args, cwd=REPO, stdin=stdin, env=env)
    assert done.returncode in VERDICT_EXITS, f"exit {done.returncode}: {done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    document = json.loads(done.stdout)
    errors = violations(schema, document)
    assert not errors, "\n".join(errors[:5])
    return document, done.returncode
