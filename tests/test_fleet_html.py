"""The HTML reports as a user sees them, in a real Chromium (Playwright, Debian's browser).

Inputs are real: the demo fleet plus reports made by `gpudoctor scan --from-nvidia-smi` from
edited real XMLs with hostile host and product names, and images from a real loopback registry.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import browser, open_page
from tests.support.cli import run_gpudoctor
from tests.support.fleet_registry import Registry, push_fixture_image, running_registry

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "fixtures" / "fleets" / "demo"
A800_XML = REPO / "fixtures" / "fleets" / "nvidia-smi" / "A800-SXM4-80GB_535.54.03.xml"
HOSTILE_HOST = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'
HOSTILE_GPU = 'NVIDIA A800 <img src=y onerror="alert(1)">'
# The verdict colours of templates/base.html.j2, as the browser computes them.
BACKGROUND = {
    "ok": "rgb(220, 243, 226)",
    "info": "rgb(220, 243, 226)",
    "warn": "rgb(255, 240, 191)",
    "unknown": "rgb(236, 226, 255)",
    "fail": "rgb(253, 224, 224)",
}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as instance:
        yield instance


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with running_registry() as started:
        yield started


def _scan_edited(tmp_path: Path, name: str, hostname: str, **tags: str) -> Path:
    """A real XML with tags edited, scanned by gpudoctor, its hostname set as a collector would."""
    text = A800_XML.read_text(encoding="utf-8")
    for tag, value in tags.items():
        escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
        text, count = re.subn(rf"<{tag}>[^<]*</{tag}>", f"<{tag}>{escaped}</{tag}>", text)
        assert count, tag
    xml = tmp_path / f"{name}.xml"
    xml.write_text(text, encoding="utf-8")
    result = run_gpudoctor("scan", "--from-nvidia-smi", str(xml), "--format", "json")
    assert result.returncode in (0, 1, 2, 3), result.stderr
    report = json.loads(result.stdout)
    report["node"]["host"]["hostname"] = hostname
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    xml.unlink()
    return path


@pytest.fixture(scope="module")
def fleet_page(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> tuple[Path, list[str]]:
    directory = tmp_path_factory.mktemp("fleet")
    shutil.copytree(DEMO, directory / "demo")
    _scan_edited(directory / "demo", "evil-01", HOSTILE_HOST, driver_version="650.12")
    _scan_edited(directory / "demo", "evil-02", "gpu-02", product_name=HOSTILE_GPU)
    images = [
        push_fixture_image(registry, "html/vllm-openai", "v0.23.0", "vllm-openai_v0.23.0-cuda13.0.2_amd64"),
        push_fixture_image(registry, "html/cuda", "12.4.1", "nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64"),
    ]
    output = directory / "fleet.html"
    image_args = [a for image in images for a in ("--image", image)]
    result = run_gpudoctor(
        "fleet", str(directory / "demo"), *image_args, "--insecure-registry", registry.host,
        "--what-if", "driver=650.12", "--plan", "--format", "html", "-o", str(output),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr  # the R650 A800 node fails (GD-DRV-006)
    assert result.stdout == ""
    return output, images


def test_one_file_nothing_fetched_no_errors(chromium: Any, fleet_page: tuple[Path, list[str]]) -> None:
    path, _ = fleet_page
    page, log = open_page(chromium, path)
    page.click("a.cell[data-verdict=fail][data-image]")  # opening a panel fetches nothing either
    page.wait_for_timeout(200)
    assert log.requests == [path.resolve().as_uri()]
    assert log.console_errors == [] and log.dialogs == []
    html = path.read_text(encoding="utf-8")
    # No external stylesheet, script, image, font or import: only links a user clicks.
    assert not re.search(
        r"<(link|img|iframe|object|embed|audio|video)\b|<script[^>]*\ssrc=|url\(|@import", html
    )


def test_matrix_cells_and_colours(chromium: Any, fleet_page: tuple[Path, list[str]]) -> None:
    path, images = fleet_page
    page, _ = open_page(chromium, path)
    classes = page.locator("#matrix tbody tr").count()
    assert classes == 9  # the 7 demo classes + the R650 A800 node + the renamed GPU
    cells = page.locator("a.cell[data-image]")
    assert cells.count() == classes * len(images)
    seen = set()
    for index in range(cells.count()):
        cell = cells.nth(index)
        verdict = cell.get_attribute("data-verdict")
        colour = cell.evaluate("e => getComputedStyle(e).backgroundColor")
        assert colour == BACKGROUND[verdict], (verdict, colour)
        assert cell.inner_text().split()[1] == verdict.upper()
        seen.add(verdict)
    assert {"fail", "warn", "info"} <= seen
    summary = page.locator("#summary").inner_text()
    assert summary.startswith("✗ FAIL") and "20 nodes in 9 classes" in summary
    # Laptop width: the page does not scroll sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280


def test_a_cell_opens_its_findings_with_fix_and_links(
    chromium: Any, fleet_page: tuple[Path, list[str]]
) -> None:
    path, images = fleet_page
    page, log = open_page(chromium, path)
    cell = page.locator(f'a.cell[data-verdict=fail][data-image="{images[0]}"]').first
    target = cell.get_attribute("href").lstrip("#")
    panel = page.locator(f"details#{target}")
    assert panel.get_attribute("open") is None
    cell.click()
    page.wait_for_function(f"document.getElementById('{target}').open")
    assert panel.locator(".fix").first.is_visible()
    assert "Fix:" in panel.inner_text() and "GD-" in panel.inner_text()
    links = panel.locator("ul.refs a")
    assert links.count() >= 1
    for index in range(links.count()):
        link = links.nth(index)
        assert link.get_attribute("href").startswith("https://")
        assert link.get_attribute("target") == "_blank" and "noopener" in link.get_attribute("rel")
        assert link.inner_text() == link.get_attribute("href")
    assert log.console_errors == []


def test_what_if_and_plan_sections(chromium: Any, fleet_page: tuple[Path, list[str]]) -> None:
    path, _ = fleet_page
    page, _ = open_page(chromium, path)
    what_if = page.locator("table.whatif").inner_text()
    assert "+GD-DRV-006" in what_if
    plan = page.locator("#plan ~ details.panel")
    assert plan.count() >= 3
    a800 = plan.filter(has_text="1x A800-SXM4-80GB R535 / vllm-openai").inner_text()
    assert "cuda-compat=13.0" in a800 and "GD-CUDA-003" in a800 and "GD-CUDA-008" in a800


def test_hostile_names_show_as_text(chromium: Any, fleet_page: tuple[Path, list[str]]) -> None:
    path, _ = fleet_page
    page, log = open_page(chromium, path)
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    assert page.evaluate("window.__pwned") is None
    assert log.dialogs == []
    body = page.locator("body").inner_text()
    assert HOSTILE_HOST in body  # the hostname as the report has it, as text
    assert HOSTILE_GPU in body
    assert page.locator("script").count() == 1 and page.locator("img").count() == 0
    assert log.requests == [path.resolve().as_uri()]  # no img src=x / y fetched


def test_scan_html_page(chromium: Any, tmp_path: Path) -> None:
    report = _scan_edited(tmp_path, "evil", HOSTILE_HOST, driver_version="650.12")
    output = tmp_path / "node.html"
    result = run_gpudoctor("scan", "--from-nvidia-smi", str(report), "--format", "html", "-o", str(output))
    assert result.returncode == 2, result.stderr
    page, log = open_page(chromium, output)
    assert page.locator("#summary").inner_text().startswith("✗ FAIL")
    finding = page.locator("ul.findings > li.s-fail")
    assert "GD-DRV-006" in finding.first.inner_text()
    assert HOSTILE_HOST in page.locator("body").inner_text()
    assert page.evaluate("window.__pwned") is None and log.dialogs == [] and log.console_errors == []
    assert log.requests == [output.resolve().as_uri()]
