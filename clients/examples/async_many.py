"""Many concurrent requests from one asyncio client: the server's dynamic batcher groups them.

.venv/bin/python clients/examples/async_many.py --model shapes-cls --requests 64 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pointserve_client import AsyncPointServeClient  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "clouds"


async def run(args: argparse.Namespace) -> None:
    clouds = [np.load(p, allow_pickle=False) for p in sorted(SAMPLES.glob("*.npy"))]
    gate = asyncio.Semaphore(args.concurrency)
    async with AsyncPointServeClient(args.url, api_key=args.api_key, max_connections=args.concurrency) as client:

        async def one(i: int):
            async with gate:
                return await client.predict(args.model, clouds[i % len(clouds)], encoding=args.encoding)

        started = time.perf_counter()
        answers = await asyncio.gather(*(one(i) for i in range(args.requests)))
        elapsed = time.perf_counter() - started
    print(f"{args.requests} requests in {elapsed:.2f} s ({args.requests / elapsed:.1f} req/s, {args.encoding})")
    print("labels:", dict(Counter(a.label for a in answers)))


def main() -> int:
    parser = argparse.ArgumentParser(description="concurrent predictions with the async client")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="shapes-cls")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--encoding", choices=("binary", "json", "npy"), default="binary")
    parser.add_argument("--api-key")
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
