"""FastAPI dependencies, as ``Annotated`` aliases the routes declare in their signatures
(``async def predict(served: ServedModelDep, settings: SettingsDep)``).

Every dependency is ``async def``: FastAPI runs plain ``def`` dependencies in a worker thread, a thread hop
per dependency per request that cost more than the whole request did.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Request

from pointserve.errors import ModelNotFoundError, ServiceUnavailableError
from pointserve.service.model_control import ModelController
from pointserve.service.served_model import ServedModel
from pointserve.service.settings import Settings
from pointserve.service.state import ServiceState

_SERVING_STATES = ("ready", "draining")  # draining: requests accepted before SIGTERM still finish


async def get_state(request: Request) -> ServiceState:
    return request.app.state.service


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_settings(request: Request) -> Settings:
    return request.app.state.service.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_controller(request: Request) -> ModelController:
    return request.app.state.model_control


ControllerDep = Annotated[ModelController, Depends(get_controller)]


async def require_api_key(request: Request) -> None:
    """Bearer auth, on only when ``api_key`` is configured (health endpoints do not use this dependency).

    The header is read directly rather than through ``fastapi.security.HTTPBearer`` (one dependency less on
    every request); the scheme is declared in the OpenAPI document by :func:`document_bearer_auth`.
    """
    expected = request.app.state.service.settings.api_key
    if expected is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise HTTPException(
            401, "missing or wrong API key (send Authorization: Bearer <key>)", {"WWW-Authenticate": "Bearer"}
        )


Authorized = Depends(require_api_key)


def find_model(state: ServiceState, name: str) -> ServedModel:
    served = state.models.get(name)
    if served is None:
        known = ", ".join(sorted(state.models)) or "none"
        raise ModelNotFoundError(f"no model {name[:128]!r} is served (models: {known})")
    return served


def check_version(served: ServedModel, version: str) -> ServedModel:
    if version != str(served.version):
        raise ModelNotFoundError(
            f"model {served.name!r} version {version[:32]!r} is not served (serving version {served.version}; "
            f"repository has {served.versions})"
        )
    return served


async def get_model(request: Request, model: Annotated[str, Path(description="model name")]) -> ServedModel:
    """The model, whatever its state (readiness, config and statistics answer while it loads or drains)."""
    return find_model(request.app.state.service, model)


async def get_model_version(
    request: Request,
    model: Annotated[str, Path(description="model name")],
    version: Annotated[str, Path(description="model version (only the served one is available)")],
) -> ServedModel:
    return check_version(find_model(request.app.state.service, model), version)


async def get_served_model(request: Request, model: Annotated[str, Path(description="model name")]) -> ServedModel:
    served = find_model(request.app.state.service, model)
    if served.state not in _SERVING_STATES:
        raise ServiceUnavailableError(f"model {served.name!r} is {served.state}")
    return served


async def get_served_version(
    request: Request,
    model: Annotated[str, Path(description="model name")],
    version: Annotated[str, Path(description="model version (only the served one is available)")],
) -> ServedModel:
    return check_version(await get_served_model(request, model), version)


ModelDep = Annotated[ServedModel, Depends(get_model)]
ModelVersionDep = Annotated[ServedModel, Depends(get_model_version)]
ServedModelDep = Annotated[ServedModel, Depends(get_served_model)]
ServedVersionDep = Annotated[ServedModel, Depends(get_served_version)]


def document_bearer_auth(app: FastAPI, open_tags: tuple[str, ...] = ("health",)) -> None:
    """Declare the bearer scheme in ``/openapi.json`` on every operation that :data:`Authorized` guards."""
    make_schema = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = make_schema()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the API key, when one is configured"}
            }
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    if not set(operation.get("tags", ())) & set(open_tags):
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
