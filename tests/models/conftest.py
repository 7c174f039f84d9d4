"""Model tests run torch on one thread: these tensors are tiny, and on a shared 2-core machine two intra-op
threads mostly wait for each other (measured here: 6 ms vs 61 ms per PointNet forward pass)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
