"""The torch backend: the PyTorch reference (``fp32-torch``, the checkpoint's own weights), run only when asked
for by name (never picked automatically: serving images carry no torch). torch is imported when a runner loads."""

from __future__ import annotations

from pointserve.engines.backends import BackendSpec, RunnerRequest, register_backend
from pointserve.engines.environment import Selection


def _select(model_version, variant: str, env) -> Selection | str:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return f"{variant}: the torch backend needs PyTorch, which is not installed here"
    return Selection(variant, "torch", reason="requested PyTorch reference")


def _make_runner(request: RunnerRequest):
    from pointserve.engines.limits import limits_for_card
    from pointserve.engines.torch.runner import TorchRunner

    version = request.model_version
    card = version.card
    limits = limits_for_card(card, max_batch=request.max_batch, max_points=request.max_points)
    path = version.variant_path(request.variant, verify=request.verify)
    name = f"{version.name}/{version.version}/{request.variant}"
    return TorchRunner(path, limits, card=card, threads=request.threads, name=name)


TORCH = register_backend(
    BackendSpec(
        name="torch",
        oip_platform="pytorch_libtorch",
        artifact_suffix=".safetensors",
        variant_for=lambda precision: None,
        select=_select,
        make_runner=_make_runner,
        auto_select=False,
        priority=90,
        description="PyTorch eager (the fp32 reference)",
    )
)
