"""The service's one settings object: defaults < config file (YAML or JSON) < ``POINTSERVE_*`` environment < flags.

    POINTSERVE_REPOSITORY=repo POINTSERVE_BATCHING__MAX_BATCH_SIZE=16 pointserve serve --config serve.yaml

A config file looks like::

    repository: ./repository
    api_key: change-me              # bearer auth on; health endpoints stay open
    batching: {max_batch_size: 32, max_queue_delay_ms: 2}
    models:
      shapes-cls: {variant: int8, batching: {max_batch_size: 64}}
      shapes-partseg: {version: 1, precision: fp16, backend: onnxruntime}
    model_control: explicit         # POST /v2/repository/models/{m}/load | unload (see model_control.py)

Everything is validated at start-up: a bad value or an unknown key stops the server with one line naming it
(:class:`~pointserve.errors.ConfigError`).
"""

from __future__ import annotations

import contextvars
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from pointserve.errors import ConfigError

ENV_PREFIX = "POINTSERVE_"
_FILE_VALUES: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("pointserve_file", default=None)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchingSettings(_Strict):
    """How one model's dynamic batcher gathers requests (see :mod:`pointserve.service.core.batcher`)."""

    max_batch_size: int = Field(32, ge=1, le=4096, description="clouds per batch; 1 disables batching")
    preferred_batch_size: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="clouds of the trained size per batch (None: measured at start; batches grow to the largest "
        "size within 5% of the best clouds/s, the budget counts in the smallest; smaller clouds pack more)",
    )
    max_queue_delay_ms: float = Field(
        0.0, ge=0, le=10_000, description="longest wait for a batch to fill while an instance is idle"
    )
    max_points_per_batch: int = Field(
        65_536, ge=1, description="batch size x padded points per cloud; a larger single cloud is resampled"
    )
    latency_budget_ms: float | None = Field(
        None,
        gt=0,
        description="queue + compute time a request may be admitted into (None: 4 preferred batches, at least 100 ms)",
    )
    max_admitted: int | None = Field(
        None, ge=1, description="requests admitted at once, before any body is read (None: derived from the budget)"
    )
    max_admission_wait_ms: float | None = Field(
        None, ge=0, description="longest wait for a slot before a 503, body unread (None: 5 budgets, at least 500 ms)"
    )
    max_queue_size: int | None = Field(
        None, ge=1, description="clouds waiting before new ones get 503 (None: 4 x the admission limit)"
    )
    request_timeout_s: float | None = Field(
        None, gt=0, description="queue + compute deadline, 504 past it (None: 20 x the budget, at least 2 s)"
    )
    instance_count: int = Field(1, ge=1, le=64, description="runner instances, each with its own worker thread")
    threads_per_instance: int | None = Field(None, ge=1, description="intra-op threads per runner (None: backend)")
    spin_wait: bool = Field(
        False,
        description="let the runtime's threads busy-wait between batches (ONNX Runtime's allow_spinning): faster "
        "alone, but on a CPU they take the cores the event loop needs",
    )


class BatchingOverride(_Strict):
    """Per-model batching: only the fields given replace the global ones."""

    max_batch_size: int | None = Field(None, ge=1, le=4096)
    preferred_batch_size: int | None = Field(None, ge=1, le=4096)
    max_queue_delay_ms: float | None = Field(None, ge=0, le=10_000)
    max_points_per_batch: int | None = Field(None, ge=1)
    latency_budget_ms: float | None = Field(None, gt=0)
    max_admitted: int | None = Field(None, ge=1)
    max_admission_wait_ms: float | None = Field(None, ge=0)
    max_queue_size: int | None = Field(None, ge=1)
    request_timeout_s: float | None = Field(None, gt=0)
    instance_count: int | None = Field(None, ge=1, le=64)
    threads_per_instance: int | None = Field(None, ge=1)
    spin_wait: bool | None = None


class ModelSettings(_Strict):
    """Per-model choices; unset fields fall back to the repository's latest version and the best variant."""

    enabled: bool = True
    version: int | None = Field(None, ge=1, description="pin a version (default: the latest)")
    variant: str | None = Field(None, description="serve this variant by name")
    precision: Literal["fp32", "tf32", "fp16", "int8"] | None = None
    backend: Literal["onnxruntime", "tensorrt"] | None = None
    min_points: int | None = Field(None, ge=1, description="clouds with fewer points are refused")
    batching: BatchingOverride = Field(default_factory=BatchingOverride)


