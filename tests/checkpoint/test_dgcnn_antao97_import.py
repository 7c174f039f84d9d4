"""Import of dgcnn.pytorch checkpoints, checked against an independent re-implementation of its forward pass.

The state dicts below have the key names and shapes that github.com/antao97/dgcnn.pytorch's ``DGCNN_cls`` and
``DGCNN_partseg`` save from ``nn.DataParallel`` (``module.`` prefix; every Sequential's BatchNorm also under its
alias ``bn1``..), filled with random weights and batch-norm statistics near those of real activations. The
reference forward pass (its ``knn``, ``get_graph_feature``, ``Transform_Net``, the heads) is rewritten here
with plain ``torch.nn.functional`` ops straight from the state dict (eval mode), sharing no code with pointserve:
it convolves the concatenated edge features as the reference does (pointserve convolves per point and gathers).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from reference_states import Layout, batch_norm_entries, random_tensor, varied_clouds
from safetensors.torch import save_file

from pointserve import cli
from pointserve.checkpoint import load_checkpoint
from pointserve.checkpoint.importers.dgcnn_antao97 import import_dgcnn_antao97
from pointserve.errors import CheckpointError, ConfigError

# ---------------------------------------------------------------------------------------------------------------
# The reference's state-dict layout: (key, shape, role), and its BatchNorm aliases (bnX is convX.1).

_bn = batch_norm_entries


def _w(name: str, shape: tuple[int, ...]) -> Layout:
    return [(name, shape, "weight")]


def cls_layout(num_classes: int, emb_dims: int, channels: int = 3) -> tuple[Layout, dict[str, str]]:
    widths = [64, 64, 128, 256]
    ins = [2 * channels, 128, 128, 256]
    layout: Layout = []
    for i, w in enumerate(widths, 1):
        layout += _bn(f"bn{i}", w)
    layout += _bn("bn5", emb_dims)
    for i, (cin, w) in enumerate(zip(ins, widths, strict=True), 1):
        layout += _w(f"conv{i}.0.weight", (w, cin, 1, 1)) + _bn(f"conv{i}.1", w)
    layout += _w("conv5.0.weight", (emb_dims, 512, 1)) + _bn("conv5.1", emb_dims)
    layout += _w("linear1.weight", (512, 2 * emb_dims)) + _bn("bn6", 512)
    layout += [("linear2.weight", (256, 512), "weight"), ("linear2.bias", (256,), "bias"), *_bn("bn7", 256)]
    layout += [("linear3.weight", (num_classes, 256), "weight"), ("linear3.bias", (num_classes,), "bias")]
    return layout, {f"bn{i}": f"conv{i}.1" for i in range(1, 6)}


def partseg_layout(num_parts: int, num_categories: int = 16, emb_dims: int = 1024) -> tuple[Layout, dict[str, str]]:
    t = "transform_net"
    layout: Layout = [*_bn(f"{t}.bn1", 64), *_bn(f"{t}.bn2", 128), *_bn(f"{t}.bn3", 512)]
    layout += _w(f"{t}.conv1.0.weight", (64, 6, 1, 1)) + _bn(f"{t}.conv1.1", 64)
    layout += _w(f"{t}.conv2.0.weight", (128, 64, 1, 1)) + _bn(f"{t}.conv2.1", 128)
    layout += _w(f"{t}.conv3.0.weight", (1024, 128, 1)) + _bn(f"{t}.conv3.1", 1024)
    layout += _w(f"{t}.linear1.weight", (512, 1024)) + _w(f"{t}.linear2.weight", (256, 512)) + _bn(f"{t}.bn4", 256)
    layout += [(f"{t}.transform.weight", (9, 256), "transform"), (f"{t}.transform.bias", (9,), "eye")]
    bns = [64, 64, 64, 64, 64, emb_dims, 64, 256, 256, 128]
    for i, c in enumerate(bns, 1):
        layout += _bn(f"bn{i}", c)
    convs = [
        (64, 6, 4), (64, 64, 4), (64, 128, 4), (64, 64, 4), (64, 128, 4),
        (emb_dims, 192, 3), (64, num_categories, 3), (256, emb_dims + 64 + 192, 3), (256, 256, 3), (128, 256, 3),
    ]  # fmt: skip
    for i, (cout, cin, ndim) in enumerate(convs, 1):
        layout += _w(f"conv{i}.0.weight", (cout, cin) + (1,) * (ndim - 2)) + _bn(f"conv{i}.1", cout)
    layout += _w("conv11.weight", (num_parts, 128, 1))
    aliases = {f"bn{i}": f"conv{i}.1" for i in range(1, 11)}
    aliases |= {f"{t}.bn1": f"{t}.conv1.1", f"{t}.bn2": f"{t}.conv2.1"}
    return layout, aliases


def random_state(layout: Layout, aliases: dict[str, str], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape, role in layout:
        if role == "weight":
            fan_in = 1
            for size in shape[1:]:
                fan_in *= size
            value = torch.randn(shape, generator=gen) / fan_in**0.5
        elif role == "transform":
            value = torch.randn(shape, generator=gen) * 0.02
        elif role == "eye":
            value = torch.eye(3).flatten() + torch.randn(shape, generator=gen) * 0.05
        else:
            value = random_tensor(role, shape, gen, count=777)
        state[key] = value
    for alias, original in aliases.items():  # one module under two names: the same tensors
        for field in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            state[f"{original}.{field}"] = state[f"{alias}.{field}"]
    return state


# ---------------------------------------------------------------------------------------------------------------
# The reference forward pass, eval mode, from the state dict alone. Input (B, 3, N) as the reference takes it.

_CALIBRATE: dict[str, object] = {}


def _f_bn(x, sd, name):
    if _CALIBRATE:
        dims = [d for d in range(x.ndim) if d != 1]
        mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
        gen = _CALIBRATE["gen"]
        names = [name, *[a for a, o in _CALIBRATE["aliases"].items() if o == name]]
        names += [o for a, o in _CALIBRATE["aliases"].items() if a == name]
        new_mean = mean + 0.2 * var.sqrt() * torch.randn(mean.shape, generator=gen)
        new_var = var * (0.6 + 0.8 * torch.rand(var.shape, generator=gen)) + 1e-3
        for n in names:
            sd[f"{n}.running_mean"], sd[f"{n}.running_var"] = new_mean, new_var
    return F.batch_norm(
        x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5
    )


def _lrelu(x):
    return F.leaky_relu(x, 0.2)


def ref_knn(x, k):
    inner = -2 * torch.matmul(x.transpose(2, 1), x)
    xx = torch.sum(x**2, dim=1, keepdim=True)
    pairwise_distance = -xx - inner - xx.transpose(2, 1)
    return pairwise_distance.topk(k=k, dim=-1)[1]


def ref_graph_feature(x, k):
    batch_size, num_dims, num_points = x.shape
    idx = ref_knn(x, k) + torch.arange(0, batch_size).view(-1, 1, 1) * num_points
    xt = x.transpose(2, 1).contiguous()
    feature = xt.view(batch_size * num_points, -1)[idx.view(-1), :].view(batch_size, num_points, k, num_dims)
    xt = xt.view(batch_size, num_points, 1, num_dims).repeat(1, 1, k, 1)
    return torch.cat((feature - xt, xt), dim=3).permute(0, 3, 1, 2)


def _block(x, sd, conv, bn):
    """Sequential(Conv(bias=False), BN, LeakyReLU(0.2)); conv2d or conv1d by the weight's rank."""
    weight = sd[f"{conv}.0.weight"]
    y = F.conv2d(x, weight) if weight.ndim == 4 else F.conv1d(x, weight)
    return _lrelu(_f_bn(y, sd, bn))


