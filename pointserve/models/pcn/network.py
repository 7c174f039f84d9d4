"""pcn's residual networks over four cloud levels: the classifier and the per-point segmenter.

The classifier is the reference's ``resnet`` builder (jackd/pcn ``builders/resnet.py``): a featureless
in-place convolution at level 0, a down-sampling ``conv_block`` into each coarser level, an ``identity_block``
in place at levels 1-3, Dense(4·width) at the coarsest level, a global max per cloud and the head
ReLU-BN-Dropout-Dense-ReLU-BN-Dropout-Dense. Blocks are bottlenecks (Dense f/4 - conv f/4 - Dense f) with the
reference's activation-then-BatchNorm order.

The segmenter adds the reference's ``up_sample_block`` from the coarsest level back to the input points: a
continuous convolution over the up-sampling neighbourhood (fine points, coarse neighbours) to the finer level's
width, BN, added to that level's encoder features (the skip connection), ReLU; then the global feature and
(part segmentation) the object category join every point's features for the per-point head.

The graph inputs are the padded neighbour lists of :func:`pointserve.geometry.sample_hierarchy`, concatenated
over the batch (the ``concat`` collate policy: indices offset per cloud, padding pointing one past the end);
coordinates of the coarser levels are gathered in the graph from the input points.

Shapes (P_l: points of level l over the whole batch, B clouds):
    - **points:** (P_0, C) float32, xyz first (extra channels are the first layer's input features)
    - **neighbors_l:** (P_l, k) int64 into level l;  **sample_l**, **down_l:** (P_l,), (P_l, k_down) into l - 1
    - **up_l:** (P_l, k_up) int64 into level l + 1 (segmentation);  **pool:** (B, M) int64 into level 3
    - **segment:** (P_0,) int64 cloud of each point;  **category:** (B,) int64 (part segmentation)
    - **logits:** (B, K) classification, (P_0, P) segmentation
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pointserve.models.pcn.conv import ContinuousConv, Neighbourhood, edge_features, gather_rows, num_edge_features

NUM_LEVELS = 4


class _Activated(nn.Module):
    """Dense (or nothing) - ReLU - BatchNorm: the reference's layer order."""

    def __init__(self, width: int, dense_from: int | None = None) -> None:
        super().__init__()
        self.dense = nn.Linear(dense_from, width) if dense_from is not None else nn.Identity()
        self.norm = nn.BatchNorm1d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.relu(self.dense(x)))


