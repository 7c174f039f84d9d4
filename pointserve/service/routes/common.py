"""Helpers shared by the route modules: fast JSON responses, and waiting for an answer while the client is there."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

T = TypeVar("T")
CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away"; only ever logged


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready."""


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """orjson straight to bytes (numpy arrays included): no jsonable_encoder pass over big label lists."""
    body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


async def _cancel_on_disconnect(request: Request, task: asyncio.Task, flag: list[bool]) -> None:
    # Once the body has been read, the server's receive() only returns when the client disconnects.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            flag.append(True)
            task.cancel()
            return


async def unless_disconnected(request: Request, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``; if the client disconnects first, cancel it (its clouds leave the batch queue
    before compute) and raise :class:`ClientDisconnected`.

    The work runs in the caller's task and one watcher task cancels it on a disconnect: one task per
    request rather than two plus an ``asyncio.wait``.
    """
    disconnected: list[bool] = []
    watcher = asyncio.ensure_future(_cancel_on_disconnect(request, asyncio.current_task(), disconnected))
    try:
        return await awaitable
    except asyncio.CancelledError:
        if disconnected:
            task = asyncio.current_task()
            if hasattr(task, "uncancel"):  # Python >= 3.11: the cancellation was ours, and is handled
                task.uncancel()
            raise ClientDisconnected() from None
        raise
    finally:
        watcher.cancel()
