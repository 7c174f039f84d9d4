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


# -- the family registry of the suite ---------------------------------------------------------------------
# The test-only family registers itself on import; every family-parametrised test then covers it too.
import family_knn  # noqa: E402, F401
from tiny_models import architectures, random_checkpoint, tiny_card  # noqa: E402


def pytest_generate_tests(metafunc):
    """``architecture`` parametrises a test over every registered family (shipped and test-only)."""
    if "architecture" in metafunc.fixturenames:
        metafunc.parametrize("architecture", architectures(), scope="session")


@pytest.fixture(scope="session")
def family_repository(tmp_path_factory):
    """A repository that grows one published tiny model per architecture, on demand (``family_version``)."""
    return tmp_path_factory.mktemp("family-repository")


@pytest.fixture(scope="session")
def family_version(architecture, family_repository, tmp_path_factory):
    """The architecture's tiny random-weight model, exported (parity-checked) into ``family_repository``."""
    from pointserve.export.publish import publish_checkpoint

    card = tiny_card(architecture, dataset="tiny")
    checkpoint = random_checkpoint(tmp_path_factory.mktemp(f"ckpt-{architecture}"), card, seed=3)
    version, _ = publish_checkpoint(checkpoint, family_repository, architecture.replace("_", "-"))
    return version
