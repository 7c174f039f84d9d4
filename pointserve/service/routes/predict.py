"""``POST /v1/models/{model}/predict``: the REST API for people (see :mod:`pointserve.service.codecs`)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from pointserve.errors import InputError
from pointserve.render import answer_title, render_png
from pointserve.service.codecs import CloudLimits, PredictOptions, decode_predict
from pointserve.service.core.answers import classification_answer, segmentation_answer
from pointserve.service.core.clouds import Cloud
from pointserve.service.deps import Authorized, ServedModelDep
from pointserve.service.routes.common import (
    CLIENT_CLOSED_REQUEST,
    ClientDisconnected,
    json_response,
    unless_disconnected,
)
from pointserve.service.schemas import (
    ERROR_RESPONSES,
    PNG_RESPONSE,
    PREDICT_PARAMETERS,
    PREDICT_REQUEST_BODY,
    ClassificationAnswer,
    PredictionsAnswer,
    SegmentationAnswer,
)
from pointserve.service.served_model import THREAD_WORK_POINTS, ServedModel

router = APIRouter(prefix="/v1", tags=["v1"], dependencies=[Authorized])


def _answer(served: ServedModel, cloud: Cloud, logits: np.ndarray, options: PredictOptions) -> dict:
    flags = {"return_probabilities": options.return_probabilities, "return_logits": options.return_logits}
    if served.card.task == "classification":
        return classification_answer(logits, served.card, top_k=options.top_k, **flags)
    return segmentation_answer(logits, cloud, served.card, **flags)


def check_renderable(served: ServedModel, clouds: int) -> None:
    """``render=png`` draws one cloud coloured by its predicted parts: refused (400) before any inference for a
    classification model or a request of several clouds."""
    if served.card.task == "classification":
        raise InputError(
            f"render=png draws a segmented cloud; {served.name!r} is a classification model (ask for JSON, or use "
            "`pointserve render`, which draws classified clouds in one colour)"
        )
    if clouds > 1:
        raise InputError(f"render=png draws one cloud; this request holds {clouds} (send them one per request)")


def picture(served: ServedModel, points: np.ndarray, answer: dict[str, Any]) -> bytes:
    """The PNG of one segmentation answer: the request's cloud coloured by predicted part, the model card's part
    names in the legend, model and category in the title."""
    title = answer_title(served.name, served.version, category=answer.get("category"))
    return render_png(points, np.asarray(answer["labels"]), answer["label_names"], title=title)


@router.post(
    "/models/{model}/predict",
    summary="Classify or segment point clouds",
    description=(
        "Send raw coordinates as JSON, float32 binary, .npy, or as uploaded .ply/.pcd/.xyz/.txt/.npy/.las/.laz files. "
        "Classification answers class, score and top-k; segmentation answers a label for every input point "
        "(or, with render=png, a PNG picture of the cloud coloured by part)."
    ),
    response_model=ClassificationAnswer | SegmentationAnswer | PredictionsAnswer,
    responses={**ERROR_RESPONSES, 200: PNG_RESPONSE},
    openapi_extra={"requestBody": PREDICT_REQUEST_BODY, "parameters": PREDICT_PARAMETERS},
)
async def predict(request: Request, served: ServedModelDep) -> Response:
    # The query options (documented in PREDICT_PARAMETERS) are read by decode_predict with the body's own:
    # declaring them as FastAPI parameters would validate them a second time on every request.
    settings = request.app.state.service.settings
    limits = CloudLimits(served.channels, served.min_points, served.max_points, settings.max_instances_per_request)
    decoded = await decode_predict(request, limits=limits)
    options = decoded.options
    if options.render:
        check_renderable(served, len(decoded.inputs))
    items = [(i.points, i.category if i.category is not None else options.category) for i in decoded.inputs]
    try:
        clouds, logits = await unless_disconnected(request, served.predict(items))
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    answers: list[dict[str, Any]] = []
    for cloud, cloud_logits in zip(clouds, logits, strict=True):
        args = (served, cloud, cloud_logits, options)
        if cloud.num_input_points > THREAD_WORK_POINTS:
            answers.append(await asyncio.to_thread(_answer, *args))
        else:
            answers.append(_answer(*args))
    if options.render:
        points = decoded.inputs[0].points
        png = await asyncio.to_thread(picture, served, points, answers[0])
        return Response(png, media_type="image/png")
    head = {"model": served.name, "version": served.version}
    if decoded.many:
        return json_response({**head, "predictions": answers})
    return json_response({**head, **answers[0]})
