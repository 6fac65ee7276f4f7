"""Property tests over every input format (tests/support/fuzzing.py): each parser gives a
result or a one-line GpudoctorError, nothing else. A short budget here; the long run is
tools/fuzz.py (same properties, HYPOTHESIS_PROFILE=fuzz-long). Crashes they found are
regression examples below (@example), fixed in the code they name."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, example, given, settings

from tests.support import fuzzing

settings.register_profile(
    "fuzz-short", max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
settings.register_profile(
    "fuzz-long",
    max_examples=int(os.environ.get("GPUDOCTOR_FUZZ_EXAMPLES", "2000")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
PROFILE = settings.get_profile(os.environ.get("GPUDOCTOR_FUZZ_PROFILE", "fuzz-short"))

_DEEP = b"(" * 1000 + b"abc" + b")" * 1000
DEEP_REGEX_RULE = (
    b"kind: rules\nrules:\n  - {id: GD-TST-001, title: t, severity: info, applies_to: node, message: m, fix: f,\n"
    b"     source: field report, test: {driver.version: {matches: '" + _DEEP + b"'}}}\n"
)
DEEP_REGEX_SIGNATURE = (
    b"kind: signatures\nsignatures:\n  - {id: GD-LOG-901, title: t, severity: warn, cause: c, fix: f,\n"
    b"     source: field report, patterns: ['" + _DEEP + b"']}\n"
)


@PROFILE
@given(fuzzing.bytes_from(fuzzing.corpus("xml")))
@example(b"<nvidia_smi_log>" + b"<gpu/>" * 300 + b"</nvidia_smi_log>")  # 174k <gpu/>: 47 s, 1.26 GB
@example(b"<nvidia_smi_log><attached_gpus>" + b"9" * 5000 + b"</attached_gpus></nvidia_smi_log>")
@example("<nvidia_smi_log><attached_gpus>²</attached_gpus></nvidia_smi_log>".encode())
# found by the red-team run: the driver branch derived with int() of a 5,000-digit version, exit 70
@example(b"<nvidia_smi_log><driver_version>" + b"9" * 5000 + b"</driver_version></nvidia_smi_log>")
def test_nvidia_smi_xml(data: bytes) -> None:
    fuzzing.nvidia_smi_xml(data)


@PROFILE
@given(fuzzing.bytes_from(fuzzing.corpus("node")))
@example(b"[" * 100_000 + b"]" * 100_000)  # RecursionError: exit 70
@example(b'{"node": {"driver": {"branch": ' + b"9" * 5000 + b"}}}")  # int() over 4300 digits
@example(b'{"node": {"driver": {"version": "' + b"9" * 5000 + b'.1"}}}')  # derive's branch: int(), exit 70
@example(b'{"node": {"driver": {}, "host": {"hostname": "\\ud800"}}}')  # lone surrogate: stdout, exit 70
def test_node_json(data: bytes) -> None:
    fuzzing.node_json(data)


@PROFILE
@given(fuzzing.bytes_from(fuzzing.corpus("fleet")))
@example(b'{"schema_version": "1.0", "node": {"driver": {}}, "verdict": ["ok"], "findings": []}')
@example(
    b'{"schema_version": "1.0", "node": {}, "verdict": "ok", "findings": [{"rule_id": "x", "severity": {}}]}'
)
def test_fleet_file(data: bytes) -> None:
    fuzzing.fleet_file(data)


@PROFILE
@given(fuzzing.bytes_from(fuzzing.corpus("rules")))
@example(b"kind: matrix\ntable: [gpus]\nrows: []\n")  # unhashable name: exit 70
@example(b"kind: rules\nrules: [" + b"9" * 5000 + b"]\n")
# found by the red-team run: re's parser and necessary_literals recurse once per group, exit 70
@example(DEEP_REGEX_RULE)
@example(DEEP_REGEX_SIGNATURE)
def test_rule_file(data: bytes) -> None:
    fuzzing.rule_file(data)


@PROFILE
@given(fuzzing.bytes_from(fuzzing.corpus("log")))
def test_log(data: bytes) -> None:
    fuzzing.log(data)


@PROFILE
@given(fuzzing.bytes_from(fuzzing.corpus("image")))
@example(b'{"schemaVersion": ' + b"9" * 5000 + b"}")
@example(b"[" * 100_000)
def test_image_document(data: bytes) -> None:
    fuzzing.image_document(data)


@PROFILE
@given(fuzzing.REQUIRE_TEXT)
@example("cuda>=" + "9" * 5000)  # found by this test: int() over 4300 digits in _strtoumax, exit 70
# found by the red-team run: forward compatibility's int() of 5,000-digit brand/driver terms, exit 70
@example("cuda>=12.1 brand=tesla,driver>=" + "9" * 5000 + ",driver<" + "9" * 5000 + "1")
@example("brand=tesla,driver>=1,driver<2 " * 5000)  # dsl.c's walk recursed once per term: RecursionError
def test_nvidia_require(text: str) -> None:
    fuzzing.require(text)


@PROFILE
@given(fuzzing.VERSION_TEXT, fuzzing.SPEC_TEXT)
@example("9" * 5000, ">=1")  # found by this test: packaging's int() over 4300 digits, exit 70
@example("1", ">=" + "9" * 5000)
def test_versions(text: str, spec: str) -> None:
    fuzzing.version(text, spec)


def test_the_corpora_are_seeded_from_fixtures() -> None:
    for name in ("xml", "node", "fleet", "rules", "log", "image"):
        assert len(fuzzing.corpus(name)) >= 3, name


pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
