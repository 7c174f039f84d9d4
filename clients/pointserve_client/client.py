"""Sync and async clients of a pointserve server (httpx; one connection pool per client).

>>> with PointServeClient("http://127.0.0.1:8000") as client:
...     result = client.predict("shapes-cls", points)          # (N, 3) raw coordinates
...     print(result.label, result.score)

>>> async with AsyncPointServeClient() as client:
...     results = await asyncio.gather(*(client.predict("shapes-cls", c) for c in clouds))
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import numpy as np

from .results import InferResult, Result
from .wire import (
    RequestSpec,
    check,
    infer_request,
    parse_infer,
    parse_predict,
    predict_file_request,
    predict_many_request,
    predict_request,
    render_request,
)

DEFAULT_URL = "http://127.0.0.1:8000"


def _client_options(url: str, api_key: str | None, timeout_s: float, headers: Mapping[str, str] | None) -> dict:
    merged = dict(headers or {})
    if api_key:
        merged["authorization"] = f"Bearer {api_key}"
    return {"base_url": url.rstrip("/"), "timeout": timeout_s, "headers": merged}


def _category_input(category: Any, batch: int) -> np.ndarray:
    values = np.atleast_1d(np.asarray(category, dtype=np.int64))
    return np.repeat(values, batch) if values.size == 1 and batch > 1 else values


class PointServeClient:
    """Blocking client. ``api_key`` is sent as a bearer token (needed when the server sets one)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        headers: Mapping[str, str] | None = None,
    ):
        self.http = httpx.Client(**_client_options(url, api_key, timeout_s, headers))

    def _send(self, spec: RequestSpec) -> httpx.Response:
        return self.http.request(spec.method, spec.path, **spec.kwargs())

    # -- health and metadata ---------------------------------------------------------------------------------
    def live(self) -> bool:
        return self.http.get("/v2/health/live").status_code == 200

    def ready(self) -> bool:
        return self.http.get("/v2/health/ready").status_code == 200

    def models(self) -> list[dict[str, Any]]:
        return check(self.http.get("/v1/models")).json()["models"]

    def model(self, name: str) -> dict[str, Any]:
        """Task, classes / parts, inputs, served variant and backend, accuracy from the manifest."""
        return check(self.http.get(f"/v1/models/{name}")).json()

    # -- REST v1 ---------------------------------------------------------------------------------------------
    def predict(self, model: str, points: Any, *, encoding: str = "binary", **options: Any) -> Result:
        """Classify or segment one (N, C) cloud. ``options``: category, top_k, return_probabilities,
        return_logits. ``encoding``: "binary" (float32 bytes), "json" or "npy"."""
        return parse_predict(self._send(predict_request(model, points, encoding=encoding, **options)))

    def render(self, model: str, points: Any, *, category: str | int | None = None) -> bytes:
        """A PNG of one (N, C) cloud coloured by the labels a segmentation model predicts (``render=png``)."""
        return check(self._send(render_request(model, points, category=category))).content

    def predict_many(self, model: str, clouds: Sequence[Any], **options: Any) -> list[Result]:
        """Several clouds in one request (JSON ``instances``), answers in order; ``categories=`` per cloud."""
        return parse_predict(self._send(predict_many_request(model, clouds, **options)))

    def predict_file(
        self, model: str, files: str | os.PathLike | bytes | Sequence[str | os.PathLike], **options: Any
    ) -> Result | list[Result]:
        """Upload .ply / .pcd / .xyz / .txt / .npy / .las / .laz file(s); bytes need ``filename=``."""
        return parse_predict(self._send(predict_file_request(model, files, **options)))

    # -- Open Inference Protocol v2 ----------------------------------------------------------------------------
    def infer(
        self,
        model: str,
        points: Any,
        *,
        category: Any = None,
        binary: bool = True,
        version: str | int | None = None,
    ) -> np.ndarray:
        """The raw logits of a batch (B, N, C): (B, K), or (B, N, P) for segmentation."""
        return self.infer_tensors(model, _v2_inputs(points, category), binary=binary, version=version).outputs["logits"]

    def infer_tensors(
        self, model: str, inputs: Mapping[str, np.ndarray], *, binary: bool = True, version: str | int | None = None
    ) -> InferResult:
        return parse_infer(self._send(infer_request(model, inputs, binary=binary, version=version)))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> PointServeClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncPointServeClient:
    """The same API as :class:`PointServeClient`, awaitable; many requests can be in flight at once."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 64,
    ):
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.http = httpx.AsyncClient(limits=limits, **_client_options(url, api_key, timeout_s, headers))

    async def _send(self, spec: RequestSpec) -> httpx.Response:
        return await self.http.request(spec.method, spec.path, **spec.kwargs())

    async def live(self) -> bool:
        return (await self.http.get("/v2/health/live")).status_code == 200

    async def ready(self) -> bool:
        return (await self.http.get("/v2/health/ready")).status_code == 200

    async def models(self) -> list[dict[str, Any]]:
        return check(await self.http.get("/v1/models")).json()["models"]

    async def model(self, name: str) -> dict[str, Any]:
        return check(await self.http.get(f"/v1/models/{name}")).json()

    async def predict(self, model: str, points: Any, *, encoding: str = "binary", **options: Any) -> Result:
        return parse_predict(await self._send(predict_request(model, points, encoding=encoding, **options)))

    async def render(self, model: str, points: Any, *, category: str | int | None = None) -> bytes:
        return check(await self._send(render_request(model, points, category=category))).content

    async def predict_many(self, model: str, clouds: Sequence[Any], **options: Any) -> list[Result]:
        return parse_predict(await self._send(predict_many_request(model, clouds, **options)))

    async def predict_file(
        self, model: str, files: str | os.PathLike | bytes | Sequence[str | os.PathLike], **options: Any
    ) -> Result | list[Result]:
        return parse_predict(await self._send(predict_file_request(model, files, **options)))

    async def infer(
        self, model: str, points: Any, *, category: Any = None, binary: bool = True, version: str | int | None = None
    ) -> np.ndarray:
        result = await self.infer_tensors(model, _v2_inputs(points, category), binary=binary, version=version)
        return result.outputs["logits"]

    async def infer_tensors(
        self, model: str, inputs: Mapping[str, np.ndarray], *, binary: bool = True, version: str | int | None = None
    ) -> InferResult:
        return parse_infer(await self._send(infer_request(model, inputs, binary=binary, version=version)))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncPointServeClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


def _v2_inputs(points: Any, category: Any) -> dict[str, np.ndarray]:
    batch = np.asarray(points, dtype=np.float32)
    if batch.ndim == 2:
        batch = batch[None]
    if batch.ndim != 3:
        raise ValueError(f"points must be (B, N, C) or (N, C), got shape {batch.shape}")
    inputs = {"points": batch}
    if category is not None:
        inputs["category"] = _category_input(category, len(batch))
    return inputs


__all__ = ["DEFAULT_URL", "AsyncPointServeClient", "PointServeClient"]
