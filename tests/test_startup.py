# ruff: noqa: F401, F811 - pytest fixtures imported from tests.support.services
"""The start-up budget of docs/startup.md: what scan and preflight must not import.

Times are measured by bench/bench_preflight.py, not here; this guards the causes. A
preflight against a REAL loopback registry and a saved nvidia-smi XML, and a scan of
that XML, run in a fresh interpreter that then lists the heavy modules it loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import Registry, build_image, push_image, registry

pytestmark = pytest.mark.services
REPO = Path(__file__).resolve().parent.parent
XML = REPO / "fixtures" / "nvidia-smi" / "A100-SXM4-80GB_535.54.03.xml"
IMAGE_ENV = REPO / "fixtures" / "images" / "nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64.json"

# Each of these cost 2-17 ms on the CI machine (docs/startup.md).
HEAVY = (
    "click", "dataclasses", "inspect", "typing", "http.client", "email", "ssl", "packaging",
    "hashlib", "xml.etree.ElementTree", "tempfile", "platform", "datetime", "encodings.idna",
    "yaml", "rich", "docker", "pynvml",
)  # fmt: skip

RUN = """
import json, sys
from gpudoctor.cli import main
sys.stdout = open("/dev/null", "w")
try:
    main({argv!r})
except SystemExit as exit:
    code = exit.code
sys.stdout = sys.__stdout__
print(json.dumps({{"code": code, "heavy": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def loaded(*argv: str) -> dict[str, object]:
    code = RUN.format(argv=list(argv), heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_scan_of_a_saved_xml_loads_nothing_heavy() -> None:
    result = loaded("scan", "--from-nvidia-smi", str(XML), "--format", "json")
    assert result == {"code": 0, "heavy": []}


def test_preflight_from_a_plain_http_registry_loads_nothing_heavy(registry: Registry) -> None:
    env = json.loads(IMAGE_ENV.read_text())["env"]
    push_image(registry, "startup/cuda", "12.4", build_image(env))
    ref = f"{registry.host}/startup/cuda:12.4"
    result = loaded(
        "preflight", ref, "--insecure-registry", registry.host, "--node", str(XML), "--format", "json"
    )
    assert result["code"] in (0, 1), result  # a verdict, not an error
    assert result["heavy"] == []
