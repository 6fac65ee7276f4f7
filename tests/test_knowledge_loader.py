"""Rule files as the loader finds them: path order, symlinks, edits seen in the same
process, and nothing written anywhere (a DaemonSet's root and home are read-only)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpudoctor.errors import BadInput
from gpudoctor.knowledge import loader

REPO = Path(__file__).resolve().parent.parent
XML = REPO / "fixtures" / "nvidia-smi" / "Tesla-T4_515.105.01.xml"

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


def rule_ids(root: Path) -> list[str]:
    return [rule.id for _file, rules in loader.load_kind("rules", [root]) for rule in rules]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    (root / "b").mkdir(parents=True)
    (root / "a.yaml").write_text(RULE.format(n=1))
    (root / "b" / "c.yaml").write_text(RULE.format(n=2))
    (root / "m.yaml").write_text("kind: matrix\ntable: cuda_mvc\nrows: []\n")  # another kind
    (root / "notes.txt").write_text("not a rule file")
    return root


def test_same_process_sees_a_same_size_rewrite(tree: Path) -> None:
    assert rule_ids(tree) == ["GD-TST-001", "GD-TST-002"]
    before = (tree / "a.yaml").stat()
    (tree / "a.yaml").write_text(RULE.format(n=9))  # same size
    os.utime(tree / "a.yaml", ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime
    assert rule_ids(tree) == ["GD-TST-009", "GD-TST-002"]


def test_an_unchanged_file_keeps_its_validated_items(tree: Path) -> None:
    first = loader.load_kind("rules", [tree])
    second = loader.load_kind("rules", [tree])
    assert [items for _f, items in first] == [items for _f, items in second]
    assert all(a is b for (_fa, a), (_fb, b) in zip(first, second, strict=True))


def test_a_bad_file_raises_one_line(tree: Path) -> None:
    (tree / "bad.yaml").write_text("kind: rules\nrules: [\n")
    with pytest.raises(BadInput, match=r"bad\.yaml: line \d+ invalid YAML"):
        rule_ids(tree)


def test_path_order_symlinks_and_other_suffixes(tree: Path) -> None:
    (tree / "a-b").mkdir()
    (tree / "a-b" / "z.yaml").write_text(RULE.format(n=6))
    (tree / "a").mkdir()
    (tree / "a" / "y.yaml").write_text(RULE.format(n=7))
    (tree / "link.yaml").symlink_to(tree / "a.yaml")  # the same file twice: listed once
    outside = tree.parent / "outside"
    outside.mkdir()
    (outside / "o.yaml").write_text(RULE.format(n=8))
    (tree / "linked-dir").symlink_to(outside)  # not followed, as os.walk does not
    assert rule_ids(tree) == ["GD-TST-007", "GD-TST-006", "GD-TST-001", "GD-TST-002"]


def test_a_scan_writes_nothing_under_a_read_only_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    done = subprocess.run(
        [sys.executable, "-m", "gpudoctor", "scan", "--from-nvidia-smi", str(XML), "--format", "oneline"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )
    assert done.returncode in (0, 1, 2, 3), done.stderr
    assert done.stderr == ""
    assert list(home.iterdir()) == []