def reference_cls(sd, x, k):
    batch_size = x.size(0)
    feats = []
    for i in (1, 2, 3, 4):
        x = _block(ref_graph_feature(x, k), sd, f"conv{i}", f"bn{i}").max(dim=-1)[0]
        feats.append(x)
    x = _block(torch.cat(feats, dim=1), sd, "conv5", "bn5")
    x = torch.cat(
        (F.adaptive_max_pool1d(x, 1).view(batch_size, -1), F.adaptive_avg_pool1d(x, 1).view(batch_size, -1)), 1
    )
    x = _lrelu(_f_bn(F.linear(x, sd["linear1.weight"]), sd, "bn6"))
    x = _lrelu(_f_bn(F.linear(x, sd["linear2.weight"], sd["linear2.bias"]), sd, "bn7"))
    return F.linear(x, sd["linear3.weight"], sd["linear3.bias"])


def reference_transform(sd, x0):
    t = "transform_net"
    x = _block(x0, sd, f"{t}.conv1", f"{t}.bn1")
    x = _block(x, sd, f"{t}.conv2", f"{t}.bn2").max(dim=-1)[0]
    x = _block(x, sd, f"{t}.conv3", f"{t}.conv3.1").max(dim=-1)[0]  # conv3's own BN (bn3 is renamed later)
    x = _lrelu(_f_bn(F.linear(x, sd[f"{t}.linear1.weight"]), sd, f"{t}.bn3"))
    x = _lrelu(_f_bn(F.linear(x, sd[f"{t}.linear2.weight"]), sd, f"{t}.bn4"))
    return F.linear(x, sd[f"{t}.transform.weight"], sd[f"{t}.transform.bias"]).view(-1, 3, 3)


