"""What GPU is here: through NVIDIA's cuda-python bindings when installed, else ``nvidia-smi``.

Nothing here imports a GPU runtime at module level; on a machine without a GPU every function answers
"none" (an empty list) instead of failing.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

NVIDIA_SMI_QUERY = "index,name,compute_cap,memory.total,driver_version"


@dataclass(frozen=True)
class GpuInfo:
    """One GPU: what a TensorRT plan is tied to (``compute_capability`` like ``"9.0"``)."""

    index: int
    name: str
    compute_capability: str
    memory_total_mib: int | None = None
    driver_version: str | None = None

    @property
    def sm(self) -> str:
        """``"sm90"`` for compute capability 9.0 (used in file names)."""
        return "sm" + self.compute_capability.replace(".", "")


def parse_nvidia_smi_csv(text: str) -> list[GpuInfo]:
    """Parse ``nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version
    --format=csv,noheader,nounits`` output."""
    gpus = []
    for line in text.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        memory = fields[3] if len(fields) > 3 else ""
        gpus.append(
            GpuInfo(
                index=int(fields[0]),
                name=fields[1],
                compute_capability=fields[2],
                memory_total_mib=int(float(memory)) if memory.replace(".", "", 1).isdigit() else None,
                driver_version=fields[4] if len(fields) > 4 and fields[4] else None,
            )
        )
    return gpus


def gpus_from_nvidia_smi(timeout_s: float = 10.0) -> list[GpuInfo]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return parse_nvidia_smi_csv(out)


def gpus_from_cuda_python() -> list[GpuInfo]:
    """Query devices through ``cuda.bindings.runtime``; empty when the bindings or a device are missing."""
    try:
        from pointserve.engines.tensorrt.cuda_rt import load_cudart
    except ImportError:  # pragma: no cover
        return []
    try:
        cudart = load_cudart()
    except Exception:
        return []
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:
        return []
    gpus = []
    for index in range(count):
        err, prop = cudart.cudaGetDeviceProperties(index)
        if err != cudart.cudaError_t.cudaSuccess:
            continue
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        gpus.append(
            GpuInfo(
                index=index,
                name=name.rstrip("\x00").strip(),
                compute_capability=f"{prop.major}.{prop.minor}",
                memory_total_mib=int(prop.totalGlobalMem) // (1 << 20),
            )
        )
    return gpus


def detect_gpus() -> list[GpuInfo]:
    """All visible NVIDIA GPUs (cuda-python first: it sees what CUDA_VISIBLE_DEVICES lets this process see)."""
    return gpus_from_cuda_python() or gpus_from_nvidia_smi()


def current_gpu(device_id: int = 0) -> GpuInfo | None:
    gpus = detect_gpus()
    return next((g for g in gpus if g.index == device_id), gpus[0] if gpus and device_id == 0 else None)


__all__ = [
    "GpuInfo",
    "current_gpu",
    "detect_gpus",
    "gpus_from_cuda_python",
    "gpus_from_nvidia_smi",
    "parse_nvidia_smi_csv",
]
