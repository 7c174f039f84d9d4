"""The tensorrt backend: native TensorRT plans (``<precision>-tensorrt.plan``), built for one GPU architecture and
TensorRT release by ``pointserve build --backend tensorrt``, picked first when built for this GPU.

Importing this package imports neither ``tensorrt`` nor ``cuda``: the runner imports them when it loads, the
builder when it builds. ``plan`` holds the logic that needs neither (profiles, names, build records).
"""

from __future__ import annotations

from pointserve.engines.backends import BackendSpec, RunnerRequest, register_backend
from pointserve.engines.environment import RuntimeEnvironment, Selection
from pointserve.engines.tensorrt.plan import (
    PLAN_SUFFIX,
    ShapeProfile,
    check_plan_compatible,
    plan_limits,
    profile_from_build_info,
    profile_from_flags,
    tensorrt_variant_name,
)
from pointserve.engines.tensorrt.runner import TensorRTRunner
from pointserve.errors import ConfigError, EngineCompatibilityError


def _select(model_version, variant: str, env: RuntimeEnvironment) -> Selection | str:
    """A Selection when the plan ``variant`` was built for this GPU and TensorRT release, else why not."""
    if not model_version.has_variant(variant):
        return f"no {variant} variant"
    try:
        check_plan_compatible(model_version.variant(variant).built_for, env.gpu, env.tensorrt_version, variant)
    except EngineCompatibilityError as exc:
        return str(exc)
    return Selection(variant, "tensorrt", reason="TensorRT plan built for this GPU")


def _make_runner(request: RunnerRequest) -> TensorRTRunner:
    """The plan's runner; it accepts what both the card's limits and the plan's profile allow."""
    from pointserve.engines.limits import limits_for_card

    version = request.model_version
    record = version.variant(request.variant)
    if record.backend != "tensorrt" or record.built_for is None:
        raise ConfigError(f"variant {request.variant!r} is not a TensorRT plan")
    manifest = version.manifest
    path = version.variant_path(request.variant, verify=request.verify)
    profile = profile_from_build_info(record.built_for, manifest.inputs, path)
    card_limits = limits_for_card(version.card, max_batch=request.max_batch, max_points=request.max_points)
    return TensorRTRunner(
        path,
        manifest.inputs,
        manifest.outputs,
        plan_limits(card_limits, profile),
        build_info=record.built_for,
        cuda_graph=request.cuda_graph,
        name=f"{version.name}/{version.version}/{request.variant}",
    )


def _timed_call(runner):
    from pointserve.engines.tensorrt.phases import timed_call

    return timed_call(runner)


TENSORRT = register_backend(
    BackendSpec(
        name="tensorrt",
        oip_platform="tensorrt_plan",
        artifact_suffix=PLAN_SUFFIX,
        variant_for=tensorrt_variant_name,
        select=_select,
        make_runner=_make_runner,
        timed_call=_timed_call,
        priority=10,
        description="native TensorRT plans (built for one GPU architecture and TensorRT release)",
    )
)

__all__ = ["TENSORRT", "ShapeProfile", "TensorRTRunner", "profile_from_build_info", "profile_from_flags"]
