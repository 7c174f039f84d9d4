"""DGCNN (Wang et al., "Dynamic Graph CNN for Learning on Point Clouds", TOG 2019): the classifier and the
part segmenter, laid out as github.com/antao97/dgcnn.pytorch's ``DGCNN_cls`` and ``DGCNN_partseg``.

Every EdgeConv builds its own graph ("dynamic graph"): the k nearest neighbours of each point *in the layer's
input feature space*, found in the graph as the reference finds them, ``-||x_i||^2 + 2 x_i^T x_j - ||x_j||^2``
(a MatMul and two ReduceSums) then ``TopK(k)`` (largest: nearest), so the exported ONNX graph needs no custom
op, no sort over all points and no scatter. The edge feature of neighbour j of point i is ``[x_j - x_i, x_i]``,
1x1 convolutions + BatchNorm + LeakyReLU(0.2) over the edges, then the max over the k edges.

Two rewrites keep the function and cut the cost; neither changes an answer beyond float rounding:

* The first 1x1 convolution of an EdgeConv is linear, so over ``[x_j - x_i, x_i]`` it equals
  ``W_a x_j + (W_b - W_a) x_i``: computed once per *point* (one Conv1d of both halves) and gathered per edge,
  instead of once per edge (k times fewer multiply-adds; the classifier's whole EdgeConv stack is single
  convolutions, so it never convolves an (N, k) edge tensor at all).
* Part segmentation's ``conv8`` over ``[global, category, x1, x2, x3]`` repeated to every point: its per-cloud
  columns are one (B, 256) product per cloud, broadcast over the points.

``k`` is ``min(k, N)`` (``torch.sym_min``: an ONNX ``Min`` of the constant k and the point count feeding TopK),
so clouds smaller than k still run; for N >= k it is exactly the reference's k.

Parameter names are the reference's (``conv1`` = Sequential(conv, bn, LeakyReLU), ``linear1``, ``bn6``, ...),
without its aliases (the reference also registers every Sequential's BatchNorm as ``bn1``..``bn5``), so its
checkpoints load by name (:mod:`pointserve.checkpoint.importers.dgcnn_antao97`).

Shapes:
    points:   (B, N, C) float32, xyz first (kNN of the first EdgeConv uses every channel, as the reference)
    category: (B,) int64 object category (part segmentation)
    logits:   (B, K) classification, (B, N, P) part segmentation
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NEGATIVE_SLOPE = 0.2
DEFAULT_K = 20
DEFAULT_EMB_DIMS = 1024


def knn(x: Tensor, k: int) -> Tensor:
    """Indices of the ``min(k, N)`` nearest neighbours of every point (itself included), nearest first.

    The reference's formula: ``pairwise[i, j] = -||x_i||^2 + 2 x_i . x_j - ||x_j||^2`` and TopK over j.

    Shapes: ``x (B, C, N) -> (B, N, min(k, N))`` int64
    """
    inner = -2 * torch.matmul(x.transpose(2, 1), x)
    xx = torch.sum(x**2, dim=1, keepdim=True)
    pairwise = -xx - inner - xx.transpose(2, 1)
    return pairwise.topk(k=torch.sym_min(k, x.shape[2]), dim=-1)[1]


def gather_neighbors(features: Tensor, idx: Tensor) -> Tensor:
    """Each point's neighbours' features: one Gather on the batch's flattened points (no scatter).

    Shapes: ``features (B, C, N)``, ``idx (B, N, k)`` -> ``(B, C, N, k)``
    """
    batch, channels, num_points = features.shape
    base = torch.arange(batch, device=idx.device).view(-1, 1, 1) * num_points
    flat = features.transpose(1, 2).reshape(batch * num_points, channels)
    neighbors = flat[(idx + base).reshape(-1)]
    return neighbors.view(batch, num_points, -1, channels).permute(0, 3, 1, 2)


def graph_feature(x: Tensor, k: int) -> Tensor:
    """The reference's ``get_graph_feature``: ``[x_j - x_i, x_i]`` over each point's kNN in x.

    Shapes: ``x (B, C, N) -> (B, 2C, N, k)``
    """
    neighbors = gather_neighbors(x, knn(x, k))
    centre = x.unsqueeze(-1).expand_as(neighbors)
    return torch.cat([neighbors - centre, centre], dim=1)


def edge_conv_first(block: nn.Sequential, x: Tensor, k: int) -> Tensor:
    """``block`` (Conv2d(2C, F, 1, bias=False), BatchNorm2d, LeakyReLU) over the kNN edge features of ``x``,
    computed per point and gathered (see the module docstring). Shapes: ``x (B, C, N) -> (B, F, N, k)``."""
    conv, norm, act = block[0], block[1], block[2]
    channels = x.shape[1]
    weight = conv.weight.flatten(1)  # (F, 2C): columns [neighbour - centre, centre]
    w_neighbor, w_centre = weight[:, :channels], weight[:, channels:]
    both = F.conv1d(x, torch.cat([w_neighbor, w_centre - w_neighbor]).unsqueeze(-1))  # (B, 2F, N)
    per_neighbor, per_centre = both.split(weight.shape[0], dim=1)
    edges = gather_neighbors(per_neighbor, knn(x, k)) + per_centre.unsqueeze(-1)
    return act(norm(edges))


def _edge_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(negative_slope=NEGATIVE_SLOPE),
    )


def _point_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm1d(out_channels),
        nn.LeakyReLU(negative_slope=NEGATIVE_SLOPE),
    )


def _leaky(x: Tensor) -> Tensor:
    return F.leaky_relu(x, negative_slope=NEGATIVE_SLOPE)


class DgcnnClassifier(nn.Module):
    """``DGCNN_cls``: four EdgeConvs (64, 64, 128, 256), conv5 to ``emb_dims``, max and mean over the points,
    then linear1 (512) / bn6 / dp1 / linear2 (256) / bn7 / dp2 / linear3.

    Shapes: ``points (B, N, C) -> logits (B, K)``
    """

    task = "classification"

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        k: int = DEFAULT_K,
        emb_dims: int = DEFAULT_EMB_DIMS,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if k < 1 or emb_dims < 1:
            raise ValueError(f"DGCNN needs k >= 1 and emb_dims >= 1, got k={k}, emb_dims={emb_dims}")
        self.k, self.emb_dims, self.in_channels = int(k), int(emb_dims), int(in_channels)
        self.conv1 = _edge_block(2 * in_channels, 64)
        self.conv2 = _edge_block(64 * 2, 64)
        self.conv3 = _edge_block(64 * 2, 128)
        self.conv4 = _edge_block(128 * 2, 256)
        self.conv5 = _point_block(512, emb_dims)
        self.linear1 = nn.Linear(emb_dims * 2, 512, bias=False)
        self.bn6 = nn.BatchNorm1d(512)
        self.dp1 = nn.Dropout(p=dropout)
        self.linear2 = nn.Linear(512, 256)
        self.bn7 = nn.BatchNorm1d(256)
        self.dp2 = nn.Dropout(p=dropout)
        self.linear3 = nn.Linear(256, num_classes)

    def forward(self, points: Tensor) -> Tensor:
        x = points.transpose(1, 2)  # (B, C, N)
        features = []
        for block in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = edge_conv_first(block, x, self.k).amax(dim=-1)
            features.append(x)
        x = self.conv5(torch.cat(features, dim=1))  # (B, emb_dims, N)
        x = torch.cat([x.amax(dim=-1), x.mean(dim=-1)], dim=1)
        x = self.dp1(_leaky(self.bn6(self.linear1(x))))
        x = self.dp2(_leaky(self.bn7(self.linear2(x))))
        return self.linear3(x)


class TransformNet(nn.Module):
    """The reference's ``Transform_Net``: a 3x3 alignment from the xyz kNN graph, initialised to the identity.

    ``bn3`` is the BatchNorm after ``linear1`` (the reference reassigns the name; ``conv3``'s own BatchNorm is
    ``conv3.1``). Shapes: ``edges (B, 6, N, k) -> (B, 3, 3)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _edge_block(6, 64)
        self.conv2 = _edge_block(64, 128)
        self.conv3 = _point_block(128, 1024)
        self.linear1 = nn.Linear(1024, 512, bias=False)
        self.bn3 = nn.BatchNorm1d(512)
        self.linear2 = nn.Linear(512, 256, bias=False)
        self.bn4 = nn.BatchNorm1d(256)
        self.transform = nn.Linear(256, 9)
        nn.init.zeros_(self.transform.weight)
        with torch.no_grad():
            self.transform.bias.copy_(torch.eye(3).flatten())

    def forward(self, x: Tensor, k: int) -> Tensor:
        x = self.conv2(edge_conv_first(self.conv1, x, k)).amax(dim=-1)  # (B, 128, N)
        x = self.conv3(x).amax(dim=-1)  # (B, 1024)
        x = _leaky(self.bn3(self.linear1(x)))
        x = _leaky(self.bn4(self.linear2(x)))
        return self.transform(x).view(-1, 3, 3)


