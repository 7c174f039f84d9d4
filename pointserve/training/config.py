"""The training configuration: flags and/or a YAML file, validated in one pydantic record."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pointserve.errors import ConfigError


class TrainConfig(BaseModel):
    """Defaults train the PointNet classifier on the built-in ``shapes`` set in a few minutes on 2 cores."""

    model_config = ConfigDict(extra="forbid")

    model: str = "pointnet_cls"
    feature_transform: bool = False
    dropout: float = Field(0.3, ge=0, lt=1)
    model_options: dict[str, Any] = Field(
        default_factory=dict, description="the family's own hyper-parameters, read by its spec's model_config"
    )
    dataset: str = "shapes"
    data_root: str | None = None
    num_points: int = Field(256, gt=0)
    samples_per_class: int | None = Field(None, gt=0, description="shapes only: objects per class (train split)")
    test_samples_per_class: int | None = Field(None, gt=0, description="shapes only: objects per class (test split)")
    epochs: int = Field(6, gt=0)
    batch_size: int = Field(32, gt=1)
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    scheduler: Literal["step", "cosine", "plateau", "none"] = "cosine"
    step_size_epochs: int = Field(20, gt=0)
    gamma: float = Field(0.5, gt=0, le=1)
    plateau_patience: int = Field(20, ge=0, description="plateau: epochs without a better training accuracy")
    plateau_factor: float = Field(0.2, gt=0, lt=1, description="plateau: the factor the rate is cut by")
    feature_transform_weight: float = Field(0.001, description="weight of the family's auxiliary loss, if any")
    seed: int = 0
    device: str = "auto"
    amp: bool | None = Field(None, description="mixed precision; default on for CUDA (fp16), off on CPU (bf16)")
    deterministic: bool | None = Field(
        None, description="torch's deterministic algorithms; default on for CPU (bit-identical reruns), off for CUDA"
    )
    threads: int | None = Field(None, gt=0)
    output_dir: str = "runs/pointnet_cls"
    resume: bool = False
    eval_every_epochs: int = Field(1, gt=0)
    cache_epochs: int | None = Field(
        None, gt=0, description="train from N cached augmented copies of the training split, preprocessed once"
    )
    cache_dir: str | None = Field(None, description="where cached epochs live: $POINTSERVE_CACHE, else ~/.cache/...")

    @property
    def task(self) -> str:
        """The registered architecture's task (ConfigError naming the known ones for an unknown model)."""
        from pointserve.models import get_spec

        return get_spec(self.model).task

    def options(self) -> dict[str, Any]:
        """What a spec's ``model_config`` and ``preprocessing`` read: every setting, family options on top."""
        return {**self.model_dump(exclude={"model_options"}), **self.model_options}

    @classmethod
    def from_sources(cls, config_file: str | None, overrides: dict) -> TrainConfig:
        """YAML file first, then command-line flags that were given (not None) on top."""
        data: dict = {}
        if config_file:
            path = Path(config_file)
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"{path}: cannot read config ({exc})") from None
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: a training config is a mapping of settings")
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"training config: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        _ = config.task  # validates the model name
        return config
