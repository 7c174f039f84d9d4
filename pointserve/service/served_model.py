"""A model as the service holds it: its manifest and card, its runners (one per instance), its batcher.

:func:`load_models` opens every model of the repository (the latest version unless pinned), picks the best
runnable variant (a TensorRT plan for this GPU, else ONNX Runtime CUDA, else CPU; overridable per model),
loads one runner per instance and starts its dynamic batcher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from pointserve.card import ModelCard
from pointserve.engines.backends import oip_platform
from pointserve.engines.base import Runner
from pointserve.errors import ConfigError, EngineError, InputError
from pointserve.models.registry import get_spec
from pointserve.models.spec import ArchitectureSpec, request_specs
from pointserve.repository.manifest import Variant
from pointserve.repository.store import ModelVersion, Repository
from pointserve.repository.triton import Scheduling, model_config
from pointserve.service.core.admission import AdmissionControl, BatchProfile, measure_batch_profile
from pointserve.service.core.batcher import DynamicBatcher, ObserverChain
from pointserve.service.core.clouds import Cloud, group_key, prepare_cloud, run_batch
from pointserve.service.core.statistics import BatchPhases, ModelStatistics
from pointserve.service.metrics import ServiceMetrics
from pointserve.service.settings import BatchingSettings, Settings

log = logging.getLogger("pointserve.service")
# A bigger cloud's numpy work (preparing it: normalise, resample, preprocess; or building its segmentation
# answer: k-d tree, label lists) goes off the event loop, so small requests keep being served meanwhile.
THREAD_WORK_POINTS = 100_000


@dataclass
class ServedModel:
    """One served version of one model."""

    model_version: ModelVersion
    variant: Variant
    backend: str
    runners: list[Runner]
    batching: BatchingSettings
    min_points: int
    max_points: int
    versions: list[int] = field(default_factory=list)
    selection_reason: str = ""
    load_time_s: float = 0.0
    state: str = "loading"
    max_instances_per_request: int = 256
    batcher: DynamicBatcher[Cloud, np.ndarray] | None = None
    profile: BatchProfile | None = None
    admission: AdmissionControl | None = None
    statistics: ModelStatistics = field(default_factory=ModelStatistics)

    @property
    def name(self) -> str:
        return self.model_version.name

    @property
    def version(self) -> int:
        return self.model_version.version

    @property
    def card(self) -> ModelCard:
        return self.model_version.card

    @property
    def spec(self) -> ArchitectureSpec:
        return get_spec(self.card.architecture)

    @property
    def channels(self) -> int:
        return self.card.in_channels

    @property
    def max_processed_points(self) -> int:
        """Points per cloud the engine computes; larger clouds are resampled to this many."""
        engine_max = self.runners[0].limits.range_of("num_points")[1]
        if self.spec.collate == "concat":  # the engine's limit is for a whole batch of concatenated clouds
            engine_max //= max(1, self.runners[0].limits.max_batch)
        return min(engine_max, self.batching.max_points_per_batch)

    @property
    def max_batch_size(self) -> int:
        return min(self.batching.max_batch_size, self.runners[0].limits.max_batch)

    # -- requests -----------------------------------------------------------------------------------------
    def category_id(self, category: Any) -> int | None:
        """The category index for part segmentation, from a name or an id (what
        :func:`~pointserve.service.core.clouds.check_category` let through); ``None`` for other models."""
        names = self.card.class_names
        if not self.card.needs_category:
            if category is not None:
                raise InputError(f"model {self.name!r} ({self.card.task}) takes no category")
            return None
        if category is None:
            raise InputError(f"model {self.name!r} needs the object category, one of: {', '.join(names)}")
        if isinstance(category, (int, np.integer)):
            if not 0 <= int(category) < len(names):
                raise InputError(
                    f"unknown category id {int(category)}; ids are 0..{len(names) - 1} ({', '.join(names)})"
                )
            return int(category)
        if isinstance(category, str):
            if category in names:
                return names.index(category)
            if category.strip().isdigit():
                return self.category_id(int(category))
            raise InputError(f"unknown category {category[:64]!r}; known: {', '.join(names)}")
        raise InputError(f"category must be a name or an id, got {type(category).__name__}")

    def prepare(self, points: np.ndarray, category: Any = None) -> Cloud:
        """Make one raw cloud ready for the batcher. ``points`` passed :func:`check_points` with this model's
        limits already: every decoder checks each cloud where it can name the place (checking twice cost a
        tenth of a millisecond per 1,024-point request)."""
        category_id = self.category_id(category)
        return prepare_cloud(
            points,
            spec=self.spec,
            card=self.card,
            max_processed_points=self.max_processed_points,
            category=category_id,
        )

    async def predict(self, items: list[tuple[np.ndarray, Any]]) -> tuple[list[Cloud], list[np.ndarray]]:
        """The one path of every route: raw clouds and their categories -> prepared clouds and their logits.

        Big clouds are prepared off the event loop (normalising, resampling and the family's preprocessor
        are numpy work); each cloud then joins the model's dynamic batcher on its own.
        """
        started, ok = time.perf_counter_ns(), False
        try:
            clouds = []
            for points, category in items:
                if len(points) > THREAD_WORK_POINTS:
                    clouds.append(await asyncio.to_thread(self.prepare, points, category))
                else:
                    clouds.append(self.prepare(points, category))
            self.statistics.prepare.add(time.perf_counter_ns() - started, len(clouds))
            logits = await self.infer(clouds)
            ok = True
            return clouds, logits
        finally:
            self.statistics.request_done(started, ok)

    async def infer(self, clouds: list[Cloud]) -> list[np.ndarray]:
        """Logits for each cloud ((K,) or (n, P)), in order; each cloud is batched with other requests'."""
        if self.batcher is None:
            raise EngineError(f"model {self.name!r} is not loaded")
        spec = self.spec
        if len(clouds) == 1:
            return [await self.batcher.submit(clouds[0], clouds[0].cost, group_key(spec, clouds[0]))]
        tasks = [asyncio.ensure_future(self.batcher.submit(c, c.cost, group_key(spec, c))) for c in clouds]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:  # one failed (or we were cancelled): the others need not be computed
                task.cancel()

    def run_batch(self, runner: Runner, clouds: list[Cloud], phases: BatchPhases | None = None) -> list[np.ndarray]:
        """The batcher's handler (runs in a worker thread): collate by the family's policy, infer, split;
        ``phases``: the instance's statistics (None for the start-up profile, which is no inference)."""
        return run_batch(self.spec, self.card, runner, clouds, phases)

    # -- lifecycle ----------------------------------------------------------------------------------------
    def measure_profile(self) -> BatchProfile:
        """Seconds per batch at the trained point count (blocking; it also warms the runner up)."""
        points = max(self.min_points, min(self.card.num_points, self.max_processed_points))
        category = self.card.class_names[0] if self.card.needs_category else None
        raw = np.random.default_rng(0).standard_normal((points, self.channels)).astype(np.float32)
        # One prepared cloud, repeated: collation copies it into each batch, and a family's preparation (pcn's
        # neighbourhoods) costs as much as the batch itself, once per cloud, at every start.
        cloud, runner = self.prepare(raw, category), self.runners[0]
        return measure_batch_profile(
            lambda size: self.run_batch(runner, [cloud] * size), max_batch=self.max_batch_size, num_points=points
        )

    def _admission_from(self, profile: BatchProfile) -> AdmissionControl:
        b = self.batching
        preferred = min(b.preferred_batch_size or profile.preferred_batch_size, self.max_batch_size)
        return AdmissionControl(
            instances=len(self.runners),
            preferred_batch_size=preferred,
            batch_s=profile.seconds_for(preferred),
            latency_budget_s=b.latency_budget_ms / 1e3 if b.latency_budget_ms is not None else None,
            max_admitted=b.max_admitted,
            max_wait_s=b.max_admission_wait_ms / 1e3 if b.max_admission_wait_ms is not None else None,
        )

    async def start(self, metrics: ServiceMetrics) -> None:
        b = self.batching
        self.profile = await asyncio.to_thread(self.measure_profile)
        admission = self.admission = self._admission_from(self.profile)
        # Batches grow up to the largest efficient size (in points: smaller clouds pack more); under load, larger
        # batches cost less CPU per cloud, which the event loop and the clients sharing the cores get back.
        largest = b.preferred_batch_size or self.profile.largest_efficient_batch_size
        batch_points = min(largest, self.max_batch_size) * self.profile.num_points
        self.batcher = DynamicBatcher(
            [
                partial(self.run_batch, runner, phases=self.statistics.for_instance(i))
                for i, runner in enumerate(self.runners)
            ],
            max_batch_size=self.max_batch_size,
            max_queue_delay_ms=b.max_queue_delay_ms,
            max_points_per_batch=min(b.max_points_per_batch, batch_points),
            max_queue_size=b.max_queue_size or max(4 * admission.limit, self.max_instances_per_request),
            request_timeout_s=b.request_timeout_s or max(2.0, 20 * admission.budget_s),
            name=self.name,
            observer=ObserverChain((metrics.observer(self.name), admission, self.statistics)),
            padded=self.spec.collate != "concat",
        )
        await self.batcher.start()
        metrics.watch_queue(self.name, lambda: self.batcher.queue_depth if self.batcher else 0)
        metrics.watch_admission(self.name, lambda: admission.admitted, lambda: admission.limit)
        log.info("batch profile", extra={"model": self.name, **self.profile.as_dict(), **admission.as_dict()})
        self.state = "ready"
        metrics.set_state(self.name, "ready")

    async def stop(self, metrics: ServiceMetrics | None, timeout_s: float) -> None:
        """Finish the queued clouds (up to ``timeout_s``), close the runners; ``metrics`` None: a replaced version,
        whose successor now owns the model's state in the metrics."""
        if self.batcher is not None:
            await self.batcher.stop(timeout_s)
        for runner in self.runners:
            runner.close()
        self.state = "stopped"
        if metrics is not None:
            metrics.set_state(self.name, "stopped")

    @property
    def instance_kind(self) -> str:
        """Triton's instance kind: GPU for TensorRT and for ONNX Runtime on a GPU provider."""
        providers = set(getattr(self.runners[0], "active_providers", ()) or ()) if self.runners else set()
        on_gpu = self.backend == "tensorrt" or bool(providers - {"CPUExecutionProvider"})
        return "KIND_GPU" if on_gpu else "KIND_CPU"

    def triton_config(self) -> dict[str, Any]:
        """Triton's model config of what clients exchange with this model (``GET /v2/models/{m}/config``; the OIP
        metadata is read from it): the request tensors (raw clouds in, logits out), this model's batching."""
        inputs, outputs = request_specs(self.card)
        b = self.batching
        if self.admission is not None:
            preferred: tuple[int, ...] = (self.admission.preferred_batch_size,)
        else:
            preferred = (b.preferred_batch_size,) if b.preferred_batch_size else ()
        scheduling = Scheduling(
            max_batch_size=self.max_batch_size,
            max_queue_delay_us=round(b.max_queue_delay_ms * 1000),
            preferred_batch_sizes=preferred,
            instance_kind=self.instance_kind,
            instance_count=len(self.runners),
        )
        return model_config(
            self.name, platform=oip_platform(self.backend), inputs=inputs, outputs=outputs, scheduling=scheduling
        )

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/models/{model}`` answers."""
        card, manifest = self.card, self.model_version.manifest
        return {
            "name": self.name,
            "version": self.version,
            "versions": self.versions,
            "state": self.state,
            "task": card.task,
            "architecture": card.architecture,
            "classes": card.class_names,
            "parts": card.part_names,
            "category_parts": card.category_parts,
            "needs_category": card.needs_category,
            "normalization": card.normalization,
            "inputs": [spec.model_dump() for spec in manifest.inputs],
            "outputs": [spec.model_dump() for spec in manifest.outputs],
            "collate": self.spec.collate,
            "points": {
                "channels": card.in_channels,
                "trained_with": card.num_points,
                "min": self.min_points,
                "max": self.max_points,
                "max_processed": self.max_processed_points,
            },
            "variant": self.variant.name,
            "precision": self.variant.precision,
            "backend": self.backend,
            "selection_reason": self.selection_reason,
            "variants": [v.name for v in manifest.variants],
            "accuracy": self.variant.accuracy.model_dump() if self.variant.accuracy else None,
            "reference_accuracy": manifest.reference_accuracy.model_dump() if manifest.reference_accuracy else None,
            "batching": self.batching.model_dump() | {"max_batch_size": self.max_batch_size},
            "batch_profile": self.profile.as_dict() if self.profile else None,
            "admission": self.admission.as_dict() if self.admission else None,
        }


def open_served_model(repository: Repository, name: str, settings: Settings, version: int | None = None) -> ServedModel:
    """Open and load one model (blocking: runs in a thread); ``version``: this one, not the settings' choice."""
    from pointserve.engines.selection import create_runner, detect_environment, select_variant

    started = time.perf_counter()
    chosen = settings.model_settings(name)
    batching = settings.batching_for(name)
    model_version = repository.open(name, version or chosen.version)
    prefer = chosen.variant or chosen.precision
    selection = select_variant(model_version, prefer, backend=chosen.backend, environment=detect_environment())
    runners: list[Runner] = []
    try:
        for _ in range(batching.instance_count):
            runner = create_runner(
                model_version,
                selection.variant,
                backend=selection.backend,
                providers=selection.providers or None,
                max_batch=batching.max_batch_size,
                threads=batching.threads_per_instance,
                spin_wait=batching.spin_wait,
            )
            runners.append(runner.load())
    except BaseException:
        for runner in runners:
            runner.close()
        raise
    limits = runners[0].limits
    min_points = max(limits.range_of("num_points")[0], chosen.min_points or settings.min_points)
    served = ServedModel(
        model_version=model_version,
        variant=model_version.variant(selection.variant),
        backend=selection.backend,
        runners=runners,
        batching=batching,
        min_points=min_points,
        max_points=settings.max_points,
        versions=repository.versions(name),
        selection_reason=selection.reason,
        max_instances_per_request=settings.max_instances_per_request,
    )
    served.load_time_s = time.perf_counter() - started
    log.info(
        "loaded model",
        extra={
            "model": name,
            "version": served.version,
            "variant": selection.variant,
            "backend": selection.backend,
            "instances": len(runners),
            "load_time_s": round(served.load_time_s, 3),
        },
    )
    return served