class DgcnnPartSegmenter(nn.Module):
    """``DGCNN_partseg``: the transform net, three EdgeConvs (conv1+conv2, conv3+conv4, conv5; 64 wide), conv6
    to ``emb_dims`` and its max over the points, the category through conv7 (64), then conv8..conv11 per point
    over [global, category, x1, x2, x3].

    The reference's categorical vector is a one-hot (B, 16) float input; here the category is an index
    (B,) and the one-hot a Gather on an identity matrix inside the graph (one plain ONNX op).

    Shapes: ``points (B, N, 3), category (B,) int64 -> logits (B, N, P)``
    """

    task = "part_segmentation"

    def __init__(
        self,
        num_parts: int,
        num_categories: int,
        in_channels: int = 3,
        k: int = DEFAULT_K,
        emb_dims: int = DEFAULT_EMB_DIMS,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if in_channels != 3:
            raise ValueError("DGCNN part segmentation takes xyz only (the transform net aligns 3 channels)")
        if k < 1 or emb_dims < 1 or num_categories < 1:
            raise ValueError(f"DGCNN needs k, emb_dims, num_categories >= 1, got {k}, {emb_dims}, {num_categories}")
        self.k, self.emb_dims, self.num_categories = int(k), int(emb_dims), int(num_categories)
        self.transform_net = TransformNet()
        self.conv1 = _edge_block(6, 64)
        self.conv2 = _edge_block(64, 64)
        self.conv3 = _edge_block(64 * 2, 64)
        self.conv4 = _edge_block(64, 64)
        self.conv5 = _edge_block(64 * 2, 64)
        self.conv6 = _point_block(192, emb_dims)
        self.conv7 = _point_block(num_categories, 64)
        self.conv8 = _point_block(emb_dims + 64 + 192, 256)
        self.dp1 = nn.Dropout(p=dropout)
        self.conv9 = _point_block(256, 256)
        self.dp2 = nn.Dropout(p=dropout)
        self.conv10 = _point_block(256, 128)
        self.conv11 = nn.Conv1d(128, num_parts, kernel_size=1, bias=False)
        self.register_buffer("category_eye", torch.eye(num_categories), persistent=False)

    def forward(self, points: Tensor, category: Tensor) -> Tensor:
        x = points.transpose(1, 2)  # (B, 3, N)
        t = self.transform_net(x, self.k)
        x = torch.bmm(x.transpose(2, 1), t).transpose(2, 1)
        x1 = self.conv2(edge_conv_first(self.conv1, x, self.k)).amax(dim=-1)
        x2 = self.conv4(edge_conv_first(self.conv3, x1, self.k)).amax(dim=-1)
        x3 = edge_conv_first(self.conv5, x2, self.k).amax(dim=-1)
        per_point = torch.cat([x1, x2, x3], dim=1)  # (B, 192, N)
        global_feature = self.conv6(per_point).amax(dim=-1)  # (B, emb_dims)
        one_hot = self.category_eye[category.long()]  # (B, num_categories)
        label = self.conv7(one_hot.unsqueeze(-1)).squeeze(-1)  # (B, 64)
        x = self._conv8(torch.cat([global_feature, label], dim=1), per_point)
        x = self.dp1(x)
        x = self.dp2(self.conv9(x))
        x = self.conv10(x)
        return self.conv11(x).transpose(1, 2)

    def _conv8(self, per_cloud: Tensor, per_point: Tensor) -> Tensor:
        """conv8 over ``[global, category, x1, x2, x3]`` with the per-cloud part computed once per cloud.

        Shapes: per_cloud (B, emb_dims + 64), per_point (B, 192, N) -> (B, 256, N)
        """
        conv, norm, act = self.conv8[0], self.conv8[1], self.conv8[2]
        weight = conv.weight.squeeze(-1)  # (256, emb_dims + 64 + 192)
        split = per_cloud.shape[1]
        x = F.conv1d(per_point, weight[:, split:].unsqueeze(-1)) + (per_cloud @ weight[:, :split].T).unsqueeze(-1)
        return act(norm(x))


__all__ = [
    "DEFAULT_EMB_DIMS",
    "DEFAULT_K",
    "DgcnnClassifier",
    "DgcnnPartSegmenter",
    "TransformNet",
    "edge_conv_first",
    "gather_neighbors",
    "graph_feature",
    "knn",
]
