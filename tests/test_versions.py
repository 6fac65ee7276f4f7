"""gpudoctor.versions decides exactly as packaging does (PEP 440), on generated cases."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from gpudoctor.versions import NumericVersion, parse_version, spec_contains, valid_specifier
from tests.support.imports import modules_loaded_by

part = st.integers(min_value=0, max_value=12) | st.sampled_from([0, 10, 535, 580])
release = st.lists(part, min_size=1, max_size=4).map(lambda parts: ".".join(str(p) for p in parts))
padded = release.map(lambda text: text.replace("5", "05", 1))  # leading zeros: "535.54.03"
version_text = release | padded
operator = st.sampled_from(["==", "!=", "<=", ">=", "<", ">", "~="])
clause = st.tuples(operator, version_text, st.booleans(), st.sampled_from(["", " "])).map(
    lambda c: f"{c[3]}{c[0]}{c[3]}{c[1]}{'.*' if c[2] else ''}"
)
specifier = st.lists(clause, min_size=0, max_size=3).map(",".join)


@settings(max_examples=3000, deadline=None)
@given(specifier, version_text)
def test_specifiers_match_packaging(spec: str, value: str) -> None:
    try:
        expected = SpecifierSet(spec).contains(Version(value), prereleases=True)
    except InvalidSpecifier:
        assert not valid_specifier(spec)
        return
    assert valid_specifier(spec)
    assert spec_contains(spec, value) is expected


@settings(max_examples=2000, deadline=None)
@given(version_text, version_text)
def test_ordering_and_equality_match_packaging(left: str, right: str) -> None:
    a, b = parse_version(left), parse_version(right)
    assert isinstance(a, NumericVersion)
    pa, pb = Version(left), Version(right)
    assert (a == b, a < b, a <= b, a > b, a >= b) == (pa == pb, pa < pb, pa <= pb, pa > pb, pa >= pb)
    assert (hash(a) == hash(b)) or a != b
    assert a.release == pa.release
    # Mixed with packaging's own versions, the answer is the same.
    assert (a < pb, pa < b, a == pb) == (pa < pb, pa < pb, pa == pb)


def test_non_numeric_versions_go_to_packaging() -> None:
    assert parse_version("2.14.1+cu130") == Version("2.14.1+cu130")
    assert parse_version("13.0.0rc1") < parse_version("13.0")
    assert parse_version("12.4.127-1") == Version("12.4.127.post1")
    assert parse_version("not a version") is None
    assert spec_contains(">=2.14", "2.14.1+cu130") is True
    assert spec_contains(">12.9", "13.0.0rc1") is True  # pre-releases allowed, as the rules ask
    assert spec_contains(">=13.0", "13.0.0rc1") is False  # but a release candidate precedes 13.0
    assert spec_contains(">=1", "junk") is None
    assert valid_specifier("===12.4") and not valid_specifier(">=12.*") and not valid_specifier("~=12")


def test_numeric_work_does_not_import_packaging() -> None:
    code = (
        "from gpudoctor.versions import parse_version, spec_contains, valid_specifier\n"
        "assert spec_contains('>=570,<580', '575.51.03') and valid_specifier('==12.*')\n"
        "assert parse_version('12.4') == parse_version('12.4.0') and parse_version('9.0') != None\n"
    )
    assert modules_loaded_by(code, ("packaging",)) == []
