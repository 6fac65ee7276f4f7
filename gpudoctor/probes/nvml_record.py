"""Record this machine's NVML answers as a replay snapshot.

    python -m gpudoctor.probes.nvml_record > snapshot.json

Runs the same NVML probe `gpudoctor scan` runs, through the same boundary, and
prints every call with its answer or NVML error, so the tests replay a real
node exactly (see fixtures/nvml/ and tests/support/nvml_replay.py).
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import sys

from gpudoctor import __version__
from gpudoctor.probes.nvml_api import LiveNvml, NvmlError, RecordingNvml, call_key
from gpudoctor.probes.nvml_probe import probe_nvml

FORMAT = "gpudoctor-nvml-snapshot/1"


def record() -> dict[str, object]:
    meta = {
        "recorded_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hostname": platform.node(),
        "gpudoctor": __version__,
    }
    try:
        backend = LiveNvml()
    except NvmlError as exc:
        # No nvidia-ml-py: record what the probe would see.
        return {"format": FORMAT, "meta": meta, "calls": {call_key("nvmlInit", ()): {"error": exc.name}}}
    recorder = RecordingNvml(backend)
    probe_nvml(recorder)
    return {"format": FORMAT, "meta": meta, "calls": recorder.calls}


def main() -> int:
    json.dump(record(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
