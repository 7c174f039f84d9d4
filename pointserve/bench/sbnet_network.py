"""``pointserve bench-op sbnet --network CHECKPOINT``: the whole BEV network, sparse against its dense twin, in
ONNX Runtime on real ``lidar_scenes`` scans.

Both graphs come from the same checkpoint through the same exporter: the sparse network (SBNet blocks on the
active tiles) and the dense twin (the backbone over every cell of the grid, the residual kept on the active
tiles only, so that both compute the same function). Per scan and per round, in an order shuffled per round,
each session runs the scan's preprocessed inputs; the preprocessing (pillars, reduce_mask, tile indices) is
timed on its own and added to both, since the dense twin needs the pillars and the active tiles too. Reported:
medians and spreads per form, the speed-up, and the labels' agreement (argmax equal on every point).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pointserve.errors import ConfigError


def _session(proto, path: Path, threads: int):
    import onnx
    import onnxruntime as ort

    onnx.save(proto, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure_network(checkpoint: str, scans: int, rounds: int, threads: int, seed: int, progress=None) -> dict[str, Any]:
    """Sparse vs dense ONNX Runtime timings and label agreement of a BEV checkpoint on ``scans`` test scans."""
    from pointserve.checkpoint.folder import load_checkpoint
    from pointserve.data.lidar_scenes import generate_scan
    from pointserve.export.onnx_export import trace_to_onnx
    from pointserve.models import get_spec
    from pointserve.models.collate import batch_inputs

    model, card = load_checkpoint(checkpoint)
    if card.architecture != "bev_seg":
        raise ConfigError(f"--network takes a bev_seg checkpoint, {checkpoint} holds {card.architecture}")
    spec = get_spec(card.architecture)
    clouds = [generate_scan(0, i, split="test")[0] for i in range(scans)]
    with tempfile.TemporaryDirectory() as scratch:
        model.eval().sparse = True
        sparse = _session(trace_to_onnx(model, card), Path(scratch) / "sparse.onnx", threads)
        model.sparse = False
        dense = _session(trace_to_onnx(model, card), Path(scratch) / "dense.onnx", threads)
    sessions = {"sparse": sparse, "dense": dense}
    prepared, prep_ms = [], []
    for cloud in clouds:
        started = time.perf_counter()
        feeds, _ = batch_inputs(spec, card, [cloud])
        prep_ms.append((time.perf_counter() - started) * 1e3)
        prepared.append(feeds)
    names = {form: [i.name for i in s.get_inputs()] for form, s in sessions.items()}
    times: dict[tuple[str, int], list[float]] = {(f, i): [] for f in sessions for i in range(scans)}
    labels: dict[tuple[str, int], np.ndarray] = {}
    for key in times:  # warm-up, and the labels
        form, i = key
        labels[key] = sessions[form].run(None, {n: prepared[i][n] for n in names[form]})[0].argmax(1)
    order = list(times)
    shuffler = random.Random(seed)
    for round_index in range(rounds):
        shuffler.shuffle(order)
        for form, i in order:
            feed = {n: prepared[i][n] for n in names[form]}
            started = time.perf_counter()
            sessions[form].run(None, feed)
            times[(form, i)].append((time.perf_counter() - started) * 1e3)
        if progress is not None:
            progress(round_index + 1)
    per_form = {}
    for form in sessions:
        medians = [statistics.median(times[(form, i)]) for i in range(scans)]
        per_form[form] = {
            "graph_ms_median": statistics.median(medians),
            "graph_ms_min": min(min(times[(form, i)]) for i in range(scans)),
            "graph_ms_max": max(max(times[(form, i)]) for i in range(scans)),
        }
    points = sum(len(c) for c in clouds)
    agree = sum(int((labels[("sparse", i)] == labels[("dense", i)]).sum()) for i in range(scans))
    tiles = [len(p["tile_cell"]) for p in prepared]
    height, width = card.config["grid_shape"]
    tile = card.config["tile"]
    prep = statistics.median(prep_ms)
    return {
        "checkpoint": str(checkpoint),
        "scans": scans,
        "rounds": rounds,
        "threads": threads,
        "points_per_scan_median": int(np.median([len(c) for c in clouds])),
        "tile_sparsity_median": float(1 - np.median(tiles) / (height * width / tile**2)),
        "preprocess_ms_median": prep,
        "forms": per_form,
        "speedup_graph": per_form["dense"]["graph_ms_median"] / per_form["sparse"]["graph_ms_median"],
        "speedup_end_to_end": (per_form["dense"]["graph_ms_median"] + prep)
        / (per_form["sparse"]["graph_ms_median"] + prep),
        "label_agreement": agree / points,
        "points": points,
    }


__all__ = ["measure_network"]
