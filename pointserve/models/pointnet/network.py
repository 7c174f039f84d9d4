"""PointNet (Qi et al., CVPR 2017): classification, semantic segmentation and part segmentation.

Two layouts of the same network are supported, so weights trained elsewhere can be served:

* ``layout="paper"``: the paper's encoder, mlp(64, 64) -> feature T-Net -> mlp(64, 128, 1024), with a
  ReLU after every layer.
* ``layout="pointnet.pytorch"``: the layout of github.com/fxia22/pointnet.pytorch, mlp(64) -> feature
  T-Net -> mlp(128, 1024) with no ReLU after the last (1024) layer.

Both output raw logits; pointnet.pytorch returns ``log_softmax`` of the same numbers.

Shapes:
    points:   (B, N, C) float32, xyz first (the T-Net aligns xyz; extra channels pass through)
    category: (B,) int64 object category (part segmentation only)
    logits:   (B, K) classification, (B, N, P) segmentation
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

LAYOUTS = ("paper", "pointnet.pytorch")


def _conv_bn(in_ch: int, out_ch: int) -> nn.Module:
    block = nn.Module()
    block.conv = nn.Conv1d(in_ch, out_ch, 1)
    block.bn = nn.BatchNorm1d(out_ch)
    return block


class SharedMLP(nn.Module):
    """Per-point MLP as 1x1 convolutions with batch norm; ReLU after each layer unless switched off.

    Shapes: ``x: (B, C_in, N) -> (B, C_out, N)``.
    """

    def __init__(self, in_channels: int, widths: Sequence[int], last_relu: bool = True):
        super().__init__()
        self.layers = nn.ModuleList()
        for width in widths:
            self.layers.append(_conv_bn(in_channels, width))
            in_channels = width
        self.last_relu = last_relu
        self.out_channels = in_channels

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """Apply layers ``start, start + 1, ...`` to ``x``, the input of layer ``start``."""
        last = len(self.layers) - 1
        for i in range(start, len(self.layers)):
            layer = self.layers[i]
            x = layer.bn(layer.conv(x))
            if i < last or self.last_relu:
                x = torch.relu(x)
        return x


class TNet(nn.Module):
    """Predicts a k x k alignment matrix from a cloud (the paper's T-Net), initialised near identity.

    Shapes: ``x: (B, k, N) -> (B, k, k)``.
    """

    def __init__(self, k: int):
        super().__init__()
        self.k = k
        self.conv1, self.conv2, self.conv3 = nn.Conv1d(k, 64, 1), nn.Conv1d(64, 128, 1), nn.Conv1d(128, 1024, 1)
        self.fc1, self.fc2, self.fc3 = nn.Linear(1024, 512), nn.Linear(512, 256), nn.Linear(256, k * k)
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm1d(64), nn.BatchNorm1d(128), nn.BatchNorm1d(1024)
        self.bn4, self.bn5 = nn.BatchNorm1d(512), nn.BatchNorm1d(256)
        self.register_buffer("identity", torch.eye(k).flatten(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.bn3(self.conv3(x)))
        x = torch.amax(x, dim=2)
        x = torch.relu(self.bn4(self.fc1(x)))
        x = torch.relu(self.bn5(self.fc2(x)))
        x = self.fc3(x) + self.identity
        return x.view(-1, self.k, self.k)


def orthogonality_loss(transform: Tensor) -> Tensor:
    """The feature-transform regulariser ||I - A A^T||_F^2, averaged over the batch. ``transform: (B, k, k)``."""
    eye = torch.eye(transform.shape[1], device=transform.device, dtype=transform.dtype)
    diff = eye - torch.bmm(transform, transform.transpose(1, 2))
    return diff.pow(2).sum(dim=(1, 2)).mean()


class PointNetEncoder(nn.Module):
    """Input T-Net, shared MLPs, optional feature T-Net, and the global max pool.

    Shapes:
        points: (B, N, C)
        returns global feature (B, 1024), point feature (B, 64, N), feature transform (B, 64, 64) or None
    """

    def __init__(self, in_channels: int = 3, feature_transform: bool = False, layout: str = "paper"):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"unknown PointNet layout {layout!r}; choose one of {LAYOUTS}")
        if in_channels < 3:
            raise ValueError("PointNet needs at least the 3 xyz channels")
        paper = layout == "paper"
        self.in_channels = in_channels
        self.input_tnet = TNet(3)
        self.mlp1 = SharedMLP(in_channels, (64, 64) if paper else (64,))
        self.feature_tnet = TNet(64) if feature_transform else None
        self.mlp2 = SharedMLP(64, (64, 128, 1024) if paper else (128, 1024), last_relu=paper)
        self.global_channels = 1024
        self.point_channels = 64

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        x = points.transpose(1, 2)  # (B, C, N)
        xyz = x[:, :3]
        xyz = torch.bmm(self.input_tnet(xyz).transpose(1, 2), xyz)  # rows of points times A
        x = torch.cat([xyz, x[:, 3:]], dim=1) if self.in_channels > 3 else xyz
        x = self.mlp1(x)
        feature_transform = None
        if self.feature_tnet is not None:
            feature_transform = self.feature_tnet(x)
            x = torch.bmm(feature_transform.transpose(1, 2), x)
        point_feature = x
        global_feature = torch.amax(self.mlp2(x), dim=2)
        return global_feature, point_feature, feature_transform


class PointNetClassifier(nn.Module):
    """PointNet classification network.

    Shapes:
        points: (B, N, C) -> logits: (B, K)
    """

    task = "classification"

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        feature_transform: bool = False,
        dropout: float = 0.3,
        layout: str = "paper",
    ):
        super().__init__()
        self.encoder = PointNetEncoder(in_channels, feature_transform, layout)
        self.fc1, self.bn1 = nn.Linear(1024, 512), nn.BatchNorm1d(512)
        self.fc2, self.bn2 = nn.Linear(512, 256), nn.BatchNorm1d(256)
        self.dropout = nn.Dropout(p=dropout)
        self.fc3 = nn.Linear(256, num_classes)

    def forward_with_transform(self, points: Tensor) -> tuple[Tensor, Tensor | None]:
        """Logits and the feature transform (for the orthogonality regulariser during training)."""
        x, _, feature_transform = self.encoder(points)
        x = torch.relu(self.bn1(self.fc1(x)))
        x = torch.relu(self.bn2(self.dropout(self.fc2(x))))
        return self.fc3(x), feature_transform

    def forward(self, points: Tensor) -> Tensor:
        return self.forward_with_transform(points)[0]


class PointNetSegmenter(nn.Module):
    """PointNet segmentation network: per-point logits from [global feature, point feature (, category)].

    With ``num_categories > 0`` it is the paper's part-segmentation model, which also takes the object
    category (as an index, turned into a one-hot vector inside the graph); without, semantic segmentation.

    Shapes:
        points: (B, N, C), category: (B,) int64 (part segmentation) -> logits: (B, N, P)
    """

    def __init__(
        self,
        num_parts: int,
        in_channels: int = 3,
        feature_transform: bool = False,
        num_categories: int = 0,
        layout: str = "paper",
    ):
        super().__init__()
        self.task = "part_segmentation" if num_categories else "semantic_segmentation"
        self.num_categories = num_categories
        self.encoder = PointNetEncoder(in_channels, feature_transform, layout)
        in_head = self.encoder.global_channels + self.encoder.point_channels + num_categories
        self.head = SharedMLP(in_head, (512, 256, 128))
        self.classifier = nn.Conv1d(128, num_parts, 1)
        if num_categories:
            # A Gather on an identity matrix rather than one_hot: exports to one plain ONNX op.
            self.register_buffer("category_eye", torch.eye(num_categories), persistent=False)

    def forward_with_transform(self, points: Tensor, category: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        global_feature, point_feature, feature_transform = self.encoder(points)
        context = [global_feature]
        if self.num_categories:
            if category is None:
                raise ValueError("part segmentation needs the object category")
            context.append(self.category_eye[category.long()])
        x = self._first_head_layer(point_feature, torch.cat(context, dim=1))
        x = self.head(x, start=1)
        logits = self.classifier(x).transpose(1, 2)
        return logits, feature_transform

    def forward(self, points: Tensor, category: Tensor | None = None) -> Tensor:
        return self.forward_with_transform(points, category)[0]

    def _first_head_layer(self, point_feature: Tensor, context: Tensor) -> Tensor:
        """The head's first 1x1 convolution over [global, point feature, category], computed without
        repeating the per-cloud part for every point.

        The global feature and the category are the same for every point of a cloud, so their share of the
        convolution is one (B, 512) matrix product per cloud, broadcast over the points. Exactly the same
        function as convolving the concatenation (the weights are the same 1088(+K)-column kernel), at half
        the cost of the whole network: it was 1024 x 512 multiply-adds per point.

        Shapes: point_feature (B, 64, N), context (B, 1024 + K) -> (B, 512, N)
        """
        layer = self.head.layers[0]
        weight = layer.conv.weight.squeeze(2)  # (512, 1024 + 64 + K), columns [global, point, category]
        g, p = self.encoder.global_channels, self.encoder.point_channels
        per_point = torch.nn.functional.conv1d(point_feature, layer.conv.weight[:, g : g + p])
        per_cloud = context @ torch.cat([weight[:, :g], weight[:, g + p :]], dim=1).T + layer.conv.bias
        return torch.relu(layer.bn(per_point + per_cloud.unsqueeze(2)))