def reference_partseg(sd, x, one_hot, k):
    batch_size, num_points = x.size(0), x.size(2)
    t = reference_transform(sd, ref_graph_feature(x, k))
    x = torch.bmm(x.transpose(2, 1), t).transpose(2, 1)
    x = _block(_block(ref_graph_feature(x, k), sd, "conv1", "bn1"), sd, "conv2", "bn2")
    x1 = x.max(dim=-1)[0]
    x = _block(_block(ref_graph_feature(x1, k), sd, "conv3", "bn3"), sd, "conv4", "bn4")
    x2 = x.max(dim=-1)[0]
    x3 = _block(ref_graph_feature(x2, k), sd, "conv5", "bn5").max(dim=-1)[0]
    x = _block(torch.cat((x1, x2, x3), dim=1), sd, "conv6", "bn6").max(dim=-1, keepdim=True)[0]
    label = _block(one_hot.view(batch_size, -1, 1), sd, "conv7", "bn7")
    x = torch.cat((x, label), dim=1).repeat(1, 1, num_points)
    x = _block(torch.cat((x, x1, x2, x3), dim=1), sd, "conv8", "bn8")
    x = _block(x, sd, "conv9", "bn9")
    x = _block(x, sd, "conv10", "bn10")
    return F.conv1d(x, sd["conv11.weight"])  # (B, P, N)


def reference(kind, sd, points_bnc, category, num_categories, k):
    """The reference's answer in our layout: (B, K) or (B, N, P)."""
    x = points_bnc.transpose(1, 2)
    if kind == "cls":
        return reference_cls(sd, x, k)
    return reference_partseg(sd, x, F.one_hot(category, num_categories).to(points_bnc.dtype), k).transpose(1, 2)


def trained_like_state(kind: str, outputs: int, seed: int, k: int, emb_dims: int = 64) -> dict[str, torch.Tensor]:
    layout, aliases = cls_layout(outputs, emb_dims) if kind == "cls" else partseg_layout(outputs)
    state = random_state(layout, aliases, seed)
    _CALIBRATE.update(gen=torch.Generator().manual_seed(seed), aliases=aliases)
    try:
        with torch.no_grad():
            clouds = varied_clouds(8, 64, seed=seed + 100)
            reference(kind, state, clouds, torch.arange(8) % 16, 16, k)
    finally:
        _CALIBRATE.clear()
    return state


def run_cli(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("pointserve.checkpoint.commands",))
    return cli.main(list(argv))


def assert_matches_reference(model, kind, state, k, batch=4, num_points=50) -> float:
    """Ours vs the reference in float64 (<= 1e-5, same argmax), and in float32 (same argmax, <= 1e-4).

    float64 tells the mapping apart from rounding: measured 5e-14 for part segmentation, whose float32 logits
    are themselves 2e-5 from its float64 ones (the reference's too: 1024-wide layers of random weights), so a
    float32-only check at 1e-5 would test float32, not the import.
    """
    points = varied_clouds(batch, num_points)
    category = torch.tensor([0, 3, 7, 15])[:batch]
    results = {}
    for dtype in (torch.float64, torch.float32):
        sd = {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}
        net = copy.deepcopy(model).to(dtype)
        with torch.no_grad():
            x = points.to(dtype)
            ours = net(x) if kind == "cls" else net(x, category)
            theirs = reference(kind, sd, x, category, 16, k)
        assert ours.shape == theirs.shape
        results[dtype] = (ours - theirs).abs().max().item()
        assert torch.equal(ours.argmax(-1), theirs.argmax(-1)), dtype
        assert theirs.argmax(-1).unique().numel() > 1  # the comparison says something only if answers vary
    assert results[torch.float64] <= 1e-5, f"logits differ by {results[torch.float64]} in float64"
    assert results[torch.float32] <= 1e-4, f"logits differ by {results[torch.float32]} in float32"
    return results[torch.float64]


# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [20, 8])
def test_imported_cls_t7_matches_the_reference(tmp_path, monkeypatch, k) -> None:
    state = trained_like_state("cls", 7, seed=3, k=k)
    t7 = tmp_path / "model.t7"
    torch.save({f"module.{key}": value for key, value in state.items()}, t7)  # saved from DataParallel
    names = [f"class{i}" for i in range(7)]
    argv = ["import-checkpoint", str(t7), "--format", "dgcnn.antao97", "--classes", ",".join(names)]
    rc = run_cli(monkeypatch, *argv, "--k", str(k), "-o", str(tmp_path / "ckpt"))
    assert rc == 0
    model, card = load_checkpoint(tmp_path / "ckpt")
    assert card.architecture == "dgcnn_cls" and card.task == "classification"
    assert card.config["k"] == k and card.config["emb_dims"] == 64 and card.config["in_channels"] == 3
    assert card.class_names == names and card.num_points == 1024
    assert card.source.startswith("dgcnn.antao97:DGCNN_cls")
    assert_matches_reference(model, "cls", state, k)


