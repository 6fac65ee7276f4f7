"""Images for the fleet tests and bench/bench_fleet.py, on the real loopback registry of
tests/support/services.py: each config carries the environment and labels of a real
image from fixtures/facts/images/."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.services import Registry, build_image, push_image, running_registry

IMAGE_FACTS = Path(__file__).resolve().parent.parent.parent / "fixtures" / "facts" / "images"

__all__ = ["Registry", "push_fixture_image", "running_registry"]


def push_fixture_image(registry: Registry, repository: str, tag: str, facts_name: str) -> str:
    """Push an image built from fixtures/facts/images/<facts_name>.json; returns its reference."""
    facts = json.loads((IMAGE_FACTS / f"{facts_name}.json").read_text(encoding="utf-8"))
    platform = facts.get("platform") or {}
    image = build_image(facts["env"], arch=platform.get("architecture") or "amd64", labels=facts["labels"])
    push_image(registry, repository, tag, image)
    return f"{registry.host}/{repository}:{tag}"
