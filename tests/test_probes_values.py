"""The string parsers of probe values (sizes, PCI ids) decide as the regular expressions they stand for."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudoctor.probes.nvsmi_xml import _device_id
from gpudoctor.probes.values import mib_from


def mib_by_regex(text: str) -> int | None:
    # ASCII digits, as nvidia-smi prints them, at most 18 (values.MAX_DIGITS): "٣" is no size.
    match = re.match(r"^([0-9]{1,18})\s*MiB$", text.strip())
    return int(match.group(1)) if match else None


def device_id_by_regex(text: str) -> str | None:
    match = re.fullmatch(r"(?:0x)?([0-9A-Fa-f]{4})10DE", text, re.IGNORECASE)
    return match.group(1).upper() if match else None


@pytest.mark.parametrize(
    ("text", "mib"),
    [("81920 MiB", 81920), (" 0MiB\n", 0), ("81920  MiB", 81920), ("N/A", None), ("1 GiB", None), ("MiB", None),
     ("-1 MiB", None), ("1.5 MiB", None), ("81920 mib", None), ("٣ MiB", None), ("1" * 5000 + " MiB", None)],
)  # fmt: skip
def test_mib_from(text: str, mib: int | None) -> None:
    assert mib_from(text) == mib == mib_by_regex(text)


@pytest.mark.parametrize(
    ("text", "device"),
    [("20B010DE", "20B0"), ("0x233010DE", "2330"), ("0X233010de", "2330"), ("2330", None), ("0x10DE10DE", "10DE"),
     ("0x3410DE", None), ("20G010DE", None), ("20B010DF", None), ("", None)],
)  # fmt: skip
def test_device_id(text: str, device: str | None) -> None:
    assert _device_id(text) == device == device_id_by_regex(text)


_PIECES = st.sampled_from(
    ["0x", "0X", "10DE", "10de", "MiB", " ", "\n", "20B0", "9", "x", "g", "-", ".", "٣", "²"]
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(_PIECES, max_size=6).map("".join) | st.text(max_size=12))
def test_parsers_agree_with_the_regular_expressions(text: str) -> None:
    assert mib_from(text) == mib_by_regex(text)
    assert _device_id(text) == device_id_by_regex(text)