class Settings(BaseSettings):
    """Every knob of ``pointserve serve``; ``POINTSERVE_`` + the upper-case name sets it from the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    repository: Path = Field(Path("repository"), description="model repository folder")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = Field(None, description="bearer token; auth is off while unset")
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="bodies above this get 413 unread")
    max_points: int = Field(1_000_000, ge=1, description="points per cloud above this are refused")
    min_points: int = Field(1, ge=1, description="points per cloud below this are refused (per model: models.X)")
    max_instances_per_request: int = Field(256, ge=1, description="clouds in one request")
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    models: dict[str, ModelSettings] = Field(default_factory=dict, description="per-model overrides by name")
    model_control: Literal["none", "explicit", "poll"] = Field(
        "none",
        description="none: models load at start-up only; explicit: also POST /v2/repository/models/{m}/load and "
        "/unload; poll: follow the repository folder (a new version is loaded, a removed model unloaded)",
    )
    repository_poll_interval_s: float = Field(
        15.0, gt=0, le=86_400, description="poll mode: seconds between two looks at the repository folder"
    )
    startup_models: list[str] | None = Field(
        None, description="explicit mode: the models loaded at start (None: every enabled model; Triton's --load-model)"
    )
    retry_after_s: int = Field(1, ge=0, description="Retry-After on 503 answers")
    drain_timeout_s: float = Field(30.0, ge=0, description="longest wait for accepted requests on SIGTERM")
    drain_linger_s: float = Field(
        0.5, ge=0, le=60, description="after the drain, wait this long for requests on just-opened connections"
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="a connection that has not sent complete request headers this long after it opened (or after "
        "the first bytes of its next request, when kept alive) is closed, with a 408 if part of a request came",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="longest wait for the next chunk of a declared request body; past it the answer is 408 "
        "(Connection: close), counted as a client_timeout drop",
    )
    send_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="longest a client may take none of its answer; past it the connection is cut (recorded 408)",
    )
    keep_alive_timeout_s: float = Field(
        5.0, gt=0, le=3600, description="an idle kept-alive connection is closed after this long"
    )
    max_connections: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description="open connections; one over the cap gets an immediate 503 with Retry-After and is closed "
        "(lowered to fit the open files limit, RLIMIT_NOFILE)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    access_log: bool = Field(True, description="one structured log line per request")
    opentelemetry: bool = Field(False, description="FastAPI's OpenTelemetry tracing/metrics/logs hooks")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.api_key is not None and not self.api_key.get_secret_value().strip():
            raise ValueError("api_key is empty; unset it to turn auth off")
        if self.startup_models is not None and self.model_control != "explicit":
            raise ValueError(
                f"startup_models (--load-model) needs model_control explicit; with {self.model_control!r} every "
                "enabled model loads at start"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags beat the environment, which beats the config file, which beats the defaults.
        file_source = InitSettingsSource(settings_cls, init_kwargs=_FILE_VALUES.get() or {})
        return init_settings, env_settings, file_source

    def model_settings(self, name: str) -> ModelSettings:
        return self.models.get(name, ModelSettings())

    def batching_for(self, name: str) -> BatchingSettings:
        """The global batching settings with the model's overrides applied."""
        override = self.model_settings(name).batching.model_dump(exclude_none=True)
        return self.batching.model_copy(update=override)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON mapping; anything else is a :class:`ConfigError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ConfigError(f"{path}: not a readable {kind} file: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config file must hold a mapping of settings, not {type(data).__name__}")
    return data


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build and validate :class:`Settings`; ``overrides`` (command-line flags) win, ``None`` ones are skipped."""
    file_values = read_config_file(config_file) if config_file else {}
    token = _FILE_VALUES.set(file_values)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source=str(config_file or "settings"))) from None
    finally:
        _FILE_VALUES.reset(token)


def describe_validation_error(exc: ValidationError, source: str) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "(root)"
        problems.append(f"{where}: {error['msg']}")
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return f"invalid {source}: " + "; ".join(problems) + more
