"""Node-wide and per-GPU derived facts: driver presence, matrix look-ups, topology meaning.

Everything a rule needs that is not a plain fact is computed here once, from the
knowledge tables in gpudoctor.knowledge.matrix; a derived value that cannot be
known is None with its reason in the owning `derived["unknown"]` map.
"""

from __future__ import annotations

from typing import Any

from gpudoctor.facts import ImageFacts, NodeFacts

_NO_DRIVER_PREFIX = "no NVIDIA driver: "


def _driver_present(driver: dict[str, Any]) -> bool | None:
    if driver.get("present") is not None:
        return bool(driver["present"])
    # A driver version could only come from a running driver (NVML or nvidia-smi).
    return True if driver.get("version") else None


def _no_driver_reason(driver: dict[str, Any]) -> str | None:
    unknown = driver.get("unknown") or {}
    for key in ("present", "version", "nvml_version"):
        reason = unknown.get(key)
        if reason:
            text = str(reason)
            return text[len(_NO_DRIVER_PREFIX) :] if text.startswith(_NO_DRIVER_PREFIX) else text
    return None


def derive(context: dict[str, Any], node: NodeFacts, image: ImageFacts | None) -> None:
    derived = context["derived"]
    derived.setdefault("unknown", {})
    driver = context["driver"]
    derived["driver_present"] = _driver_present(driver)
    derived["no_driver_reason"] = _no_driver_reason(driver)
    derived["gpu_count"] = len(context["gpus"])
