"""Import checkpoints trained with dgcnn.pytorch (github.com/antao97/dgcnn.pytorch): ``DGCNN_cls`` and
``DGCNN_partseg``.

That project trains inside ``nn.DataParallel`` and saves ``torch.save(model.state_dict(), "models/model.t7")``,
so every key starts with ``module.``. Our DGCNN modules (:mod:`pointserve.models.dgcnn.network`) use the
reference's parameter names, so importing is: strip the prefix, drop the reference's aliases (it registers each
Sequential's BatchNorm twice, as ``bn1`` and as ``conv1.1``: the same tensor under two keys; both are checked to
be equal), and check every remaining key and shape. ``k`` is a training argument (``--k``, default 20) that no
tensor records, so it is given on import; ``emb_dims``, the class / part / category counts and the input
channels are read from the shapes.

The ``.t7`` / ``.pth`` file is read with ``torch.load(..., weights_only=True)`` (torch's restricted unpickler:
tensors and plain containers only, no code from the file runs); a state dict re-saved as ``.safetensors`` is
read without unpickling.

Part segmentation: the reference's categorical input is a one-hot of the 16 ShapeNet categories; ours is the
category index. Give the categories with ``class_names`` (in the one-hot's order); with the standard 16
categories and 50 parts, part names and each category's parts follow ShapeNet-part's layout unless given.

>>> card = import_dgcnn_antao97("model.t7", "ckpt/", class_names=["airplane", "bathtub", ...])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from pointserve.card import ModelCard, Task
from pointserve.checkpoint.folder import save_checkpoint
from pointserve.checkpoint.importers.pointnet_pytorch import read_state_dict
from pointserve.checkpoint.importers.state_dicts import checked_tensor, fill_missing, rename_prefix
from pointserve.errors import CheckpointError, ConfigError
from pointserve.models import get_model

FORMAT_NAME = "dgcnn.antao97"
DEFAULT_K = 20  # the reference's --k default
DEFAULT_NUM_POINTS = {"cls": 1024, "partseg": 2048}  # its --num_points defaults (main_cls.py, main_partseg.py)

ReferenceKind = Literal["cls", "partseg"]

# Reference alias -> the key it duplicates (same module registered twice; our modules hold it once).
_ALIASES: dict[ReferenceKind, dict[str, str]] = {
    "cls": {f"bn{i}.": f"conv{i}.1." for i in range(1, 6)},
    "partseg": {
        **{f"bn{i}.": f"conv{i}.1." for i in range(1, 11)},
        "transform_net.bn1.": "transform_net.conv1.1.",
        "transform_net.bn2.": "transform_net.conv2.1.",
    },
}
# Keys that tell the two networks apart.
_SIGNATURES: dict[ReferenceKind, tuple[str, ...]] = {
    "cls": ("linear3.weight", "conv5.0.weight", "conv1.0.weight"),
    "partseg": ("conv11.weight", "conv7.0.weight", "conv6.0.weight", "transform_net.transform.weight"),
}


@dataclass(frozen=True)
class ReferenceLayout:
    """What a dgcnn.pytorch state dict holds, read from its key names and shapes (plus the given k)."""

    kind: ReferenceKind
    num_outputs: int
    emb_dims: int
    in_channels: int
    num_categories: int
    k: int

    @property
    def class_name(self) -> str:
        return "DGCNN_cls" if self.kind == "cls" else "DGCNN_partseg"

    @property
    def architecture(self) -> str:
        return "dgcnn_cls" if self.kind == "cls" else "dgcnn_partseg"

    @property
    def task(self) -> Task:
        return "classification" if self.kind == "cls" else "part_segmentation"

    @property
    def config(self) -> dict[str, object]:
        """``get_model`` arguments that rebuild the reference network as a pointserve DGCNN."""
        common = {"in_channels": self.in_channels, "k": self.k, "emb_dims": self.emb_dims, "dropout": 0.5}
        if self.kind == "cls":
            return {"num_classes": self.num_outputs, **common}
        return {"num_parts": self.num_outputs, "num_categories": self.num_categories, **common}

    def describe(self) -> str:
        extra = f", categories={self.num_categories}" if self.kind == "partseg" else ""
        return f"{self.class_name}(outputs={self.num_outputs}, emb_dims={self.emb_dims}, k={self.k}{extra})"


def _shape(state: Mapping[str, Tensor], key: str, ndim: int, source: str) -> tuple[int, ...]:
    tensor = state[key]
    if tensor.ndim != ndim:
        raise CheckpointError(f"{source}: {key!r} has shape {tuple(tensor.shape)}, expected {ndim} dimensions")
    return tuple(tensor.shape)


def detect_layout(state: Mapping[str, Tensor], k: int = DEFAULT_K, source: str = "state dict") -> ReferenceLayout:
    """Tell DGCNN_cls from DGCNN_partseg and read emb_dims, the output / category counts and input channels."""
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    kinds = [kind for kind, keys in _SIGNATURES.items() if all(key in state for key in keys)]
    if len(kinds) != 1:
        found = ", ".join(list(state)[:4])
        raise CheckpointError(
            f"{source}: not a dgcnn.pytorch DGCNN_cls or DGCNN_partseg state dict: expected 'linear3.weight' and "
            f"'conv5.0.weight' (DGCNN_cls) or 'conv11.weight' and 'transform_net.*' (DGCNN_partseg) "
            f"(keys start: {found}, ...)"
        )
    kind: ReferenceKind = kinds[0]
    if kind == "cls":
        num_outputs = _shape(state, "linear3.weight", 2, source)[0]
        emb_dims = _shape(state, "conv5.0.weight", 3, source)[0]
        in_channels = _shape(state, "conv1.0.weight", 4, source)[1] // 2
        return ReferenceLayout(kind, num_outputs, emb_dims, in_channels, 0, int(k))
    num_outputs = _shape(state, "conv11.weight", 3, source)[0]
    emb_dims = _shape(state, "conv6.0.weight", 3, source)[0]
    num_categories = _shape(state, "conv7.0.weight", 3, source)[1]
    return ReferenceLayout(kind, num_outputs, emb_dims, 3, num_categories, int(k))


def build_model(layout: ReferenceLayout) -> nn.Module:
    """Our DGCNN configured as the reference network (fresh weights)."""
    return get_model(layout.architecture, **layout.config)


def convert_state_dict(
    state: Mapping[str, Tensor], layout: ReferenceLayout, model: nn.Module, source: str = "state dict"
) -> dict[str, Tensor]:
    """The reference state dict under ``model``'s names: aliases dropped (after checking each equals the key it
    duplicates), every key and shape checked. ``num_batches_tracked`` may be absent.

    Raises CheckpointError naming the reference key that is unexpected, missing, mis-shaped, not finite, or an
    alias that disagrees with its original.
    """
    expected = model.state_dict()
    what = f"dgcnn.pytorch {layout.describe()}"
    aliases = _ALIASES[layout.kind]
    converted: dict[str, Tensor] = {}
    for key, tensor in state.items():
        target = rename_prefix(key, aliases.items()) if key not in expected else None
        if target is not None:
            original = state.get(target)
            if original is None:  # only the alias was saved: it is the tensor
                key, target = target, None
            elif original.shape != tensor.shape or not torch.equal(original, tensor):
                raise CheckpointError(
                    f"{source}: {key!r} and {target!r} are the same BatchNorm in a {what}, but differ in the file"
                )
            else:
                continue
        if key not in expected:
            raise CheckpointError(f"{source}: unexpected key {key!r} for a {what}")
        converted[key] = checked_tensor(key, tensor, expected[key], source, what)
    return fill_missing(converted, expected, source, what)


def _standard_shapenet_parts(categories: Sequence[str], num_parts: int) -> tuple[list[str], dict[str, list[int]]]:
    """ShapeNet-part's 50 parts over its 16 categories (in the reference's order), named ``<category>/partN``."""
    from pointserve.data.shapenet import STANDARD_CATEGORIES, PartLayout

    counts = [count for _, _, count in STANDARD_CATEGORIES]
    if len(categories) != len(counts) or num_parts != sum(counts):
        return [f"part{i}" for i in range(num_parts)], {}
    layout = PartLayout.from_counts(categories, counts)
    return layout.part_names, layout.category_parts


def _names(names: Sequence[str], what: str) -> list[str]:
    names = [str(name) for name in names]
    if len(set(names)) != len(names) or not all(names):
        raise ConfigError(f"{what} must be non-empty and distinct")
    return names


def import_dgcnn_antao97(
    path: str | Path,
    output_dir: str | Path,
    class_names: Sequence[str],
    part_names: Sequence[str] | None = None,
    *,
    k: int = DEFAULT_K,
    task: str | None = None,
    num_points: int | None = None,
) -> ModelCard:
    """Convert a dgcnn.pytorch state dict into a pointserve checkpoint folder; returns its card.

    ``class_names``: the object classes (DGCNN_cls) or the categories of the one-hot input (DGCNN_partseg), in
    the network's order. ``part_names`` (part segmentation): the per-point labels; default ShapeNet-part's for
    the standard 16 / 50 layout, else ``part0``, ``part1``, ... ``k``: the neighbours per point it was trained
    with. ``num_points`` defaults to the reference's (1024 classification, 2048 part segmentation).
    """
    path = Path(path)
    state = read_state_dict(path)
    layout = detect_layout(state, k, str(path))
    if task is not None and task != layout.task:
        raise ConfigError(f"the checkpoint is a {layout.class_name}, which is a {layout.task} model, not {task}")
    points = DEFAULT_NUM_POINTS[layout.kind] if num_points is None else int(num_points)
    if points < 1:
        raise ConfigError(f"num_points must be at least 1, got {points}")
    names = _names(class_names, "class names")
    want = layout.num_outputs if layout.kind == "cls" else layout.num_categories
    if len(names) != want:
        counted = "outputs" if layout.kind == "cls" else "categories (the one-hot input of conv7)"
        raise ConfigError(f"{len(names)} class names given, but the {layout.class_name} in {path} has {want} {counted}")
    parts: list[str] = []
    category_parts: dict[str, list[int]] = {}
    if layout.kind == "partseg":
        if part_names is None:
            parts, category_parts = _standard_shapenet_parts(names, layout.num_outputs)
        else:
            parts = _names(part_names, "part names")
            if len(parts) != layout.num_outputs:
                raise ConfigError(
                    f"{len(parts)} part names given, but the DGCNN_partseg in {path} has {layout.num_outputs} parts"
                )
    model = build_model(layout)
    model.load_state_dict(convert_state_dict(state, layout, model, str(path)), strict=True)
    card = ModelCard(
        architecture=layout.architecture,
        config=layout.config,
        task=layout.task,
        class_names=names,
        part_names=parts,
        category_parts=category_parts,
        in_channels=layout.in_channels,
        num_points=points,
        normalization="unit_sphere",  # the reference's ModelNet40 / ShapeNet-part h5 clouds are unit-sphere scaled
        source=f"{FORMAT_NAME}:{layout.describe()} from {path.name}",
    )
    save_checkpoint(model.eval(), card, output_dir)
    return card


__all__ = [
    "DEFAULT_K",
    "FORMAT_NAME",
    "ReferenceLayout",
    "build_model",
    "convert_state_dict",
    "detect_layout",
    "import_dgcnn_antao97",
]
