"""load_node: saved nvidia-smi XML or gpudoctor JSON report, with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpudoctor.errors import BadInput, InputMissing
from gpudoctor.facts import NodeFacts
from gpudoctor.nodeinput import load_node
from gpudoctor.pipeline import diagnose

XML = Path(__file__).resolve().parent.parent / "fixtures" / "nvidia-smi"


def test_loads_nvidia_smi_xml() -> None:
    node = load_node(XML / "A100-SXM4-80GB_535.54.03.xml")
    assert node.source == "nvidia-smi-xml"
    assert node.gpus[0].name == "NVIDIA A100-SXM4-80GB"


def test_report_round_trip(tmp_path: Path) -> None:
    original = load_node(XML / "8x-Tesla-V100S-PCIE-32GB_460.73.01.xml")
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(diagnose(original)), encoding="utf-8")
    loaded = load_node(saved)
    assert loaded == original
    assert loaded.source == "nvidia-smi-xml"  # the provenance of the facts is kept


def test_bare_node_object(tmp_path: Path) -> None:
    saved = tmp_path / "node.json"
    saved.write_text(json.dumps(NodeFacts().to_dict()), encoding="utf-8")
    assert load_node(saved) == NodeFacts()


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputMissing, match="no such file"):
        load_node(tmp_path / "absent.xml")
    with pytest.raises(InputMissing, match="is a directory"):
        load_node(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"node": {"gpus": []}}', "no node.driver object"),
        (
            b'{"node": {"driver": {}, "gpus": [{"index": "zero"}]}}',
            "NodeFacts.gpus[0].index: expected an integer",
        ),
        (b"\x7fELF\x02\x01", "neither a gpudoctor JSON report nor nvidia-smi -q -x XML"),
        (b"<nvidia_smi_log><gpu>", "malformed XML"),
    ],
)
def test_bad_input(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(content)
    with pytest.raises(BadInput) as info:
        load_node(bad)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
