# ruff: noqa: F401, F811 - pytest fixtures imported from tests.support.services
"""The start-up budget of docs/startup.md: what scan and preflight must not import.

Times are measured by bench/bench_preflight.py, not here; this guards the causes. A
preflight against a REAL loopback registry and a saved nvidia-smi XML, and a scan of
that XML, run in a fresh interpreter that then lists the heavy modules it loaded. Each
command runs twice and the second run is measured: the first may fill the rule caches
(YAML, tempfile), which is what a cold cache costs once, not on every run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.imports import modules_loaded_by
from tests.support.services import Registry, build_image, push_image, registry

pytestmark = pytest.mark.services
REPO = Path(__file__).resolve().parent.parent
XML = REPO / "fixtures" / "nvidia-smi" / "A100-SXM4-80GB_535.54.03.xml"
IMAGE_ENV = REPO / "fixtures" / "images" / "nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64.json"

# Each of these cost 0.5-17 ms on the CI machine (docs/startup.md).
HEAVY = (
    "click", "dataclasses", "inspect", "typing", "http.client", "email", "ssl", "packaging",
    "hashlib", "xml.etree.ElementTree", "tempfile", "platform", "datetime", "encodings.idna",
    "yaml", "rich", "docker", "pynvml", "pathlib", "urllib", "ipaddress", "socket", "selectors",
    "contextlib", "base64",
)  # fmt: skip

# The command must end in a verdict (0 ok, 1 warn), not an error; its report goes nowhere.
RUN = """
import sys
from gpudoctor.cli import main
sys.stdout = open("/dev/null", "w")
try:
    main({argv!r})
except SystemExit as exit:
    assert exit.code in {verdicts!r}, exit.code
"""


def heavy_loaded_by(*argv: str, verdicts: tuple[int, ...]) -> list[str]:
    code = RUN.format(argv=list(argv), verdicts=verdicts)
    modules_loaded_by(code, HEAVY)  # warms the rule caches of this session
    return modules_loaded_by(code, HEAVY)


def test_scan_of_a_saved_xml_loads_nothing_heavy() -> None:
    assert heavy_loaded_by("scan", "--from-nvidia-smi", str(XML), "--format", "json", verdicts=(0,)) == []


def test_preflight_from_a_plain_http_registry_loads_nothing_heavy(registry: Registry) -> None:
    env = json.loads(IMAGE_ENV.read_text())["env"]
    push_image(registry, "startup/cuda", "12.4", build_image(env))
    ref = f"{registry.host}/startup/cuda:12.4"
    argv = ("preflight", ref, "--insecure-registry", registry.host, "--node", str(XML), "--format", "json")
    assert heavy_loaded_by(*argv, verdicts=(0, 1)) == []
