"""Make docs/fleet-report.png: the demo fleet's HTML report as Chromium shows it.

The demo fleet (fixtures/fleets/demo) with two real image configs served by a loopback
registry (tests/support), `--what-if driver=650.12`, rendered by `gpudoctor fleet --format
html` and photographed by Debian's Chromium through Playwright at laptop width.
    .venv/bin/python tools/fleet_snapshot.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.browser import browser, open_page  # noqa: E402
from tests.support.fleet_registry import push_fixture_image, running_registry  # noqa: E402

OUTPUT = REPO / "docs" / "fleet-report.png"
WIDTH, HEIGHT = 1280, 1180


def main() -> None:
    with running_registry() as registry, tempfile.TemporaryDirectory() as tmp:
        images = [
            push_fixture_image(
                registry, "vllm/vllm-openai", "v0.23.0", "vllm-openai_v0.23.0-cuda13.0.2_amd64"
            ),
            push_fixture_image(
                registry,
                "nvidia/cuda",
                "12.4.1-runtime-ubuntu22.04",
                "nvidia-cuda_12.4.1-runtime-ubuntu2204_amd64",
            ),
        ]
        page_path = Path(tmp) / "fleet.html"
        image_args = [arg for image in images for arg in ("--image", image)]
        subprocess.run(
            [sys.executable, "-m", "gpudoctor", "fleet", str(REPO / "fixtures" / "fleets" / "demo"), *image_args,
             "--insecure-registry", registry.host, "--what-if", "driver=650.12", "--format", "html",
             "-o", str(page_path)],
            check=False, timeout=300,
        )  # fmt: skip
        with browser() as instance:
            page, log = open_page(instance, page_path, WIDTH, HEIGHT)
            # Show the findings of the A800 x CUDA 13 cell open, as a reader would click it.
            page.click("a.cell[data-image*=vllm]")
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(OUTPUT))
            if log.console_errors:
                raise SystemExit(f"console errors: {log.console_errors}")
    print(OUTPUT)


if __name__ == "__main__":
    main()
