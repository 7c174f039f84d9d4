"""Structural rules over exported ONNX graphs that families use to say which nodes int8 keeps in float.

These walk the graph protobuf only (no onnx import needed), so a family's spec can state its rule without
the calibration stage knowing the family.
"""

from __future__ import annotations

from typing import Any

COMPUTE_OPS = frozenset({"Conv", "MatMul", "Gemm"})


def compute_nodes_near_input(graph: Any, input_name: str, hops: int = 2) -> list[str]:
    """The Conv / MatMul / Gemm nodes within ``hops`` compute layers of graph input ``input_name``.

    Shape ops between them (Transpose, Slice, Concat, Reshape, ...) are walked through, so "one hop" is one
    compute layer however the exporter laid out the tensors. ``graph`` is an ``onnx.ModelProto``.
    """
    consumers: dict[str, list] = {}
    for node in graph.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    frontier = [i.name for i in graph.graph.input if i.name == input_name] or [graph.graph.input[0].name]
    found: list[str] = []
    seen: set[str] = set()
    for _ in range(hops):
        next_frontier: list[str] = []
        stack = list(frontier)
        while stack:
            tensor = stack.pop()
            for node in consumers.get(tensor, []):
                if node.name in seen:
                    continue
                seen.add(node.name)
                if node.op_type in COMPUTE_OPS:
                    found.append(node.name)
                    next_frontier.extend(node.output)
                else:
                    stack.extend(node.output)
        frontier = next_frontier
    return found


__all__ = ["COMPUTE_OPS", "compute_nodes_near_input"]