def model_names(settings: Settings) -> list[str]:
    """The models to load at start: the enabled ones, or ``startup_models``; unknown names in the settings are a
    ConfigError, and so is none at all unless models can be loaded later (model control explicit or poll)."""
    repository = Repository(settings.repository)
    if not settings.repository.is_dir():
        raise ConfigError(
            f"no model repository at {settings.repository.resolve()} (looked there for --repository "
            f"{settings.repository}): run `pointserve quickstart` to build and serve the built-in models, or "
            "`pointserve export CHECKPOINT -o REPOSITORY` to publish a checkpoint, then `pointserve serve "
            "--repository REPOSITORY`"
        )
    names = repository.models()
    unknown = sorted((set(settings.models) | set(settings.startup_models or ())) - set(names))
    if unknown:
        raise ConfigError(
            f"settings name model(s) {', '.join(unknown)} that repository {settings.repository} does not have "
            f"(models: {', '.join(names) or 'none'})"
        )
    enabled = [n for n in names if settings.model_settings(n).enabled]
    if settings.startup_models is not None:
        enabled = [n for n in names if n in settings.startup_models]
    if not enabled and settings.model_control == "none":
        raise ConfigError(f"no models to serve in repository {settings.repository}")
    return enabled


def open_models(settings: Settings) -> dict[str, ServedModel]:
    """Open every enabled model (blocking; their batchers start with the app). Closes them all on an error."""
    repository = Repository(settings.repository)
    models: dict[str, ServedModel] = {}
    try:
        for name in model_names(settings):
            models[name] = open_served_model(repository, name, settings)
    except BaseException:
        for served in models.values():
            for runner in served.runners:
                runner.close()
        raise
    return models


async def load_models(settings: Settings, metrics: ServiceMetrics) -> dict[str, ServedModel]:
    """Open (in a thread: the event loop stays free) and start every enabled model."""
    for name in model_names(settings):
        metrics.set_state(name, "loading")
    models = await asyncio.to_thread(open_models, settings)
    for served in models.values():
        await served.start(metrics)
    return models
