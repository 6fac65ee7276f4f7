"""The per-directory rule-file cache: a hit reads nothing, any change to the tree misses."""

from __future__ import annotations

import marshal
import os
from pathlib import Path

import pytest

from gpudoctor.errors import BadInput
from gpudoctor.knowledge import loader, treecache

RULE = """kind: rules
rules:
  - id: GD-TST-{n:03d}
    title: test rule {n}
    severity: info
    applies_to: node
    test: {{driver.version: {{is_null: true}}}}
    message: no driver
    fix: install one
    source: field report
"""
MATRIX = "kind: matrix\ntable: cuda_mvc\nrows: []\n"


class Counting:
    """A classify function that parses with the loader and counts the files it read."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.read: list[str] = []

    def __call__(self, file: str) -> tuple[str, dict | None]:
        self.read.append(os.path.basename(file))
        return loader._classify(file, self.kind)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache that trusts files written a moment ago (the rewrites below change
    sizes, so no two versions of a file share a stat within one clock tick)."""
    monkeypatch.setenv("GPUDOCTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GPUDOCTOR_NO_CACHE", raising=False)
    monkeypatch.setattr(treecache, "_MEMO", {})
    monkeypatch.setattr(treecache, "RACY_NS", 0)
    return tmp_path / "cache"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    (root / "b").mkdir(parents=True)
    (root / "a.yaml").write_text(RULE.format(n=1))
    (root / "b" / "c.yaml").write_text(RULE.format(n=2))
    (root / "m.yaml").write_text(MATRIX)
    (root / "notes.txt").write_text("not a rule file")
    return root


def load(root: Path, kind: str = "rules") -> tuple[list[str], list[str]]:
    """(files of `kind` found, files read) in a process that has not seen the tree yet."""
    treecache._MEMO.clear()
    counting = Counting(kind)
    found = treecache.documents(str(root), kind, counting)
    return [os.path.relpath(file, root) for file, _key, _doc in found], counting.read


def test_second_load_reads_no_file(cache: Path, tree: Path) -> None:
    assert load(tree) == (["a.yaml", "b/c.yaml"], ["a.yaml", "c.yaml", "m.yaml"])
    assert len(list(cache.glob("tree-rules-*.marshal"))) == 1
    assert load(tree) == (["a.yaml", "b/c.yaml"], [])
    assert load(tree, "matrix") == (["m.yaml"], ["a.yaml", "c.yaml", "m.yaml"])  # one entry per kind
    assert load(tree, "matrix") == (["m.yaml"], [])


def test_a_changed_added_or_removed_file_is_read_again(cache: Path, tree: Path) -> None:
    load(tree)
    (tree / "b" / "c.yaml").write_text(RULE.format(n=3) + "# edited\n")
    found, read = load(tree)
    assert read == ["c.yaml"]
    (tree / "b" / "d.yml").write_text(RULE.format(n=4))
    assert load(tree) == (["a.yaml", "b/c.yaml", "b/d.yml"], ["d.yml"])
    (tree / "a.yaml").unlink()
    assert load(tree) == (["b/c.yaml", "b/d.yml"], [])


def test_a_rewrite_with_the_old_mtime_and_size_still_misses(cache: Path, tree: Path) -> None:
    target = tree / "a.yaml"
    load(tree)
    before = target.stat()
    target.write_text(RULE.format(n=9))  # same size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_size == before.st_size and target.stat().st_mtime_ns == before.st_mtime_ns
    treecache._MEMO.clear()
    found = treecache.documents(str(tree), "rules", Counting("rules"))
    assert found[0][2]["rules"][0]["id"] == "GD-TST-009"


def test_same_process_sees_edits(cache: Path, tree: Path) -> None:
    """The in-process copy is checked by stat on every load too."""
    assert [r.id for _f, rules in loader.load_kind("rules", [tree]) for r in rules] == [
        "GD-TST-001",
        "GD-TST-002",
    ]
    (tree / "a.yaml").write_text(RULE.format(n=5) + "# edited\n")
    assert [r.id for _f, rules in loader.load_kind("rules", [tree]) for r in rules] == [
        "GD-TST-005",
        "GD-TST-002",
    ]


@pytest.mark.parametrize(
    "blob",
    [
        b"gpudoctor-treecache-1\n\x00garbage",
        b"something else",
        b"gpudoctor-treecache-1\n" + marshal.dumps([1, 2]),
    ],
)
def test_a_damaged_entry_is_rebuilt(cache: Path, tree: Path, blob: bytes) -> None:
    load(tree)
    (entry,) = cache.glob("tree-rules-*.marshal")
    entry.write_bytes(blob)
    assert load(tree) == (["a.yaml", "b/c.yaml"], ["a.yaml", "c.yaml", "m.yaml"])
    assert load(tree)[1] == []


def test_disabled_cache_writes_nothing(cache: Path, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUDOCTOR_NO_CACHE", "1")
    assert load(tree) == (["a.yaml", "b/c.yaml"], ["a.yaml", "c.yaml", "m.yaml"])
    assert load(tree)[1] == ["a.yaml", "c.yaml", "m.yaml"]
    assert not cache.exists()


def test_a_bad_file_raises_and_leaves_no_entry(cache: Path, tree: Path) -> None:
    (tree / "bad.yaml").write_text("kind: rules\nrules: [\n")
    with pytest.raises(BadInput, match=r"bad\.yaml: line \d+ invalid YAML"):
        load(tree)
    assert not list(cache.glob("tree-*"))


def test_path_order_symlinks_and_other_suffixes(cache: Path, tree: Path) -> None:
    (tree / "a-b").mkdir()
    (tree / "a-b" / "z.yaml").write_text(RULE.format(n=6))
    (tree / "a").mkdir()
    (tree / "a" / "y.yaml").write_text(RULE.format(n=7))
    (tree / "link.yaml").symlink_to(tree / "a.yaml")  # the same file twice: listed once
    outside = tree.parent / "outside"
    outside.mkdir()
    (outside / "o.yaml").write_text(RULE.format(n=8))
    (tree / "linked-dir").symlink_to(outside)  # not followed, as os.walk does not
    found, _read = load(tree)
    assert found == ["a/y.yaml", "a-b/z.yaml", "a.yaml", "b/c.yaml"]


def rule_ids(root: Path) -> list[str]:
    return [rule.id for _file, rules in loader.load_kind("rules", [root]) for rule in rules]


def test_files_written_a_moment_ago_are_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two same-size writes in one clock tick have the same stat: a tree changed less than
    RACY_NS ago is read on every load and kept nowhere, in this process or on disk."""
    monkeypatch.setenv("GPUDOCTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(treecache, "_MEMO", {})
    root = tmp_path / "rules"
    root.mkdir()
    rule = root / "a.yaml"
    rule.write_text(RULE.format(n=1))
    assert load(root)[1] == ["a.yaml"] and load(root)[1] == ["a.yaml"]
    assert not list((tmp_path / "cache").glob("tree-*"))
    assert rule_ids(root) == ["GD-TST-001"]
    rule.write_text(RULE.format(n=2))  # the same size, perhaps in the same tick
    assert rule_ids(root) == ["GD-TST-002"]
    monkeypatch.setattr(treecache, "RACY_NS", 0)  # as if the file were older than that
    assert load(root)[1] == ["a.yaml"] and load(root)[1] == []
