"""glob_match means what fnmatch.fnmatchcase means."""

from __future__ import annotations

import fnmatch

from hypothesis import given, settings
from hypothesis import strategies as st

from gpudoctor.knowledge.globs import glob_match

alphabet = st.sampled_from("ab*H1 ")
pattern = st.text(alphabet, max_size=8)
text = st.text(st.sampled_from("abH1 *"), max_size=10)


@settings(max_examples=4000, deadline=None)
@given(text, pattern)
def test_star_globs_match_as_fnmatch(value: str, glob: str) -> None:
    assert glob_match(value, glob) is fnmatch.fnmatchcase(value, glob)


def test_product_names_and_other_wildcards() -> None:
    assert glob_match("nvidia h100 80gb hbm3", "*h100*")
    assert not glob_match("nvidia h800 pcie", "*h100*")
    assert glob_match("nvidia rtx pro 6000 blackwell server edition", "*rtx pro * blackwell*")
    assert glob_match("aab", "a*ab") and not glob_match("ab", "a*ab")  # pieces may not overlap
    assert glob_match("a100", "a?00") and glob_match("a100", "[ab]100")  # handed to fnmatch
