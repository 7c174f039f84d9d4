"""The yardstick of ``scripts/compare_naive_server.py``: the server a user would write instead of pointserve.

About thirty lines of FastAPI: float32 bytes in, the cloud centred and scaled into the unit sphere (what the
model was trained on), one ``session.run`` per request on the event loop (no batching, no queue, no limits),
the class out. ONNX Runtime's defaults, like a user's.

    python -m pointserve.bench.naive_server repository/shapes-cls/1/fp32.onnx --port 8001
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI, Request, Response


def create_naive_app(onnx_path: str) -> FastAPI:
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        points = np.frombuffer(await request.body(), dtype=np.float32).reshape(1, -1, 3)
        points = points - points.mean(axis=1, keepdims=True)
        points = points / np.linalg.norm(points, axis=2).max()
        logits = session.run(None, {input_name: points.astype(np.float32)})[0][0]
        return Response(orjson.dumps({"class": int(logits.argmax())}), media_type="application/json")

    return app


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("onnx")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(create_naive_app(args.onnx), host="127.0.0.1", port=args.port, log_level="warning")
