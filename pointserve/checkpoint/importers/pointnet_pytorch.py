"""Import checkpoints trained with pointnet.pytorch (github.com/fxia22/pointnet.pytorch).

That project saves ``torch.save(model.state_dict(), ...)`` of its ``PointNetCls`` (classification) or
``PointNetDenseCls`` (per-point labels of one ShapeNet category, no category input), each with or without
``--feature_transform``. Its network is our PointNet with ``layout="pointnet.pytorch"``: mlp(64) -> feature
T-Net -> mlp(128, 1024) with no ReLU after the 1024 layer, and a segmentation head on [global, point] features.
Only the parameter names differ, so importing is a renaming with a shape check for every tensor. The reference
returns ``log_softmax`` of the logits our model returns: same argmax, same log-probabilities after log_softmax.

Reading a ``.pth`` needs ``torch.load``. It runs with ``weights_only=True``: torch's restricted unpickler, which
rebuilds tensors and plain containers only and refuses any other object, so no code from the file runs. A state
dict re-saved as ``.safetensors`` (same key names) is read without unpickling at all.

>>> card = import_pointnet_pytorch("cls_model_24.pth", "ckpt/", class_names=["airplane", "bag", ...])
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from pointserve.card import ModelCard, Task
from pointserve.checkpoint.folder import save_checkpoint
from pointserve.checkpoint.importers.state_dicts import checked_tensor, fill_missing, rename_prefix
from pointserve.errors import CheckpointError, ConfigError
from pointserve.models import get_model

FORMAT_NAME = "pointnet.pytorch"
DEFAULT_NUM_POINTS = 2500  # the reference's --num_points default for both training scripts

ReferenceKind = Literal["cls", "dense_cls"]

# Reference module prefix -> ours. The T-Nets' inner names (conv1..3, fc1..3, bn1..5) are the same on both sides.
_ENCODER_PREFIXES: tuple[tuple[str, str], ...] = (
    ("feat.stn.", "encoder.input_tnet."),
    ("feat.fstn.", "encoder.feature_tnet."),
    ("feat.conv1.", "encoder.mlp1.layers.0.conv."),
    ("feat.bn1.", "encoder.mlp1.layers.0.bn."),
    ("feat.conv2.", "encoder.mlp2.layers.0.conv."),
    ("feat.bn2.", "encoder.mlp2.layers.0.bn."),
    ("feat.conv3.", "encoder.mlp2.layers.1.conv."),
    ("feat.bn3.", "encoder.mlp2.layers.1.bn."),
)
_HEAD_PREFIXES: dict[ReferenceKind, tuple[tuple[str, str], ...]] = {
    "cls": (("fc1.", "fc1."), ("bn1.", "bn1."), ("fc2.", "fc2."), ("bn2.", "bn2."), ("fc3.", "fc3.")),
    "dense_cls": (
        ("conv1.", "head.layers.0.conv."),
        ("bn1.", "head.layers.0.bn."),
        ("conv2.", "head.layers.1.conv."),
        ("bn2.", "head.layers.1.bn."),
        ("conv3.", "head.layers.2.conv."),
        ("bn3.", "head.layers.2.bn."),
        ("conv4.", "classifier."),
    ),
}
# The last layer of each head: its output count is the number of classes (or per-point labels).
_OUTPUT_KEYS: dict[ReferenceKind, str] = {"cls": "fc3.weight", "dense_cls": "conv4.weight"}
# Wrappers people put around a state dict before saving it.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


@dataclass(frozen=True)
class ReferenceLayout:
    """What a pointnet.pytorch state dict holds, as read from its key names and shapes."""

    kind: ReferenceKind
    feature_transform: bool
    num_outputs: int

    @property
    def class_name(self) -> str:
        """The reference class that saved it, as the user knows it."""
        return "PointNetCls" if self.kind == "cls" else "PointNetDenseCls"

    @property
    def architecture(self) -> str:
        # DenseCls is trained per ShapeNet category without a category input: our semantic-style segmenter.
        return "pointnet_cls" if self.kind == "cls" else "pointnet_seg"

    @property
    def task(self) -> Task:
        return "classification" if self.kind == "cls" else "semantic_segmentation"

    @property
    def config(self) -> dict[str, object]:
        """``get_model`` arguments that rebuild the reference network as a pointserve PointNet."""
        common = {"in_channels": 3, "feature_transform": self.feature_transform, "layout": FORMAT_NAME}
        if self.kind == "cls":
            return {"num_classes": self.num_outputs, "dropout": 0.3, **common}
        return {"num_parts": self.num_outputs, **common}

    def describe(self) -> str:
        return f"{self.class_name}(k={self.num_outputs}, feature_transform={self.feature_transform})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_pickled_state(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch words this as advice to turn the safety off; say instead what the file holds.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise CheckpointError(
                f"{path}: holds a pickled {found.group(1)}, not only tensors; the weights-only loader refuses it "
                "(save model.state_dict(), not the model)"
            ) from None
        raise CheckpointError(
            f"{path}: not a PyTorch state dict file (the weights-only loader cannot read it)"
        ) from None
    except Exception as exc:  # torch.load raises KeyError, RuntimeError, EOFError, ... on bad bytes: all mean the same
        raise CheckpointError(
            f"{path}: not a readable PyTorch file ({type(exc).__name__}: {_first_line(exc)})"
        ) from None


def _load_safetensors_state(path: Path) -> object:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a pointnet.pytorch state dict from a ``.pth`` (weights-only unpickler) or a ``.safetensors`` file.

    A state dict wrapped in ``{"state_dict": ...}`` (or ``model_state_dict`` / ``model``) is unwrapped, and the
    ``module.`` prefix that ``nn.DataParallel`` adds is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    state = _load_safetensors_state(path) if path.suffix == ".safetensors" else _load_pickled_state(path)
    if isinstance(state, Mapping):
        for wrapper in _WRAPPER_KEYS:
            if isinstance(state.get(wrapper), Mapping):
                state = state[wrapper]
                break
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{path}: expected a state dict (names -> tensors), found {type(state).__name__}")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
    state = dict(state)
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def detect_layout(state: Mapping[str, Tensor], source: str = "state dict") -> ReferenceLayout:
    """Tell PointNetCls from PointNetDenseCls, whether it has a feature T-Net, and its number of outputs."""
    kinds = [kind for kind, key in _OUTPUT_KEYS.items() if key in state]
    if len(kinds) != 1:
        found = ", ".join(list(state)[:4])
        raise CheckpointError(
            f"{source}: not a pointnet.pytorch PointNetCls or PointNetDenseCls state dict: expected exactly one of "
            f"'fc3.weight' (PointNetCls) or 'conv4.weight' (PointNetDenseCls) (keys start: {found}, ...)"
        )
    kind: ReferenceKind = kinds[0]
    output_key = _OUTPUT_KEYS[kind]
    output_weight = state[output_key]
    if output_weight.ndim < 2 or output_weight.shape[0] < 1:
        raise CheckpointError(f"{source}: {output_key!r} has shape {tuple(output_weight.shape)}, not (k, ...)")
    feature_transform = any(key.startswith("feat.fstn.") for key in state)
    return ReferenceLayout(kind, feature_transform, int(output_weight.shape[0]))


def build_model(layout: ReferenceLayout) -> nn.Module:
    """Our PointNet configured as the reference network (fresh weights)."""
    return get_model(layout.architecture, **layout.config)


def convert_state_dict(
    state: Mapping[str, Tensor], layout: ReferenceLayout, model: nn.Module, source: str = "state dict"
) -> dict[str, Tensor]:
    """Rename a reference state dict to ``model``'s names, checking every key and shape.

    Raises CheckpointError naming the reference key that is unexpected, missing, mis-shaped or not finite.
    ``num_batches_tracked`` may be absent (checkpoints saved by torch < 0.4.1); it does not affect inference.
    """
    table = _ENCODER_PREFIXES + _HEAD_PREFIXES[layout.kind]
    inverse = tuple((ours, theirs) for theirs, ours in table)
    expected = model.state_dict()
    what = f"pointnet.pytorch {layout.describe()}"
    converted: dict[str, Tensor] = {}
    for key, tensor in state.items():
        ours = rename_prefix(key, table)
        if ours is None or ours not in expected:
            raise CheckpointError(f"{source}: unexpected key {key!r} for a {what}")
        converted[ours] = checked_tensor(key, tensor, expected[ours], source, what)
    return fill_missing(converted, expected, source, what, lambda ours: rename_prefix(ours, inverse))


def read_class_names(path: str | Path) -> list[str]:
    """Class (or part) names from a file: one name per line, or ``name index`` lines in any order.

    The second form is pointnet.pytorch's ``misc/modelnet_id.txt``; indices must then be exactly 0..K-1.
    """
    path = Path(path)
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read class names ({_first_line(exc)})") from None
    if not lines:
        raise ConfigError(f"{path}: no class names in the file")
    if all(len(fields) == 1 for fields in lines):
        return [fields[0] for fields in lines]
    if not all(len(fields) == 2 and fields[1].isdigit() for fields in lines):
        bad = next(i for i, f in enumerate(lines, 1) if len(f) != 2 or not f[1].isdigit())
        raise ConfigError(f"{path}: line {bad}: expected 'name' or 'name index' on every line")
    by_index = {int(index): name for name, index in lines}
    if sorted(by_index) != list(range(len(lines))):
        raise ConfigError(f"{path}: the indices must be exactly 0..{len(lines) - 1}, each once")
    return [by_index[i] for i in range(len(lines))]


def _resolve_task(layout: ReferenceLayout, task: str | None) -> Task:
    if task is None or task == layout.task:
        return layout.task
    if layout.kind == "dense_cls" and task == "part_segmentation":
        raise ConfigError(
            "pointnet.pytorch's PointNetDenseCls takes no category input (it is trained on one category), so it "
            "imports as semantic_segmentation; leave out --task or pass --task semantic_segmentation"
        )
    raise ConfigError(f"the checkpoint is a {layout.class_name}, which is a {layout.task} model, not {task}")


def import_pointnet_pytorch(
    path: str | Path,
    output_dir: str | Path,
    class_names: Sequence[str],
    task: str | None = None,
    num_points: int = DEFAULT_NUM_POINTS,
) -> ModelCard:
    """Convert a pointnet.pytorch state dict into a pointserve checkpoint folder; returns its card.

    ``class_names`` are the object classes (PointNetCls) or the per-point labels (PointNetDenseCls), in the
    order of the network's outputs. ``task`` defaults to what the checkpoint is.
    """
    if num_points < 1:
        raise ConfigError(f"num_points must be at least 1, got {num_points}")
    path = Path(path)
    state = read_state_dict(path)
    layout = detect_layout(state, str(path))
    resolved_task = _resolve_task(layout, task)
    names = [str(name) for name in class_names]
    if len(names) != layout.num_outputs:
        raise ConfigError(
            f"{len(names)} class names given, but the {layout.class_name} in {path} has {layout.num_outputs} "
            f"outputs ({_OUTPUT_KEYS[layout.kind]!r} is {tuple(state[_OUTPUT_KEYS[layout.kind]].shape)})"
        )
    if len(set(names)) != len(names) or not all(names):
        raise ConfigError("class names must be non-empty and distinct")
    model = build_model(layout)
    model.load_state_dict(convert_state_dict(state, layout, model, str(path)), strict=True)
    card = ModelCard(
        architecture=layout.architecture,
        config=layout.config,
        task=resolved_task,
        class_names=names,
        # Segmentation: the per-point labels. The reference trains one category at a time and records no name
        # for it, so the labels also stand as the class names.
        part_names=names if resolved_task != "classification" else [],
        in_channels=3,
        num_points=num_points,
        normalization="unit_sphere",  # the reference centres each cloud and scales it into the unit sphere
        source=f"{FORMAT_NAME}:{layout.describe()} from {path.name}",
    )
    save_checkpoint(model.eval(), card, output_dir)
    return card


__all__ = [
    "DEFAULT_NUM_POINTS",
    "FORMAT_NAME",
    "ReferenceLayout",
    "build_model",
    "convert_state_dict",
    "detect_layout",
    "import_pointnet_pytorch",
    "read_class_names",
    "read_state_dict",
]
