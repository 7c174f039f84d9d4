"""What every importer does to another project's state dict: rename keys by prefix, check each tensor against the
module it will load into, and fill in what old checkpoints lack. Messages name the reference's key."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor

from pointserve.errors import CheckpointError


def rename_prefix(key: str, table: Iterable[tuple[str, str]]) -> str | None:
    """``key`` with the first matching ``(prefix, replacement)`` of ``table`` applied; ``None`` if none matches."""
    for source, target in table:
        if key.startswith(source):
            return target + key[len(source) :]
    return None


def checked_tensor(key: str, tensor: Tensor, want: Tensor, source: str, what: str) -> Tensor:
    """``tensor`` (the reference's ``key``) as the entry ``want`` of our state dict: same shape, finite, our dtype."""
    if tuple(tensor.shape) != tuple(want.shape):
        raise CheckpointError(
            f"{source}: {key!r} has shape {tuple(tensor.shape)}, but a {what} has {tuple(want.shape)}"
        )
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise CheckpointError(f"{source}: {key!r} contains NaN or infinite values")
    return tensor.detach().to(dtype=want.dtype).contiguous()


def fill_missing(
    converted: dict[str, Tensor],
    expected: Mapping[str, Tensor],
    source: str,
    what: str,
    reference_name: Callable[[str], str | None] = lambda key: key,
) -> dict[str, Tensor]:
    """``converted`` completed to every key of ``expected``: a missing ``num_batches_tracked`` (checkpoints saved by
    torch < 0.4.1; inference does not read it) becomes zero, any other missing key raises, named as the reference
    names it (``reference_name``)."""
    for key, want in expected.items():
        if key in converted:
            continue
        if key.endswith(".num_batches_tracked"):
            converted[key] = torch.zeros_like(want)
            continue
        raise CheckpointError(f"{source}: missing key {reference_name(key)!r} of a {what}")
    return converted


__all__ = ["checked_tensor", "fill_missing", "rename_prefix"]
