"""NVML replay for tests: recorded snapshots from fixtures/nvml/, and a backend whose
calls hang, to prove the collector's deadline holds."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from gpudoctor.probes.nvml_api import Arg, ReplayNvml

NVML_FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures" / "nvml"


def snapshot(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((NVML_FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def replay(name: str) -> ReplayNvml:
    return ReplayNvml(snapshot(name))


class HangingNvml(ReplayNvml):
    """Replays a snapshot but blocks in `function` until released, like a wedged driver."""

    def __init__(self, data: dict[str, Any], function: str) -> None:
        super().__init__(data)
        self.function = function
        self.release = threading.Event()

    def call(self, function: str, *args: Arg) -> Any:
        if function == self.function:
            self.release.wait(timeout=60)
        return super().call(function, *args)
