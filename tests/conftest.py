"""Shared test setup: GPU tests skip cleanly without a GPU; torch runs on one thread.

One torch thread: the suite's tensors are tiny, and on a 2-core machine two intra-op threads per test
mostly wait for each other (measured here: 6 ms vs 61 ms per small PointNet forward pass).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest


def _has_nvidia_gpu() -> bool:
    """An NVIDIA driver that lists at least one GPU; the CPU build of torch cannot tell."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


def pytest_collection_modifyitems(config, items):
    if _has_nvidia_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    try:
        import torch
    except ImportError:  # the slim serving environment has no torch
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
