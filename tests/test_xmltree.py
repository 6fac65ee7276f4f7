"""gpudoctor.probes.xmltree reads every recorded nvidia-smi XML as ElementTree does."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gpudoctor.probes.xmltree import ParseError, XmlElement, fromstring

REPO = Path(__file__).resolve().parent.parent
XMLS = sorted((REPO / "fixtures" / "nvidia-smi").glob("*.xml")) + sorted(
    (REPO / "fixtures" / "fleets").rglob("*.xml")
)


def same(mine: XmlElement, theirs: ET.Element, where: str) -> None:
    assert (mine.tag, mine.text, mine.attrib) == (theirs.tag, theirs.text, theirs.attrib), where
    assert len(mine.children) == len(theirs), where
    for i, (a, b) in enumerate(zip(mine.children, theirs, strict=True)):
        same(a, b, f"{where}/{b.tag}[{i}]")


@pytest.mark.parametrize("path", XMLS, ids=[p.name for p in XMLS])
def test_every_recorded_xml_reads_as_elementtree_reads_it(path: Path) -> None:
    data = path.read_bytes()
    mine, theirs = fromstring(data), ET.fromstring(data)
    same(mine, theirs, mine.tag)
    for query in (
        "gpu",
        "gpu/pci/pci_bus_id",
        "gpu/mig_devices/mig_device",
        "driver_version",
        "nothing/here",
    ):
        assert [e.text for e in mine.findall(query)] == [e.text for e in theirs.findall(query)]
        found, expected = mine.find(query), theirs.find(query)
        assert (found is None) == (expected is None)
        assert found is None or expected is None or found.text == expected.text


def test_mixed_content_and_attributes() -> None:
    data = b'<r a="1">head<c id="x">leaf</c>tail<c/></r>'
    mine, theirs = fromstring(data), ET.fromstring(data)
    same(mine, theirs, "r")
    assert mine.find("c") is not None and mine.find("c").get("id") == "x"  # type: ignore[union-attr]


@pytest.mark.parametrize("data", [b"", b"<a><b></a>", b"<a>", b"not xml"])
def test_malformed_input_raises_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        fromstring(data)