def test_imported_partseg_t7_matches_the_reference(tmp_path, monkeypatch) -> None:
    state = trained_like_state("partseg", 50, seed=5, k=20)
    t7 = tmp_path / "model.t7"
    torch.save({f"module.{key}": value for key, value in state.items()}, t7)
    categories = [f"cat{i}" for i in range(16)]
    argv = ["import-checkpoint", str(t7), "--format", "dgcnn.antao97", "--classes", ",".join(categories)]
    assert run_cli(monkeypatch, *argv, "-o", str(tmp_path / "ckpt")) == 0
    model, card = load_checkpoint(tmp_path / "ckpt")
    assert card.architecture == "dgcnn_partseg" and card.task == "part_segmentation"
    assert card.config["emb_dims"] == 1024 and card.config["num_categories"] == 16 and card.num_points == 2048
    assert len(card.part_names) == 50 and card.part_names[0] == "cat0/part1"
    assert card.category_parts["cat0"] == [0, 1, 2, 3] and card.category_parts["cat15"] == [47, 48, 49]
    assert_matches_reference(model, "partseg", state, 20)


def test_safetensors_and_unprefixed_state_dicts_import_the_same(tmp_path) -> None:
    state = trained_like_state("cls", 5, seed=9, k=20)
    path = tmp_path / "model.safetensors"
    save_file({key: value.clone() for key, value in state.items()}, str(path))
    import_dgcnn_antao97(path, tmp_path / "ckpt", list("abcde"))
    model, _ = load_checkpoint(tmp_path / "ckpt")
    assert_matches_reference(model, "cls", state, 20)


def test_alias_that_disagrees_is_refused(tmp_path) -> None:
    state = {key: value.clone() for key, value in trained_like_state("cls", 5, seed=1, k=20).items()}
    state["bn3.weight"][0] += 1.0
    torch.save(state, tmp_path / "model.t7")
    with pytest.raises(CheckpointError, match=r"'bn3\.weight' and 'conv3\.1\.weight' are the same BatchNorm"):
        import_dgcnn_antao97(tmp_path / "model.t7", tmp_path / "ckpt", list("abcde"))


def test_wrong_shape_and_missing_keys_are_named(tmp_path) -> None:
    layout, aliases = cls_layout(5, 64)
    state = random_state(layout, aliases, 0)
    state["conv3.0.weight"] = torch.zeros(128, 64, 1, 1)
    torch.save(state, tmp_path / "a.t7")
    with pytest.raises(CheckpointError, match=r"'conv3\.0\.weight' has shape \(128, 64, 1, 1\).*\(128, 128, 1, 1\)"):
        import_dgcnn_antao97(tmp_path / "a.t7", tmp_path / "ckpt", list("abcde"))
    state = random_state(layout, aliases, 0)
    del state["linear2.bias"]
    torch.save(state, tmp_path / "b.t7")
    with pytest.raises(CheckpointError, match=r"missing key 'linear2\.bias'"):
        import_dgcnn_antao97(tmp_path / "b.t7", tmp_path / "ckpt", list("abcde"))
    assert not (tmp_path / "ckpt").exists()


def test_class_count_must_match(tmp_path) -> None:
    layout, aliases = cls_layout(5, 64)
    torch.save(random_state(layout, aliases, 0), tmp_path / "model.t7")
    with pytest.raises(ConfigError, match=r"3 class names given.*5 outputs"):
        import_dgcnn_antao97(tmp_path / "model.t7", tmp_path / "ckpt", list("abc"))


def test_pickled_module_is_refused_by_the_weights_only_loader(tmp_path) -> None:
    path = tmp_path / "model.t7"
    torch.save({"net": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(CheckpointError, match="torch.nn.modules.linear.Linear"):
        import_dgcnn_antao97(path, tmp_path / "ckpt", ["a", "b"])


def test_another_network_is_named_as_not_dgcnn(tmp_path, monkeypatch, capsys) -> None:
    path = tmp_path / "other.t7"
    torch.save({"module.fc.weight": torch.zeros(3, 3)}, path)
    argv = ["import-checkpoint", str(path), "--format", "dgcnn.antao97", "--classes", "a,b,c", "-o", str(tmp_path)]
    assert run_cli(monkeypatch, *argv) == 2
    assert "not a dgcnn.pytorch DGCNN_cls or DGCNN_partseg state dict" in capsys.readouterr().err
