"""The NVML boundary: the only module that calls pynvml.

Everything else asks a backend `call(function, *args)` with NVML's function
name and plain arguments: a device is its index (a MIG device is "gpu/mig"),
enum arguments are words ("read", "uncorrected", "volatile"). Results are
plain JSON values, NVML errors are `NvmlError` named like pynvml's classes
without the prefix ("NotSupported", "GpuIsLost", "LibRmVersionMismatch").
So a recorded snapshot (gpudoctor.probes.nvml_record) replays exactly what a
live machine answered, error for error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

Arg = int | str


class NvmlBackend(Protocol):
    def call(self, function: str, *args: Arg) -> Any: ...


class NvmlError(Exception):
    """An NVML call failed; `name` is the NVML error ("NotSupported", "GpuIsLost", ...)."""

    def __init__(self, name: str, message: str = "") -> None:
        super().__init__(message or name)
        self.name = name


def call_key(function: str, args: tuple[Arg, ...]) -> str:
    """The snapshot key of one call: "nvmlDeviceGetP2PStatus|0|1|read"."""
    return "|".join([function, *(str(a) for a in args)])


class LiveNvml:
    """pynvml, loaded on first use; a missing nvidia-ml-py reads as LibraryNotFound."""

    def __init__(self) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise NvmlError("LibraryNotFound", f"nvidia-ml-py is not installed: {exc}") from None
        self._nvml: Any = pynvml
        self._handles: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._functions: dict[str, Callable[..., Any]] = self._dispatch()

    def call(self, function: str, *args: Arg) -> Any:
        implementation = self._functions.get(function)
        if implementation is None:
            raise NvmlError("FunctionNotFound", f"{function} is not wrapped by gpudoctor")
        try:
            with self._lock:
                return implementation(*args)
        except self._nvml.NVMLError as exc:
            raise NvmlError(type(exc).__name__.removeprefix("NVMLError_"), str(exc)) from None

    def _handle(self, device: Arg) -> Any:
        key = str(device)
        if key not in self._handles:
            nvml = self._nvml
            if "/" in key:
                gpu, mig = key.split("/")
                self._handles[key] = nvml.nvmlDeviceGetMigDeviceHandleByIndex(
                    self._handle(int(gpu)), int(mig)
                )
            else:
                self._handles[key] = nvml.nvmlDeviceGetHandleByIndex(int(key))
        return self._handles[key]

    def _dispatch(self) -> dict[str, Callable[..., Any]]:
        nvml = self._nvml
        h = self._handle
        p2p_index = {
            "read": nvml.NVML_P2P_CAPS_INDEX_READ,
            "write": nvml.NVML_P2P_CAPS_INDEX_WRITE,
            "nvlink": nvml.NVML_P2P_CAPS_INDEX_NVLINK,
            "atomics": nvml.NVML_P2P_CAPS_INDEX_ATOMICS,
        }
        error_type = {"uncorrected": nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED}
        counter_type = {"volatile": nvml.NVML_VOLATILE_ECC, "aggregate": nvml.NVML_AGGREGATE_ECC}

        def text(value: Any) -> str:
            return value.decode() if isinstance(value, bytes) else str(value)

        def pci_info(device: Arg) -> dict[str, Any]:
            info = nvml.nvmlDeviceGetPciInfo(h(device))
            return {
                "busId": text(info.busId),
                "pciDeviceId": int(info.pciDeviceId),
                "pciSubSystemId": int(info.pciSubSystemId),
            }

        def fabric_info(device: Arg) -> dict[str, Any]:
            import ctypes

            info = nvml.c_nvmlGpuFabricInfo_t()
            nvml.nvmlDeviceGetGpuFabricInfo(h(device), ctypes.byref(info))
            return {
                "clusterUuid": bytes(info.clusterUuid).hex(),
                "status": int(info.status),
                "cliqueId": int(info.cliqueId),
                "state": int(info.state),
            }

        def handle_exists(device: Arg) -> bool:
            h(device)
            return True

        return {
            "nvmlInit": lambda: nvml.nvmlInit(),
            "nvmlShutdown": lambda: nvml.nvmlShutdown(),
            "nvmlSystemGetDriverVersion": lambda: text(nvml.nvmlSystemGetDriverVersion()),
            "nvmlSystemGetNVMLVersion": lambda: text(nvml.nvmlSystemGetNVMLVersion()),
            "nvmlSystemGetCudaDriverVersion_v2": lambda: int(nvml.nvmlSystemGetCudaDriverVersion_v2()),
            "nvmlDeviceGetCount": lambda: int(nvml.nvmlDeviceGetCount()),
            "nvmlDeviceGetHandleByIndex": handle_exists,
            "nvmlDeviceGetUUID": lambda d: text(nvml.nvmlDeviceGetUUID(h(d))),
            "nvmlDeviceGetName": lambda d: text(nvml.nvmlDeviceGetName(h(d))),
            "nvmlDeviceGetBrand": lambda d: int(nvml.nvmlDeviceGetBrand(h(d))),
            "nvmlDeviceGetPciInfo": pci_info,
            "nvmlDeviceGetCudaComputeCapability": lambda d: list(
                nvml.nvmlDeviceGetCudaComputeCapability(h(d))
            ),
            "nvmlDeviceGetMemoryInfo": lambda d: {"total": int(nvml.nvmlDeviceGetMemoryInfo(h(d)).total)},
            "nvmlDeviceGetMigMode": lambda d: list(nvml.nvmlDeviceGetMigMode(h(d))),
            "nvmlDeviceGetVirtualizationMode": lambda d: int(nvml.nvmlDeviceGetVirtualizationMode(h(d))),
            "nvmlDeviceGetMaxMigDeviceCount": lambda d: int(nvml.nvmlDeviceGetMaxMigDeviceCount(h(d))),
            "nvmlDeviceGetMigDeviceHandleByIndex": lambda d, k: handle_exists(f"{d}/{k}"),
            "nvmlDeviceGetEccMode": lambda d: list(nvml.nvmlDeviceGetEccMode(h(d))),
            "nvmlDeviceGetTotalEccErrors": lambda d, kind, counter: int(
                nvml.nvmlDeviceGetTotalEccErrors(h(d), error_type[str(kind)], counter_type[str(counter)])
            ),
            "nvmlDeviceGetRetiredPagesPendingStatus": lambda d: int(
                nvml.nvmlDeviceGetRetiredPagesPendingStatus(h(d))
            ),
            "nvmlDeviceGetRemappedRows": lambda d: [int(v) for v in nvml.nvmlDeviceGetRemappedRows(h(d))],
            "nvmlDeviceGetPersistenceMode": lambda d: int(nvml.nvmlDeviceGetPersistenceMode(h(d))),
            "nvmlDeviceGetNvLinkState": lambda d, link: int(nvml.nvmlDeviceGetNvLinkState(h(d), int(link))),
            "nvmlDeviceGetNvLinkRemotePciInfo": lambda d, link: text(
                nvml.nvmlDeviceGetNvLinkRemotePciInfo(h(d), int(link)).busId
            ),
            "nvmlDeviceGetGpuFabricInfo": fabric_info,
            "nvmlDeviceGetP2PStatus": lambda a, b, kind: int(
                nvml.nvmlDeviceGetP2PStatus(h(a), h(b), p2p_index[str(kind)])
            ),
            "nvmlDeviceGetTopologyCommonAncestor": lambda a, b: int(
                nvml.nvmlDeviceGetTopologyCommonAncestor(h(a), h(b))
            ),
        }


class RecordingNvml:
    """Wraps a backend and keeps every answer, for `python -m gpudoctor.probes.nvml_record`."""

    def __init__(self, inner: NvmlBackend) -> None:
        self.inner = inner
        self.calls: dict[str, dict[str, Any]] = {}

    def call(self, function: str, *args: Arg) -> Any:
        key = call_key(function, args)
        try:
            value = self.inner.call(function, *args)
        except NvmlError as exc:
            self.calls[key] = {"error": exc.name}
            raise
        self.calls[key] = {"value": value}
        return value


class ReplayNvml:
    """Answers from a recorded snapshot: {"calls": {key: {"value": v} | {"error": name}}}.

    A call the snapshot does not hold raises NvmlError("NotRecorded"), which the
    probe turns into an unknown fact like any other NVML error.
    """

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.calls: dict[str, dict[str, Any]] = snapshot.get("calls", {})

    def call(self, function: str, *args: Arg) -> Any:
        entry = self.calls.get(call_key(function, args))
        if entry is None:
            raise NvmlError("NotRecorded", f"{call_key(function, args)} not in the snapshot")
        if "error" in entry:
            raise NvmlError(str(entry["error"]))
        return entry.get("value")
