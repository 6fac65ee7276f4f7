"""The parsed-rules cache: same data as the YAML, ignored when absent, corrupt or disabled."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpudoctor.knowledge import loader, parsecache

TEXT = "kind: rules\nrules: []\nnote: cached\n"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GPUDOCTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GPUDOCTOR_NO_CACHE", raising=False)
    return tmp_path / "cache"


def test_parse_fills_then_reads_the_cache(cache: Path) -> None:
    first = loader._parse(Path("x.yaml"), TEXT)
    entries = list(cache.glob("yaml-*.marshal"))
    assert first == {"kind": "rules", "rules": [], "note": "cached"} and len(entries) == 1
    # Prove the second parse comes from the cache: change the cached data.
    parsecache.put(TEXT, {"kind": "rules", "rules": [], "note": "from cache"})
    assert loader._parse(Path("x.yaml"), TEXT)["note"] == "from cache"


def test_corrupt_entry_is_ignored_and_rewritten(cache: Path) -> None:
    loader._parse(Path("x.yaml"), TEXT)
    (entry,) = cache.glob("yaml-*.marshal")
    entry.write_bytes(b"gpudoctor-parsecache-1\n\x00garbage")
    assert loader._parse(Path("x.yaml"), TEXT)["note"] == "cached"
    assert parsecache.get(TEXT) == {"kind": "rules", "rules": [], "note": "cached"}


def test_disabled_or_unwritable_cache_parses_yaml(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUDOCTOR_NO_CACHE", "1")
    assert loader._parse(Path("x.yaml"), TEXT)["note"] == "cached"
    assert not cache.exists()
    monkeypatch.delenv("GPUDOCTOR_NO_CACHE")
    cache.write_text("a file where the directory should be")
    assert loader._parse(Path("x.yaml"), TEXT)["note"] == "cached"


def test_non_plain_yaml_data_is_not_cached(cache: Path) -> None:
    text = "kind: rules\nwhen: 2026-01-01\n"  # YAML reads a date object; marshal refuses it
    assert str(loader._parse(Path("x.yaml"), text)["when"]) == "2026-01-01"
    assert parsecache.get(text) is None
