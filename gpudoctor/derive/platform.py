"""The node's CPU architecture as an OCI platform architecture.

A gpudoctor report records `uname -m`; a saved `nvidia-smi -q -x` does not.
For those, the GPU products still say a lot: Grace superchips (GH200, GB200,
GB300) and Tegra/DGX Spark SoCs only exist with an Arm CPU, and HGX/PCIe data
center and GeForce boards sit in x86_64 hosts in all but a few Arm servers.
The second inference is labelled as an assumption wherever it is used, so a
user with an Arm server and discrete GPUs is told to pass --platform.
"""

from __future__ import annotations

from collections.abc import Sequence

# uname -m -> OCI architecture
CPU_TO_OCI = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "ppc64le": "ppc64le",
}
OCI_TO_CPU = {"amd64": "x86_64", "arm64": "aarch64", "ppc64le": "ppc64le"}


def node_architecture(
    cpu_arch: str | None, gpus: Sequence[tuple[str | None, str | None]]
) -> tuple[str | None, str | None]:
    """(OCI architecture, why it was inferred) from `uname -m` and the GPUs'
    (name, PCI device id); the reason is None when measured."""
    if cpu_arch:
        return CPU_TO_OCI.get(cpu_arch), None
    if not gpus:
        return None, None
    from gpudoctor.knowledge.gpu_identity import identify

    models = [identify(pci_id, name).model for name, pci_id in gpus]
    arm = [
        name
        for (name, _), model in zip(gpus, models, strict=True)
        if model and (model.grace or model.form_factor == "soc")
    ]
    if arm:
        return "arm64", f"inferred: {arm[0]} only ships with an Arm CPU (Grace / Tegra)"
    if all(models):
        names = ", ".join(sorted({name or "?" for name, _ in gpus}))
        return "amd64", (
            f"assumed: the node input has no CPU architecture and {names} sits in x86_64 hosts "
            "except on Arm servers; pass --platform linux/arm64 or a gpudoctor JSON report if this is one"
        )
    return None, None
