"""Generate rules/matrix/gpu_devices.tsv from a pci.ids file.

    .venv/bin/python tools/gen_gpu_table.py /usr/share/misc/pci.ids        # writes the table
    .venv/bin/python tools/gen_gpu_table.py PCI_IDS --check                 # exit 1 if stale

Every NVIDIA (vendor 10de) GPU function of pci.ids whose chip is in
rules/matrix/gpu_chips.yaml becomes one row; the header records the pci.ids
version. Run it when a newer pci.ids is out (Debian's `pci.ids` package, or
https://pci-ids.ucw.cz/v2.2/pci.ids) and commit the table, not the database.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gpudoctor.knowledge import gpu_table, pciids  # noqa: E402
from gpudoctor.knowledge.matrix import validate_matrix_document  # noqa: E402

CHIPS = REPO / "rules" / "matrix" / "gpu_chips.yaml"
TABLE = REPO / "rules" / "matrix" / gpu_table.FILE_NAME


def generate(pci_ids: Path, chips_file: Path = CHIPS) -> str:
    doc = yaml.safe_load(chips_file.read_text(encoding="utf-8"))
    (chip_table,) = validate_matrix_document(doc, str(chips_file))
    pci = pciids.parse(pci_ids.read_text(encoding="utf-8", errors="replace"))
    if not pci.devices:
        raise SystemExit(f"{pci_ids}: no NVIDIA (10de) GPU functions found - not a pci.ids file?")
    return gpu_table.render(pci, gpu_table.chip_map(chip_table.rows), str(pci_ids))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pci_ids", type=Path, help="a pci.ids file")
    parser.add_argument("--out", type=Path, default=TABLE, help=f"default: {TABLE.relative_to(REPO)}")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if --out differs")
    args = parser.parse_args()
    if not args.pci_ids.is_file():
        print(f"gen_gpu_table: {args.pci_ids}: no such file", file=sys.stderr)
        return 66
    text = generate(args.pci_ids)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is not what {args.pci_ids} generates", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    rows = text.count("\n") - sum(1 for line in text.splitlines() if line.startswith("#")) - 1
    print(f"wrote {args.out} ({rows} devices)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
