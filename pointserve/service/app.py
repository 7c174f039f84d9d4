"""``create_app(settings)``: the whole service assembled in one place.

    app = create_app(load_settings(repository="repository"))     # models load in the lifespan
    uvicorn.run(app)                                               # or: pointserve serve

Routes (one module per resource under ``routes/``): ``/v1/models[/{model}]``, ``/v1/models/{model}/predict``;
the Open Inference Protocol under ``/v2`` (with Triton's model repository extension: index, load, unload);
``/v2/health/live|ready``; ``/metrics``; ``/docs``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from pointserve import __version__
from pointserve.service.deps import document_bearer_auth
from pointserve.service.errors import install_error_handlers
from pointserve.service.middleware import ServiceMiddleware
from pointserve.service.model_control import ModelController
from pointserve.service.routes import ROUTERS
from pointserve.service.served_model import ServedModel, load_models
from pointserve.service.settings import Settings, load_settings
from pointserve.service.state import ServiceState

log = logging.getLogger("pointserve.service")

DESCRIPTION = """Classify and segment point clouds with the models of a pointserve repository.

* **v1** (REST, for people): `POST /v1/models/{model}/predict` takes JSON, float32 binary, `.npy`, or uploaded
  `.ply`/`.pcd`/`.xyz`/`.txt`/`.npy`/`.las`/`.laz` files with raw coordinates; the server applies the model's
  normalisation.
* **v2** (Open Inference Protocol, what Triton speaks): JSON tensors and the binary tensor data extension.

Every error is JSON `{"error": "..."}`. With an API key configured, send `Authorization: Bearer <key>`.
"""


def create_app(settings: Settings | None = None, *, models: dict[str, ServedModel] | None = None) -> FastAPI:
    """The FastAPI app. ``models``: already opened (not started) models; else every enabled model of
    ``settings.repository`` is loaded when the app starts."""
    settings = settings if settings is not None else load_settings()
    state = ServiceState(settings)
    controller = ModelController(state)  # load / unload / poll (model_control); idle in mode none

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if models is None:
            state.models = await load_models(settings, state.metrics)
        else:
            state.models = dict(models)
            for served in state.models.values():
                await served.start(state.metrics)
        state.loaded = True
        state.metrics.ready.set(1)
        log.info("ready", extra={"models": sorted(state.models), "model_control": settings.model_control})
        controller.start()
        try:
            yield
        finally:
            state.start_draining()
            await controller.close()  # no switch is half done when the models stop
            for served in list(state.models.values()):
                await served.stop(state.metrics, timeout_s=settings.drain_timeout_s)
            log.info("stopped")

    app = FastAPI(
        title="pointserve",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry hooks cost a provider lookup on every request; the service exports
        # Prometheus metrics itself. Turn them on with opentelemetry=true when a provider is configured.
        telemetry={
            "tracing": settings.opentelemetry,
            "metrics": settings.opentelemetry,
            "logs": settings.opentelemetry,
        },
    )
    app.state.service = state
    app.state.model_control = controller
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(ServiceMiddleware, state=state)
    document_bearer_auth(app)
    return app
