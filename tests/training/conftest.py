"""Training-test fixtures: a tiny semantic-segmentation dataset registered for the tests that need one."""

from __future__ import annotations

import pytest
from tiny_models import SEMANTIC, load_tiny_semantic

from pointserve.data.registry import DATASETS


@pytest.fixture(scope="module")
def tiny_semantic_dataset():
    """``tiny_semantic`` in the dataset registry for the module's tests, removed afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(DATASETS, SEMANTIC, load_tiny_semantic)
        yield SEMANTIC
