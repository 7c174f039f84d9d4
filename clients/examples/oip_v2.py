"""Open Inference Protocol (KServe v2, as Triton speaks it): raw logits for a batch, binary and JSON tensors.

.venv/bin/python clients/examples/oip_v2.py --model shapes-cls
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pointserve_client import PointServeClient  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "clouds"


def main() -> int:
    parser = argparse.ArgumentParser(description="OIP v2 inference with binary and JSON tensors")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="shapes-cls")
    parser.add_argument("--api-key")
    args = parser.parse_args()
    batch = np.stack([np.load(p, allow_pickle=False) for p in sorted(SAMPLES.glob("*.npy"))])  # (B, N, 3)
    with PointServeClient(args.url, api_key=args.api_key) as client:
        classes = client.model(args.model)["classes"]
        binary = client.infer(args.model, batch)  # binary tensor data extension both ways
        plain = client.infer(args.model, batch, binary=False)  # JSON "data" lists
    print(f"logits {binary.shape}, binary vs JSON max |diff| = {np.abs(binary - plain).max():.3g}")
    if binary.ndim == 2:
        for name, row in zip(sorted(p.stem for p in SAMPLES.glob("*.npy")), binary, strict=True):
            print(f"{name}: {classes[int(row.argmax())]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