class DownSampleBlock(nn.Module):
    """The reference's ``conv_block``: bottleneck branch over the down-sampling neighbourhood + a gathered,
    projected shortcut, added, ReLU. (P_fine, F_in) -> (P_coarse, F_out)."""

    def __init__(self, in_width: int, out_width: int, terms: int, dropout: float) -> None:
        super().__init__()
        inner = max(1, out_width // 4)
        self.reduce = _Activated(inner, in_width)
        self.conv = ContinuousConv(inner, inner, terms)
        self.conv_norm = _Activated(inner)
        self.expand = nn.Linear(inner, out_width)
        self.expand_norm = nn.BatchNorm1d(out_width)
        self.shortcut = nn.Linear(in_width, out_width)
        self.shortcut_norm = nn.BatchNorm1d(out_width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, down: Neighbourhood, sample: torch.Tensor) -> torch.Tensor:
        branch = self.conv_norm(self.conv(self.reduce(x), down))
        branch = self.dropout(self.expand_norm(self.expand(branch)))
        shortcut = self.dropout(self.shortcut_norm(self.shortcut(gather_rows(x, sample))))
        return torch.relu(shortcut + branch)


class IdentityBlock(nn.Module):
    """The reference's bottleneck ``identity_block`` over an in-place neighbourhood: (P, F) -> (P, F)."""

    def __init__(self, width: int, terms: int, dropout: float) -> None:
        super().__init__()
        inner = max(1, width // 4)
        self.reduce = _Activated(inner, width)
        self.conv = ContinuousConv(inner, inner, terms)
        self.conv_norm = _Activated(inner)
        self.expand = nn.Linear(inner, width)
        self.expand_norm = nn.BatchNorm1d(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, in_place: Neighbourhood) -> torch.Tensor:
        branch = self.conv_norm(self.conv(self.reduce(x), in_place))
        return torch.relu(x + self.dropout(self.expand_norm(self.expand(branch))))


class UpSampleBlock(nn.Module):
    """The reference's ``up_sample_block``: coarse features convolved onto the fine points, added to the fine
    level's own features. (P_coarse, F_coarse), (P_fine, F_fine) -> (P_fine, F_fine)."""

    def __init__(self, coarse_width: int, fine_width: int, terms: int, dropout: float) -> None:
        super().__init__()
        self.conv = ContinuousConv(coarse_width, fine_width, terms)
        self.norm = nn.BatchNorm1d(fine_width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor, up: Neighbourhood) -> torch.Tensor:
        return torch.relu(fine + self.dropout(self.norm(self.conv(coarse, up))))


class PcnEncoder(nn.Module):
    """Levels 0-3: per-level features (P_l, widths[l]) and the (P_3, global_width) features pooled later."""

    def __init__(
        self,
        in_channels: int,
        radii: Sequence[float],
        widths: Sequence[int],
        global_width: int,
        block_dropout: float,
        degree: int = 2,
    ) -> None:
        super().__init__()
        if len(radii) != NUM_LEVELS or len(widths) != NUM_LEVELS:
            raise ValueError(f"pcn networks have {NUM_LEVELS} levels: got {len(radii)} radii, {len(widths)} widths")
        self.radii = [float(r) for r in radii]
        self.degree = degree
        self.down_scale = 2.0**0.5
        terms = num_edge_features(degree)
        extra = in_channels - 3
        self.first = ContinuousConv(extra if extra > 0 else None, widths[0], terms)
        self.first_norm = nn.BatchNorm1d(widths[0])
        self.down = nn.ModuleList(
            DownSampleBlock(widths[level - 1], widths[level], terms, block_dropout) for level in range(1, NUM_LEVELS)
        )
        self.in_place = nn.ModuleList(
            IdentityBlock(widths[level], terms, block_dropout) for level in range(1, NUM_LEVELS)
        )
        self.to_global = nn.Linear(widths[-1], global_width)

    def neighbourhood(self, in_coords, out_coords, neighbors, radius: float) -> Neighbourhood:
        features = edge_features(in_coords, out_coords, neighbors, radius, self.degree)
        return Neighbourhood(neighbors, features, in_coords.shape[0])

    def coords(self, points: torch.Tensor, samples: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        levels = [points[:, :3]]
        for sample in samples:
            levels.append(gather_rows(levels[-1], sample))
        return levels

    def forward(self, points, neighbors, samples, downs):
        """``neighbors`` (4 in-place lists), ``samples`` / ``downs`` (levels 1-3) -> (per-level features,
        coordinates, global-width features of level 3)."""
        coords = self.coords(points, samples)
        in_place = [self.neighbourhood(c, c, nb, r) for c, nb, r in zip(coords, neighbors, self.radii, strict=True)]
        x = self.first(points[:, 3:] if self.first.in_features else None, in_place[0])
        features = [torch.relu(self.first_norm(x))]
        for level in range(1, NUM_LEVELS):
            reach = self.radii[level - 1] * self.down_scale
            down = self.neighbourhood(coords[level - 1], coords[level], downs[level - 1], reach)
            x = self.down[level - 1](features[-1], down, samples[level - 1])
            features.append(self.in_place[level - 1](x, in_place[level]))
        return features, coords, self.to_global(features[-1])


def _levels(neighbors_0, sample_1, down_1, neighbors_1, sample_2, down_2, neighbors_2, sample_3, down_3, neighbors_3):
    """The named level inputs (the graph's signature, which the exporter needs spelled out) -> the encoder's
    (in-place lists, samples, down-sampling lists)."""
    neighbors = [neighbors_0, neighbors_1, neighbors_2, neighbors_3]
    return neighbors, [sample_1, sample_2, sample_3], [down_1, down_2, down_3]


def global_max(features: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Per-cloud max: ``pool`` (B, M) lists each cloud's coarsest points (short clouds repeat theirs)."""
    return gather_rows(features, pool).amax(dim=1)


class PcnClassifier(nn.Module):
    """pcn ResNet classifier: concatenated clouds and their neighbourhoods -> (B, num_classes) logits."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        radii: Sequence[float] = (0.1125, 0.225, 0.45, 0.9),
        widths: Sequence[int] = (32, 64, 128, 256),
        global_width: int = 1024,
        head_width: int = 256,
        dropout: float = 0.5,
        block_dropout: float = 0.5,
        degree: int = 2,
    ) -> None:
        super().__init__()
        self.encoder = PcnEncoder(in_channels, radii, widths, global_width, block_dropout, degree)
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.BatchNorm1d(global_width),
            nn.Dropout(dropout),
            nn.Linear(global_width, head_width),
            nn.ReLU(),
            nn.BatchNorm1d(head_width),
            nn.Dropout(dropout),
            nn.Linear(head_width, num_classes),
        )

    def forward(
        self, points, neighbors_0, sample_1, down_1, neighbors_1, sample_2, down_2, neighbors_2,
        sample_3, down_3, neighbors_3, pool,
    ):  # fmt: skip
        levels = _levels(neighbors_0, sample_1, down_1, neighbors_1, sample_2, down_2, neighbors_2, sample_3, down_3,
                         neighbors_3)  # fmt: skip
        _, _, top = self.encoder(points, *levels)
        return self.head(global_max(top, pool))


class PcnSegmenter(nn.Module):
    """pcn encoder-decoder: a label distribution for every input point, (P_0, num_parts).

    With ``num_categories`` (part segmentation) the object category's one-hot joins every point's features.
    """

    def __init__(
        self,
        num_parts: int,
        in_channels: int = 3,
        num_categories: int = 0,
        radii: Sequence[float] = (0.1125, 0.225, 0.45, 0.9),
        widths: Sequence[int] = (32, 64, 128, 256),
        global_width: int = 1024,
        head_width: int = 128,
        dropout: float = 0.5,
        block_dropout: float = 0.5,
        degree: int = 2,
    ) -> None:
        super().__init__()
        self.num_categories = num_categories
        self.encoder = PcnEncoder(in_channels, radii, widths, global_width, block_dropout, degree)
        terms = num_edge_features(degree)
        self.up = nn.ModuleList(
            UpSampleBlock(widths[level + 1], widths[level], terms, block_dropout) for level in range(NUM_LEVELS - 1)
        )
        self.head = nn.Sequential(
            nn.Linear(widths[0] + global_width + num_categories, head_width),
            nn.ReLU(),
            nn.BatchNorm1d(head_width),
            nn.Dropout(dropout),
            nn.Linear(head_width, num_parts),
        )

    def segment(self, points, neighbors, samples, downs, ups, pool, segment, category=None):
        features, coords, top = self.encoder(points, neighbors, samples, downs)
        x = features[-1]
        for level in reversed(range(NUM_LEVELS - 1)):
            reach = self.encoder.radii[level] * self.encoder.down_scale
            up = self.encoder.neighbourhood(coords[level + 1], coords[level], ups[level], reach)
            x = self.up[level](x, features[level], up)
        per_point = [x, gather_rows(global_max(top, pool), segment)]
        if self.num_categories:
            one_hot = (category.unsqueeze(1) == torch.arange(self.num_categories, device=category.device)).to(x.dtype)
            per_point.append(gather_rows(one_hot, segment))
        return self.head(torch.cat(per_point, dim=1))

    def forward(
        self, points, neighbors_0, sample_1, down_1, neighbors_1, sample_2, down_2, neighbors_2,
        sample_3, down_3, neighbors_3, pool, up_0, up_1, up_2, segment,
    ):  # fmt: skip
        levels = _levels(neighbors_0, sample_1, down_1, neighbors_1, sample_2, down_2, neighbors_2, sample_3, down_3,
                         neighbors_3)  # fmt: skip
        return self.segment(points, *levels, [up_0, up_1, up_2], pool, segment)


class PcnPartSegmenter(PcnSegmenter):
    """:class:`PcnSegmenter` with the object category as an input (part segmentation)."""

    def forward(
        self, points, neighbors_0, sample_1, down_1, neighbors_1, sample_2, down_2, neighbors_2,
        sample_3, down_3, neighbors_3, pool, up_0, up_1, up_2, segment, category,
    ):  # fmt: skip
        levels = _levels(neighbors_0, sample_1, down_1, neighbors_1, sample_2, down_2, neighbors_2, sample_3, down_3,
                         neighbors_3)  # fmt: skip
        return self.segment(points, *levels, [up_0, up_1, up_2], pool, segment, category)
