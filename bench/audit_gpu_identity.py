"""Audit: does `gpudoctor scan` get every NVIDIA GPU's compute capability right?

The held-out set is every Kepler-to-Blackwell GPU function of a pci.ids file whose chip
has a compute capability NVIDIA documents (rules/matrix/gpu_chips.yaml). Each is put
into `nvidia-smi -q -x` form as drivers before ~510 print it (product name and
pci_device_id, no compute_cap, no product_architecture), 8 GPUs per node, and scanned
with `python -m gpudoctor scan --from-nvidia-smi X --format json` from a source tree
(default: this checkout; pass another, e.g. a `git archive` of main, to compare).
Prints right / wrong / none and every wrong one. Target: >= 98 % right, none wrong.

    .venv/bin/python bench/audit_gpu_identity.py [--pci-ids PATH] [--tree DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from gpudoctor.knowledge import gpu_table, pciids  # noqa: E402

DEFAULT_PCI_IDS = (REPO.parent / "shared" / "reference" / "pci.ids", Path("/usr/share/misc/pci.ids"))
GPUS_PER_NODE = 8
DRIVER, DRIVER_CUDA = "470.256.02", "11.4"


def product_name(device: pciids.PciDevice) -> str:
    """What a driver of that age prints: the first product pci.ids names, else the generic name."""
    if not device.name:
        return "Graphics Device"
    return device.name.split(" / ")[0].strip()


def node_xml(devices: list[pciids.PciDevice], driver: str = DRIVER, cuda: str = DRIVER_CUDA) -> str:
    gpus = []
    for index, device in enumerate(devices):
        bus = f"00000000:{index + 0x10:02X}:00.0"
        gpus.append(
            f'<gpu id="{bus}"><product_name>{escape(product_name(device))}</product_name>'
            f"<uuid>GPU-{device.device_id.lower()}-{index:04d}-0000-0000-000000000000</uuid>"
            f"<pci><pci_device_id>{device.device_id}10DE</pci_device_id><pci_bus_id>{bus}</pci_bus_id></pci>"
            "</gpu>"
        )
    return (
        f'<?xml version="1.0" ?>\n<nvidia_smi_log><driver_version>{driver}</driver_version>'
        f"<cuda_version>{cuda}</cuda_version><attached_gpus>{len(devices)}</attached_gpus>"
        + "".join(gpus)
        + "</nvidia_smi_log>\n"
    )


def held_out_set(pci_ids: Path) -> tuple[str | None, list[tuple[pciids.PciDevice, str]]]:
    """(pci.ids version, [(device, documented compute capability)])."""
    doc = yaml.safe_load((REPO / "rules" / "matrix" / "gpu_chips.yaml").read_text(encoding="utf-8"))
    chips = gpu_table.chip_map(doc["rows"])
    parsed = pciids.parse(pci_ids.read_text(encoding="utf-8", errors="replace"))
    return parsed.version, [(d, chips[d.chip][1]) for d in parsed.devices if d.chip in chips]


def scan_ccs(xml: Path, tree: Path) -> list[str | None]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    argv = [sys.executable, "-m", "gpudoctor", "scan", "--from-nvidia-smi", str(xml), "--format", "json"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tree, env=env, timeout=120, check=False)
    if done.returncode not in (0, 1, 2, 3):
        raise RuntimeError(f"scan {xml} exited {done.returncode}: {done.stderr[-400:]}")
    report = json.loads(done.stdout)
    return [gpu.get("compute_capability") for gpu in report["node"]["gpus"]]


def same_cc(got: str | None, want: str) -> bool:
    return got is not None and tuple(int(x) for x in got.split(".")) == tuple(int(x) for x in want.split("."))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pci-ids", type=Path, default=next((p for p in DEFAULT_PCI_IDS if p.is_file()), None)
    )
    parser.add_argument("--tree", type=Path, default=REPO, help="gpudoctor source tree to scan with")
    args = parser.parse_args()
    if args.pci_ids is None or not args.pci_ids.is_file():
        print("audit_gpu_identity: no pci.ids (pass --pci-ids)", file=sys.stderr)
        return 66
    version, cases = held_out_set(args.pci_ids)
    tally: Counter[str] = Counter()
    wrong: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gpuid-audit-") as tmp:
        for start in range(0, len(cases), GPUS_PER_NODE):
            batch = cases[start : start + GPUS_PER_NODE]
            xml = Path(tmp) / f"node{start // GPUS_PER_NODE:03d}.xml"
            xml.write_text(node_xml([device for device, _ in batch]), encoding="utf-8")
            for (device, want), got in zip(batch, scan_ccs(xml, args.tree.resolve()), strict=True):
                if got is None:
                    tally["none"] += 1
                elif same_cc(got, want):
                    tally["right"] += 1
                else:
                    tally["wrong"] += 1
                    wrong.append(
                        f"  {device.device_id} {device.chip} {product_name(device)!r}: got {got}, documented {want}"
                    )
    total = len(cases)
    print(f"pci.ids {version}: {total} GPU functions with a documented compute capability; tree {args.tree}")
    for key in ("right", "wrong", "none"):
        print(f"  {key:<6} {tally[key]:4d}  ({100 * tally[key] / total:5.1f} %)")
    print("\n".join(["wrong:"] + wrong) if wrong else "wrong: none")
    ok = tally["wrong"] == 0 and tally["right"] >= 0.98 * total
    print(f"target >= 98 % right and none wrong: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
