"""What limits ONNX Runtime's int8 on this CPU: the same calibrated ranges in several int8 forms, timed interleaved.

    .venv/bin/python scripts/int8_cpu_forms.py quickstart/repository/shapes-cls/1 --batches 1,8,32 --seconds 4

Forms (all from the version's calibration set and the ranges ``pointserve calibrate`` cached, minmax):

* ``int8``            QDQ, S8S8 (int8 activations and weights), symmetric, per-channel: the TensorRT-ready variant
* ``qdq-u8s8``        QDQ, uint8 activations (asymmetric), int8 per-channel weights
* ``qop-u8s8``        QOperator (QLinearConv / QLinearMatMul), uint8 activations, int8 per-channel weights
* ``qop-u8s8-tensor`` the same with per-tensor weight scales
* ``qop-s8s8``        QOperator, int8 activations and weights
* ``dynamic-u8s8``    dynamic quantization (ranges per batch at run time; ConvInteger / MatMulInteger)
* ``int8-cpu``        the version's ``int8-cpu`` variant (``qop-u8s8`` + max pooling as GlobalMaxPool); built and
                      added to the version if it has none

For each form: clouds/s at each batch size (median over interleaved rounds) and its ratio to fp32, and the share of
run time by operator type at batch 8 (ONNX Runtime's profiler), which shows where the Q/DQ pairs and the float
nodes between them cost. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def build_forms(version, out: Path, forms: list[str]) -> dict[str, Path]:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    from pointserve.calibration.quantize import _CloudReader, _largest_divisor_at_most
    from pointserve.calibration.variant import make_int8_variant

    if not version.has_variant("int8"):
        make_int8_variant(version)
    fp32 = version.variant_path("fp32")
    paths = {"fp32": fp32, "int8": version.variant_path("int8")}
    calibration_file = version.path / version.variant("int8").calibration.file
    from pointserve.calibration.dataset import CalibrationSet

    arrays = CalibrationSet.load(calibration_file).arrays()
    static = {
        "qdq-u8s8": (QuantFormat.QDQ, QuantType.QUInt8, True),
        "qop-u8s8": (QuantFormat.QOperator, QuantType.QUInt8, True),
        "qop-u8s8-tensor": (QuantFormat.QOperator, QuantType.QUInt8, False),
        "qop-s8s8": (QuantFormat.QOperator, QuantType.QInt8, True),
    }
    for name in forms:
        if name in paths:
            continue
        if name == "int8-cpu":
            from pointserve.calibration.variant import make_int8_cpu_variant

            paths[name] = version.variant_path(name) if version.has_variant(name) else make_int8_cpu_variant(version)
            continue
        dst = out / f"{name}.onnx"
        if name == "dynamic-u8s8":
            quantize_dynamic(str(fp32), str(dst), weight_type=QuantType.QInt8, per_channel=True)
        else:
            fmt, activation, per_channel = static[name]
            reader = _CloudReader(arrays, ["points"], 8, card=version.card)
            quantize_static(
                str(fp32),
                str(dst),
                calibration_data_reader=reader,
                quant_format=fmt,
                activation_type=activation,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                extra_options={
                    "ActivationSymmetric": activation == QuantType.QInt8,
                    "WeightSymmetric": True,
                    "CalibStridedMinMax": _largest_divisor_at_most(len(reader), 4),
                },
                calibration_cache_path=str(out / "ranges.json"),
            )
        paths[name] = dst
    return paths


def session(path: Path, threads: int, profile: str | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds_for(version, batch: int, points: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch)
    feeds = {"points": rng.standard_normal((batch, points, version.card.in_channels)).astype(np.float32) * 0.4}
    if version.card.needs_category:
        feeds["category"] = np.zeros(batch, dtype=np.int64)
    return feeds


def op_shares(path: Path, threads: int, feeds, runs: int, prefix: str) -> dict[str, float]:
    sess = session(path, threads, profile=prefix)
    for _ in range(runs):
        sess.run(None, feeds)
    trace = json.loads(Path(sess.end_profiling()).read_text())
    total: dict[str, float] = defaultdict(float)
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            total[event["args"]["op_name"]] += event["dur"]
    whole = sum(total.values()) or 1.0
    return {op: t / whole for op, t in sorted(total.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    from pointserve.repository.commands import resolve_model_version

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version", help="a model version folder (repository/<model>/<version>) or MODEL")
    parser.add_argument("--repository", default="repository")
    parser.add_argument("--forms", default="int8,qdq-u8s8,qop-u8s8,qop-u8s8-tensor,qop-s8s8,dynamic-u8s8,int8-cpu")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=3.0, help="per (form, batch), over all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    version = resolve_model_version(args.version, args.repository, None)
    forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory(prefix="int8-forms-") as tmp:
        paths = build_forms(version, Path(tmp), forms)
        names = ["fp32", *[f for f in forms if f != "fp32"]]
        sessions = {n: session(paths[n], args.threads) for n in names}
        feeds = {b: feeds_for(version, b, args.points) for b in batches}
        for n in names:
            for b in batches:
                for _ in range(3):
                    sessions[n].run(None, feeds[b])
        latencies: dict[tuple[str, int], list[float]] = defaultdict(list)
        slice_s = args.seconds / args.rounds
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for n in order:
                for b in batches:
                    end = time.perf_counter() + slice_s
                    while time.perf_counter() < end:
                        t = time.perf_counter()
                        sessions[n].run(None, feeds[b])
                        latencies[(n, b)].append(time.perf_counter() - t)
        print(f"threads {args.threads}, {args.points} points, {args.rounds} interleaved rounds, median latency\n")
        print("| form | " + " | ".join(f"batch {b} clouds/s (× fp32)" for b in batches) + " |")
        print("| --- |" + " --- |" * len(batches))
        speed = {(n, b): b / statistics.median(latencies[(n, b)]) for n in names for b in batches}
        for n in names:
            cells = [f"{speed[(n, b)]:.1f} ({speed[(n, b)] / speed[('fp32', b)]:.2f}×)" for b in batches]
            print(f"| {n} | " + " | ".join(cells) + " |")
        print("\nshare of kernel time by operator, batch 8:\n")
        for n in names:
            shares = op_shares(paths[n], args.threads, feeds_for(version, 8, args.points), 20, f"{tmp}/{n}")
            top = ", ".join(f"{op} {100 * s:.0f}%" for op, s in list(shares.items())[:7])
            print(f"- {n}: {top}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
