"""The model card: what a checkpoint is, in a form every later stage can read without torch.

A checkpoint is a folder with ``model.safetensors`` (the weights) and ``card.json`` (this record). Export,
the repository manifest and the service all read the card; none of them needs the training code.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pointserve.errors import CheckpointError

CARD_FILE = "card.json"
WEIGHTS_FILE = "model.safetensors"
CARD_SCHEMA_VERSION = 1

Task = Literal["classification", "part_segmentation", "semantic_segmentation"]
Normalization = Literal["unit_sphere", "none"]


class ModelCard(BaseModel):
    """Everything needed to rebuild, export and serve a trained network.

    ``architecture`` and ``config`` rebuild the module: ``get_model(card.architecture, **card.config)``;
    ``preprocessing`` holds what the family's CPU preprocessor needs (neighbourhood radii, k, ...).
    ``class_names`` are the object classes (classification) or categories (part segmentation);
    ``part_names`` are the per-point labels of segmentation models, and ``category_parts`` lists which
    part ids belong to each category (part segmentation restricts its argmax to those, as in PointNet).
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = CARD_SCHEMA_VERSION
    architecture: str
    config: dict[str, Any] = Field(default_factory=dict)
    task: Task
    class_names: list[str]
    part_names: list[str] = Field(default_factory=list)
    category_parts: dict[str, list[int]] = Field(default_factory=dict)
    in_channels: int = 3
    num_points: int = Field(gt=0, description="points per cloud used in training")
    normalization: Normalization = "unit_sphere"
    preprocessing: dict[str, Any] = Field(
        default_factory=dict, description="the family's preprocessing parameters (radii, k, grid sizes, ...)"
    )
    dataset: str = ""
    data_hash: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    source: str = "pointserve"
    created_utc: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def num_outputs(self) -> int:
        """K for classification, P (number of part / semantic labels) for segmentation."""
        return len(self.class_names) if self.task == "classification" else len(self.part_names)

    @property
    def needs_category(self) -> bool:
        return self.task == "part_segmentation"

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CARD_FILE
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, directory_or_file: str | Path) -> ModelCard:
        path = Path(directory_or_file)
        if path.is_dir():
            path = path / CARD_FILE
        if not path.is_file():
            raise CheckpointError(f"{path}: no model card (card.json) found")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise CheckpointError(f"{path}: invalid model card: {where}: {first['msg']}") from None
