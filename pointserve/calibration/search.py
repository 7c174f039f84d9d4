"""Accuracy-guarded int8: keep the layers int8 hurts most in float until int8 agrees with fp32 often enough.

A calibration set is split in two: the first clouds calibrate (compute activation ranges), the rest are a
held-out part the search is judged on (never the test split). The search, on that held-out part:

1. Starting points, for every calibration method: everything int8, and the family's own rule
   (``ArchitectureSpec.int8_float_nodes``, e.g. PointNet segmentation's layers on raw coordinates). If one
   reaches the target, the one with the fewest float nodes wins (then the higher agreement).
2. Otherwise, from the best starting point (highest agreement, then lowest mean |Δlogit|): each remaining
   quantisable compute node (Conv, MatMul, Gemm, ...) is left in float alone, and ranked by how much that
   raises the agreement and lowers the logit error (its sensitivity).
3. Greedily, the most sensitive nodes go to float one at a time until the target is reached, or every
   candidate is float (then ``reached_target`` is false: reported as a failure to reach it).

Every graph tried is the same TensorRT-ready Q/DQ form as the plain int8 variant (symmetric, zero points 0,
per-channel weights, float biases): only ``nodes_to_exclude`` changes. Ranges are cached per method, so each
trial is a graph rewrite plus one pass over the held-out clouds. Agreement is over clouds (classification) or
points (segmentation, argmax restricted to the shape's category parts, as served).

Shapes:
    held-out points (H, N, C) float32, labels (H,) -> logits (H, K) or (H, N, P)
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pointserve.calibration.dataset import CalibrationSet
from pointserve.calibration.qdq import WEIGHT_OPS
from pointserve.calibration.quantize import METHODS, QuantizationResult, quantize_int8
from pointserve.card import ModelCard
from pointserve.errors import CalibrationError
from pointserve.repository.manifest import Int8FloatNode, Int8Search, Int8Trial

DEFAULT_HELDOUT_FRACTION = 0.5
# 256 calibrate + 256 held out: an agreement of 0.99 over clouds is then a resolution of 1 in 256.
GUARDED_NUM_SAMPLES = 512
EVAL_BATCH = 32


@dataclass(frozen=True)
class _Scored:
    method: str
    float_nodes: tuple[str, ...]
    agreement: float
    mean_abs_logit_diff: float
    label: str

    def key(self) -> tuple[float, float]:
        return (self.agreement, -self.mean_abs_logit_diff)

    def record(self) -> Int8Trial:
        return Int8Trial(
            method=self.method,
            label=self.label,
            float_nodes=len(self.float_nodes),
            agreement=round(self.agreement, 6),
            mean_abs_logit_diff=round(self.mean_abs_logit_diff, 6),
        )


class _HeldOut:
    """The held-out clouds, the fp32 graph's answers on them, and how an int8 graph's answers compare.

    Plain ONNX Runtime CPU sessions fed through the family's preprocessor and collate policy (as calibration
    feeds them): the engines layer sits above calibration.
    """

    def __init__(self, card: ModelCard, points: np.ndarray, labels: np.ndarray, fp32_onnx: Path, threads: int | None):
        self.card, self.threads = card, threads
        self.points, self.labels = points, labels
        self.reference = self.logits(fp32_onnx)
        self.reference_pred = self._predictions(self.reference)

    def _predictions(self, logits: np.ndarray) -> np.ndarray:
        from pointserve.metrics import card_predictions

        return card_predictions(self.card, logits, self.labels)

    def logits(self, onnx_path: Path) -> np.ndarray:
        """Shapes: (H, K) or (H, N, P)"""
        import onnxruntime as ort

        from pointserve.models.collate import first_output_per_cloud
        from pointserve.models.registry import get_spec

        spec = get_spec(self.card.architecture)
        names = [o.name for o in spec.outputs(self.card)]
        options = ort.SessionOptions()
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

        def run(feeds):
            return dict(zip(names, session.run(names, feeds), strict=True))

        return first_output_per_cloud(run, spec, self.card, self.points, self.labels, EVAL_BATCH)

    def compare(self, onnx_path: Path) -> tuple[float, float]:
        """``(agreement, mean |Δlogit|)`` of the graph at ``onnx_path`` against fp32."""
        logits = self.logits(onnx_path)
        agreement = float((self._predictions(logits) == self.reference_pred).mean())
        error = float(np.mean(np.abs(logits.astype(np.float64) - self.reference.astype(np.float64))))
        return agreement, error


def compute_nodes(graph) -> list[str]:
    """The quantisable compute nodes of an fp32 graph (those with int8 weights: whose arithmetic int8 changes; the
    rest of the Q/DQ'd nodes only move or compare values), in graph order: the search's candidates."""
    return [n.name for n in graph.node if n.op_type in WEIGHT_OPS and n.name]


def split_sizes(num_samples: int, heldout_fraction: float) -> tuple[int, int]:
    """``(calibration clouds, held-out clouds)``: both at least one."""
    if not 0 < heldout_fraction < 1:
        raise CalibrationError(f"the held-out fraction must be between 0 and 1, not {heldout_fraction}")
    if num_samples < 2:
        raise CalibrationError(f"an accuracy-guarded int8 needs at least 2 calibration clouds, got {num_samples}")
    heldout = min(num_samples - 1, max(1, round(num_samples * heldout_fraction)))
    return num_samples - heldout, heldout


def search_int8(
    src_onnx: str | Path,
    calibration_npz: str | Path,
    dst_onnx: str | Path,
    card: ModelCard,
    *,
    target_agreement: float,
    methods: Sequence[str] = METHODS,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    cache_dir: str | Path | None = None,
    version_dir: str | Path | None = None,
    threads: int | None = None,
    log: Callable[[str], object] | None = None,
) -> tuple[QuantizationResult, Int8Search]:
    """Write ``dst_onnx``: the int8 graph with the fewest float nodes that reaches ``target_agreement``.

    Returns the chosen graph's :class:`QuantizationResult` and the search record the manifest keeps
    (``calibration.search``). See the module docstring for the procedure.
    """
    import onnx

    from pointserve.models.registry import get_spec

    if not 0 < target_agreement <= 1:
        raise CalibrationError(f"the target agreement must be in (0, 1], not {target_agreement}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise CalibrationError(f"calibration methods must be among {', '.join(METHODS)}, got {list(methods)}")
    started = time.perf_counter()
    say = log or (lambda message: None)
    src_onnx, dst_onnx = Path(src_onnx), Path(dst_onnx)
    calibration = CalibrationSet.load(calibration_npz)
    arrays = calibration.arrays()
    num_calibration, num_heldout = split_sizes(int(arrays["points"].shape[0]), heldout_fraction)
    source = onnx.load(str(src_onnx), load_external_data=False)
    graph = source.graph
    op_types = {n.name: n.op_type for n in graph.node}
    candidates = compute_nodes(graph)
    family_rule = [n for n in get_spec(card.architecture).int8_float_nodes(source, card) if n in op_types]
    say(f"held-out part: {num_heldout} of {num_calibration + num_heldout} calibration clouds; fp32 answers")
    heldout = _HeldOut(
        card, arrays["points"][num_calibration:], arrays["label"][num_calibration:], src_onnx, threads=threads
    )

    with tempfile.TemporaryDirectory(prefix="pointserve-int8-search-") as tmp:
        trial_path = Path(tmp) / "trial.onnx"

        def trial(method: str, float_nodes: Sequence[str], label: str) -> _Scored:
            quantize_int8(
                src_onnx,
                calibration.path,
                trial_path,
                method=method,
                cache_dir=cache_dir,
                max_samples=num_calibration,
                exclude_nodes=list(float_nodes),
                card=card,  # preprocessed families: the card's preprocessor turns the clouds into graph inputs
            )
            agreement, error = heldout.compare(trial_path)
            scored = _Scored(method, tuple(float_nodes), agreement, error, label)
            say(f"  {method:<10} {label:<40} agreement {agreement:.4f}  mean |Δlogit| {error:.4f}")
            trials.append(scored)
            return scored

        trials: list[_Scored] = []
        starts = [("all int8", [])]
        if family_rule:
            starts.append(("family rule", family_rule))
        for method in methods:
            for label, nodes in starts:
                trial(method, nodes, label)
        reached = [t for t in trials if t.agreement >= target_agreement]
        reasons: dict[str, str] = {n: "starting point: the family's rule (int8_float_nodes)" for n in family_rule}
        if reached:
            chosen = min(reached, key=lambda t: (len(t.float_nodes), -t.agreement, t.mean_abs_logit_diff))
        else:
            chosen = _greedy(trial, max(trials, key=_Scored.key), candidates, target_agreement, reasons, say)
        final = quantize_int8(
            src_onnx,
            calibration.path,
            dst_onnx,
            method=chosen.method,
            cache_dir=cache_dir,
            max_samples=num_calibration,
            exclude_nodes=list(chosen.float_nodes),
            version_dir=version_dir,
            card=card,
        )
    record = Int8Search(
        target_agreement=target_agreement,
        reached_target=chosen.agreement >= target_agreement,
        method=chosen.method,
        heldout_agreement=round(chosen.agreement, 6),
        heldout_mean_abs_logit_diff=round(chosen.mean_abs_logit_diff, 6),
        calibration_samples=num_calibration,
        heldout_samples=num_heldout,
        methods_tried=list(methods),
        float_nodes=[
            Int8FloatNode(name=n, op_type=op_types.get(n, "?"), reason=reasons.get(n, "")) for n in chosen.float_nodes
        ],
        trials=[t.record() for t in trials],
        elapsed_s=round(time.perf_counter() - started, 1),
    )
    return final, record


def _greedy(trial, start: _Scored, candidates: list[str], target: float, reasons: dict[str, str], say) -> _Scored:
    """From ``start``, move the most sensitive candidates to float one at a time until ``target`` is reached."""
    remaining = [n for n in candidates if n not in start.float_nodes]
    say(f"{start.method}: ranking {len(remaining)} compute nodes by their effect alone in float")
    alone = {n: trial(start.method, [*start.float_nodes, n], f"+ {n} alone") for n in remaining}
    ranked = sorted(remaining, key=lambda n: alone[n].key(), reverse=True)
    current = start
    for rank, node in enumerate(ranked, 1):
        effect = alone[node]
        reasons[node] = (
            f"sensitivity rank {rank}: alone in float, held-out agreement {start.agreement:.4f} -> "
            f"{effect.agreement:.4f}, mean |Δlogit| {start.mean_abs_logit_diff:.4f} -> {effect.mean_abs_logit_diff:.4f}"
        )
        nodes = [*current.float_nodes, node]
        current = effect if rank == 1 else trial(start.method, nodes, f"greedy: {len(nodes)} float nodes")
        if current.agreement >= target:
            return current
    return current  # every candidate in float and still short of the target


__all__ = [
    "DEFAULT_HELDOUT_FRACTION",
    "GUARDED_NUM_SAMPLES",
    "compute_nodes",
    "search_int8",
    "split_sizes",
]
