"""gpudoctor.versions: packaging's PEP 440 decisions, None for non-versions, pre-releases allowed."""

from __future__ import annotations

from packaging.version import Version

from gpudoctor.versions import parse_version, spec_contains, valid_specifier


def test_versions_the_rules_meet() -> None:
    assert parse_version("2.14.1+cu130") == Version("2.14.1+cu130")
    assert parse_version("13.0.0rc1") < parse_version("13.0")
    assert parse_version("12.4.127-1") == Version("12.4.127.post1")
    assert parse_version("not a version") is None
    assert spec_contains(">=2.14", "2.14.1+cu130") is True
    assert spec_contains(">12.9", "13.0.0rc1") is True  # pre-releases allowed, as the rules ask
    assert spec_contains(">=13.0", "13.0.0rc1") is False  # but a release candidate precedes 13.0
    assert spec_contains(">=1", "junk") is None
    assert valid_specifier("===12.4") and not valid_specifier(">=12.*") and not valid_specifier("~=12")
    assert parse_version("12.4") == parse_version("12.4.0") and parse_version("535.54.03") > parse_version(
        "535.54.3a"
    )
