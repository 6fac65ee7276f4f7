"""Every JSON Schema the CLI's documents follow is registered, valid, and ships in the wheel."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import jsonschema
import pytest

from gpudoctor.report.schema import SCHEMA_FILES, load_schema, schema_path
from tests.support.wheel import build_wheel, run_installed

REPO = Path(__file__).resolve().parent.parent
SLOW = os.environ.get("GPUDOCTOR_SLOW") == "1"


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_registered_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema_path(name).is_relative_to(REPO / "gpudoctor")


def test_unknown_schema_name_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="no JSON Schema named 'scan'"):
        schema_path("scan")


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="builds a wheel (set GPUDOCTOR_SLOW=1)")
def test_schemas_load_from_the_installed_wheel(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"gpudoctor/{path}" for path in SCHEMA_FILES.values()} <= names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # Run outside the repository so the schemas can only come from the wheel.
    done = run_installed(
        site,
        "-c",
        "from gpudoctor.report.schema import SCHEMA_FILES, load_schema, schema_path\n"
        "for name in SCHEMA_FILES: load_schema(name); print(schema_path(name))",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert all(line.startswith(str(site)) for line in done.stdout.splitlines()), done.stdout
    assert len(done.stdout.splitlines()) == len(SCHEMA_FILES)
