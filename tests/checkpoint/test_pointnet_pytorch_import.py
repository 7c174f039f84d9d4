"""Import of pointnet.pytorch checkpoints, checked against an independent re-implementation of its forward pass.

The state dicts below have exactly the key names, shapes and order that github.com/fxia22/pointnet.pytorch's
``PointNetCls`` / ``PointNetDenseCls`` save (``torch.save(model.state_dict(), path)``), filled with random weights
and random batch-norm statistics so every layer, batch norm included, changes the answer. The reference forward
pass is rewritten here with plain ``torch.nn.functional`` ops straight from that state dict (eval mode), sharing
no code with pointserve.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from reference_states import batch_norm_entries, random_tensor, varied_clouds
from safetensors.torch import save_file

from pointserve import cli
from pointserve.checkpoint import load_checkpoint
from pointserve.checkpoint.importers.pointnet_pytorch import import_pointnet_pytorch
from pointserve.errors import CheckpointError, ConfigError

# ---------------------------------------------------------------------------------------------------------------
# The reference's state-dict layout: (key, shape, role), in the order torch writes it.


def _conv(name: str, cin: int, cout: int) -> list[tuple[str, tuple[int, ...], str]]:
    return [(f"{name}.weight", (cout, cin, 1), "weight"), (f"{name}.bias", (cout,), "bias")]


def _linear(name: str, cin: int, cout: int) -> list[tuple[str, tuple[int, ...], str]]:
    return [(f"{name}.weight", (cout, cin), "weight"), (f"{name}.bias", (cout,), "bias")]


_bn = batch_norm_entries


def _stn(prefix: str, k: int) -> list[tuple[str, tuple[int, ...], str]]:
    # STN3d / STNkd register conv1-3, fc1-3, relu, bn1-5 in that order.
    return [
        *_conv(f"{prefix}.conv1", k, 64),
        *_conv(f"{prefix}.conv2", 64, 128),
        *_conv(f"{prefix}.conv3", 128, 1024),
        *_linear(f"{prefix}.fc1", 1024, 512),
        *_linear(f"{prefix}.fc2", 512, 256),
        *_linear(f"{prefix}.fc3", 256, k * k),
        *_bn(f"{prefix}.bn1", 64),
        *_bn(f"{prefix}.bn2", 128),
        *_bn(f"{prefix}.bn3", 1024),
        *_bn(f"{prefix}.bn4", 512),
        *_bn(f"{prefix}.bn5", 256),
    ]


def reference_layout(kind: str, k: int, feature_transform: bool) -> list[tuple[str, tuple[int, ...], str]]:
    """Keys and shapes of ``PointNetCls(k, feature_transform)`` (kind "cls") or ``PointNetDenseCls`` ("dense")."""
    feat = [
        *_stn("feat.stn", 3),
        *_conv("feat.conv1", 3, 64),
        *_conv("feat.conv2", 64, 128),
        *_conv("feat.conv3", 128, 1024),
        *_bn("feat.bn1", 64),
        *_bn("feat.bn2", 128),
        *_bn("feat.bn3", 1024),
        *(_stn("feat.fstn", 64) if feature_transform else []),
    ]
    if kind == "cls":
        head = [
            *_linear("fc1", 1024, 512),
            *_linear("fc2", 512, 256),
            *_linear("fc3", 256, k),
            *_bn("bn1", 512),
            *_bn("bn2", 256),
        ]
    else:
        head = [
            *_conv("conv1", 1088, 512),
            *_conv("conv2", 512, 256),
            *_conv("conv3", 256, 128),
            *_conv("conv4", 128, k),
            *_bn("bn1", 512),
            *_bn("bn2", 256),
            *_bn("bn3", 128),
        ]
    return feat + head


def random_reference_state(kind: str, k: int, feature_transform: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape, role in reference_layout(kind, k, feature_transform):
        if role == "weight":
            fan_in = shape[1] * (shape[2] if len(shape) == 3 else 1)
            # T-Net outputs stay near the identity, as trained ones do; the rest keeps activations O(1).
            scale = 0.2 if key.endswith("fc3.weight") and "stn" in key else 1.0
            value = torch.randn(shape, generator=gen) * scale / fan_in**0.5
        else:
            value = random_tensor(role, shape, gen, count=1234)
        state[key] = value
    return state


# ---------------------------------------------------------------------------------------------------------------
# The reference forward pass, eval mode, from the state dict alone. Input (B, 3, N) as the reference takes it.


def _f_conv(x, sd, name):
    return F.conv1d(x, sd[f"{name}.weight"], sd[f"{name}.bias"])


def _f_linear(x, sd, name):
    return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])


_CALIBRATION: dict[str, torch.Generator] = {}


def _f_bn(x, sd, name):
    if _CALIBRATION:
        _calibrate(x, sd, name, _CALIBRATION["gen"])
    mean, var = sd[f"{name}.running_mean"], sd[f"{name}.running_var"]
    return F.batch_norm(x, mean, var, sd[f"{name}.weight"], sd[f"{name}.bias"], training=False, eps=1e-5)


def _calibrate(x, sd, name, gen):
    """Running statistics near the batch's own, then perturbed: like a trained network's, and still random."""
    dims = [0, 2] if x.ndim == 3 else [0]
    mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
    noise = torch.randn(mean.shape, generator=gen)
    sd[f"{name}.running_mean"] = mean + 0.2 * var.sqrt() * noise
    sd[f"{name}.running_var"] = var * (0.6 + 0.8 * torch.rand(var.shape, generator=gen)) + 1e-3


def _f_stn(x, sd, prefix, k):
    for i in (1, 2, 3):
        x = F.relu(_f_bn(_f_conv(x, sd, f"{prefix}.conv{i}"), sd, f"{prefix}.bn{i}"))
    x = torch.max(x, 2, keepdim=True)[0].view(-1, 1024)
    x = F.relu(_f_bn(_f_linear(x, sd, f"{prefix}.fc1"), sd, f"{prefix}.bn4"))
    x = F.relu(_f_bn(_f_linear(x, sd, f"{prefix}.fc2"), sd, f"{prefix}.bn5"))
    x = _f_linear(x, sd, f"{prefix}.fc3") + torch.eye(k).flatten().view(1, k * k)
    return x.view(-1, k, k)


def _f_feat(x, sd, feature_transform, global_feat):
    n_pts = x.shape[2]
    trans = _f_stn(x, sd, "feat.stn", 3)
    x = torch.bmm(x.transpose(2, 1), trans).transpose(2, 1)
    x = F.relu(_f_bn(_f_conv(x, sd, "feat.conv1"), sd, "feat.bn1"))
    if feature_transform:
        trans_feat = _f_stn(x, sd, "feat.fstn", 64)
        x = torch.bmm(x.transpose(2, 1), trans_feat).transpose(2, 1)
    pointfeat = x
    x = F.relu(_f_bn(_f_conv(x, sd, "feat.conv2"), sd, "feat.bn2"))
    x = _f_bn(_f_conv(x, sd, "feat.conv3"), sd, "feat.bn3")  # no ReLU here in the reference
    x = torch.max(x, 2, keepdim=True)[0].view(-1, 1024)
    if global_feat:
        return x
    return torch.cat([x.view(-1, 1024, 1).repeat(1, 1, n_pts), pointfeat], 1)


def reference_log_probs(kind: str, sd, points_bcn: torch.Tensor, feature_transform: bool) -> torch.Tensor:
    """log-probabilities (B, K) for PointNetCls, (B, N, K) for PointNetDenseCls."""
    if kind == "cls":
        x = _f_feat(points_bcn, sd, feature_transform, global_feat=True)
        x = F.relu(_f_bn(_f_linear(x, sd, "fc1"), sd, "bn1"))
        x = F.relu(_f_bn(_f_linear(x, sd, "fc2"), sd, "bn2"))  # dropout is the identity in eval mode
        return F.log_softmax(_f_linear(x, sd, "fc3"), dim=1)
    batch, n_pts = points_bcn.shape[0], points_bcn.shape[2]
    x = _f_feat(points_bcn, sd, feature_transform, global_feat=False)
    for i in (1, 2, 3):
        x = F.relu(_f_bn(_f_conv(x, sd, f"conv{i}"), sd, f"bn{i}"))
    x = _f_conv(x, sd, "conv4").transpose(2, 1).contiguous()
    k = x.shape[2]
    return F.log_softmax(x.view(-1, k), dim=-1).view(batch, n_pts, k)


def calibrate_batch_norm(kind: str, sd, feature_transform: bool, seed: int = 0) -> None:
    """Give every batch norm of ``sd`` statistics near those of some unit-sphere clouds (in place).

    Purely random statistics leave a random network's answer the same for every input, which would make the
    comparison with the reference say little; trained networks see normalised activations.
    """
    _CALIBRATION["gen"] = torch.Generator().manual_seed(seed)
    try:
        with torch.no_grad():
            reference_log_probs(kind, sd, varied_clouds(16, 64, seed=seed + 100).transpose(1, 2), feature_transform)
    finally:
        _CALIBRATION.clear()


def trained_like_state(kind: str, k: int, feature_transform: bool, seed: int) -> dict[str, torch.Tensor]:
    state = random_reference_state(kind, k, feature_transform, seed)
    calibrate_batch_norm(kind, state, feature_transform, seed)
    return state


# ---------------------------------------------------------------------------------------------------------------


def run_cli(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    # The real `pointserve` entry point (parsing, dispatch, one-line errors) with only this stage's commands
    # registered, so these tests do not depend on other stages' command modules.
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("pointserve.checkpoint.commands",))
    return cli.main(list(argv))


NUM_OUTPUTS = {"cls": 5, "dense": 4}


def assert_matches_reference(model, kind, state, feature_transform, batch=6, num_points=41) -> None:
    points = varied_clouds(batch, num_points)
    with torch.no_grad():
        ours = F.log_softmax(model(points), dim=-1)
        reference = reference_log_probs(kind, state, points.transpose(1, 2), feature_transform)
    assert ours.shape == reference.shape
    max_diff = (ours - reference).abs().max().item()
    assert max_diff <= 1e-5, f"log-probabilities differ by {max_diff}"
    assert torch.equal(ours.argmax(-1), reference.argmax(-1))
    # The comparison means something only if the answers vary.
    assert reference.argmax(-1).unique().numel() > 1


@pytest.mark.parametrize("feature_transform", [False, True], ids=["plain", "feature_transform"])
@pytest.mark.parametrize("kind", ["cls", "dense"])
def test_imported_pth_matches_the_reference(tmp_path, monkeypatch, kind, feature_transform) -> None:
    k = NUM_OUTPUTS[kind]
    state = trained_like_state(kind, k, feature_transform, seed=3 + feature_transform)
    pth = tmp_path / f"{kind}_model_24.pth"
    torch.save(state, pth)
    names = [f"label{i}" for i in range(k)]
    out = tmp_path / "ckpt"
    rc = run_cli(
        monkeypatch,
        "import-checkpoint",
        str(pth),
        "--format",
        "pointnet.pytorch",
        "--classes",
        ",".join(names),
        "-o",
        str(out),
    )
    assert rc == 0
    model, card = load_checkpoint(out)
    assert card.architecture == ("pointnet_cls" if kind == "cls" else "pointnet_seg")
    assert card.task == ("classification" if kind == "cls" else "semantic_segmentation")
    assert card.config["layout"] == "pointnet.pytorch"
    assert card.config["feature_transform"] is feature_transform
    assert card.class_names == names
    assert card.num_outputs == k
    assert (card.num_points, card.normalization, card.in_channels) == (2500, "unit_sphere", 3)
    assert_matches_reference(model, kind, state, feature_transform)


def test_safetensors_state_dict_imports_the_same(tmp_path) -> None:
    state = trained_like_state("cls", 5, True, seed=7)
    path = tmp_path / "cls_model.safetensors"
    save_file(state, str(path))
    card = import_pointnet_pytorch(path, tmp_path / "ckpt", list("abcde"))
    model, loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded == card
    assert_matches_reference(model, "cls", state, True)


def test_old_checkpoints_import(tmp_path) -> None:
    # torch < 1.6 wrote the legacy (non-zip) format, torch < 0.4.1 had no num_batches_tracked, and
    # nn.DataParallel prefixes every key with "module.".
    state = trained_like_state("dense", 4, False, seed=11)
    old = {f"module.{key}": value for key, value in state.items() if not key.endswith("num_batches_tracked")}
    path = tmp_path / "seg_model_Chair_24.pth"
    torch.save(old, path, _use_new_zipfile_serialization=False)
    import_pointnet_pytorch(path, tmp_path / "ckpt", ["arm", "back", "leg", "seat"], num_points=1024)
    model, card = load_checkpoint(tmp_path / "ckpt")
    assert card.num_points == 1024
    assert card.part_names == ["arm", "back", "leg", "seat"]
    assert_matches_reference(model, "dense", state, False)


def _import_state(tmp_path: Path, state: dict[str, torch.Tensor], num_names: int = 5) -> None:
    path = tmp_path / "model.pth"
    torch.save(state, path)
    import_pointnet_pytorch(path, tmp_path / "ckpt", [f"c{i}" for i in range(num_names)])


def test_wrong_shape_names_the_key(tmp_path) -> None:
    state = random_reference_state("cls", 5, False)
    state["feat.conv2.weight"] = torch.zeros(128, 32, 1)
    with pytest.raises(CheckpointError, match=r"'feat\.conv2\.weight' has shape \(128, 32, 1\).*\(128, 64, 1\)"):
        _import_state(tmp_path, state)
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize(
    ("kind", "feature_transform", "missing"),
    [("cls", False, "feat.stn.bn4.running_var"), ("dense", True, "feat.fstn.fc3.bias"), ("dense", False, "bn3.weight")],
)
def test_missing_key_is_named(tmp_path, kind, feature_transform, missing) -> None:
    state = random_reference_state(kind, 5, feature_transform)
    del state[missing]
    with pytest.raises(CheckpointError, match=f"missing key '{missing}'"):
        _import_state(tmp_path, state)


def test_unexpected_key_is_named(tmp_path) -> None:
    state = random_reference_state("cls", 5, False)
    state["feat.conv4.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unexpected key 'feat\.conv4\.weight'"):
        _import_state(tmp_path, state)


def test_non_finite_weights_are_refused(tmp_path) -> None:
    state = random_reference_state("cls", 5, False)
    state["fc2.bias"][3] = float("nan")
    with pytest.raises(CheckpointError, match="'fc2.bias' contains NaN"):
        _import_state(tmp_path, state)


def test_class_count_must_match_the_outputs(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"3 class names given.*5 outputs"):
        _import_state(tmp_path, random_reference_state("cls", 5, False), num_names=3)


def test_pickled_module_is_refused_by_the_weights_only_loader(tmp_path) -> None:
    path = tmp_path / "whole_model.pth"
    torch.save({"layer": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(CheckpointError, match="torch.nn.modules.linear.Linear"):
        import_pointnet_pytorch(path, tmp_path / "ckpt", ["a", "b"])


def _assert_one_error_line(capsys, *fragments: str) -> None:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    "content",
    [b"this is not a checkpoint\n", b"PK\x03\x04 truncated zip", bytes(range(256))],
    ids=["text", "truncated-zip", "binary"],
)
def test_cli_bad_file_prints_one_error_line(tmp_path, monkeypatch, capsys, content) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    rc = run_cli(
        monkeypatch,
        "import-checkpoint",
        str(path),
        "--format",
        "pointnet.pytorch",
        "--classes",
        "a,b",
        "-o",
        str(tmp_path / "ckpt"),
    )
    assert rc == 2
    _assert_one_error_line(capsys, str(path))
    assert not (tmp_path / "ckpt").exists()


def test_cli_state_dict_of_another_network(tmp_path, monkeypatch, capsys) -> None:
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    rc = run_cli(
        monkeypatch,
        "import-checkpoint",
        str(path),
        "--format",
        "pointnet.pytorch",
        "--classes",
        "a",
        "-o",
        str(tmp_path / "ckpt"),
    )
    assert rc == 2
    _assert_one_error_line(capsys, "not a pointnet.pytorch PointNetCls or PointNetDenseCls")


def test_cli_dense_model_is_not_part_segmentation(tmp_path, monkeypatch, capsys) -> None:
    path = tmp_path / "seg.pth"
    torch.save(random_reference_state("dense", 3, False), path)
    rc = run_cli(
        monkeypatch,
        "import-checkpoint",
        str(path),
        "--format",
        "pointnet.pytorch",
        "--classes",
        "a,b,c",
        "--task",
        "part_segmentation",
        "-o",
        str(tmp_path / "ckpt"),
    )
    assert rc == 2
    _assert_one_error_line(capsys, "semantic_segmentation")


def test_cli_classes_file_in_modelnet_id_format(tmp_path, monkeypatch) -> None:
    # pointnet.pytorch's misc/modelnet_id.txt: "name<TAB>index" lines; the order of the lines does not matter.
    classes_file = tmp_path / "modelnet_id.txt"
    classes_file.write_text("bathtub\t1\nairplane\t0\nbench\t3\nbed\t2\ncar\t4\n")
    path = tmp_path / "cls.pth"
    torch.save(random_reference_state("cls", 5, False), path)
    rc = run_cli(
        monkeypatch,
        "import-checkpoint",
        str(path),
        "--format",
        "pointnet.pytorch",
        "--classes-file",
        str(classes_file),
        "--num-points",
        "1024",
        "-o",
        str(tmp_path / "ckpt"),
    )
    assert rc == 0
    card = json.loads((tmp_path / "ckpt" / "card.json").read_text())
    assert card["class_names"] == ["airplane", "bathtub", "bed", "bench", "car"]
    assert card["num_points"] == 1024
