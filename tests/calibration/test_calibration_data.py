"""``--calibration-data``: an int8 variant for a checkpoint whose card names no dataset (pointnet.pytorch import).

Everything goes through the real ``pointserve`` entry point (``import-checkpoint``, ``export``, ``calibrate``,
``build``), starting from a real ``.pth`` with pointnet.pytorch's ``PointNetCls`` key names, so the test does
not depend on where the modules behind those commands live. The calibration data are real files: a folder
tree of binary PLY (and a few .npy / .xyz) clouds, and a ModelNet40 HDF5 tree in the layout its reader expects.

Shapes:
    clouds written to disk: (N_i, 3) float32 with N_i between 150 and 260
    graph input ``points``: (B, NUM_POINTS, 3) float32, unit-sphere normalised
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from pointserve.cli import main
from pointserve.data.formats import write_point_cloud

CLASSES = ["bed", "chair", "lamp", "sofa", "table"]
NUM_POINTS = 128
SAMPLES = "16"
MODEL = "pn-cls"

# ---------------------------------------------------------------------------------------------------------------
# A pointnet.pytorch PointNetCls(k=5, feature_transform=False) state dict: its key names, random weights, and
# batch-norm statistics set from a forward pass over unit-sphere clouds, so the answers vary with the input (a
# network with purely random statistics answers the same class for everything, and int8-vs-fp32 agreement on it
# would say nothing).


def _layout(k: int) -> list[tuple[str, tuple[int, ...]]]:
    def conv(name, cin, cout):
        return [(f"{name}.weight", (cout, cin, 1)), (f"{name}.bias", (cout,))]

    def linear(name, cin, cout):
        return [(f"{name}.weight", (cout, cin)), (f"{name}.bias", (cout,))]

    def bn(name, c):
        stats = ("weight", "bias", "running_mean", "running_var")
        return [(f"{name}.{s}", (c,)) for s in stats] + [(f"{name}.num_batches_tracked", ())]

    stn = [
        *conv("feat.stn.conv1", 3, 64),
        *conv("feat.stn.conv2", 64, 128),
        *conv("feat.stn.conv3", 128, 1024),
        *linear("feat.stn.fc1", 1024, 512),
        *linear("feat.stn.fc2", 512, 256),
        *linear("feat.stn.fc3", 256, 9),
        *[entry for i, c in enumerate((64, 128, 1024, 512, 256), 1) for entry in bn(f"feat.stn.bn{i}", c)],
    ]
    feat = [
        *conv("feat.conv1", 3, 64),
        *conv("feat.conv2", 64, 128),
        *conv("feat.conv3", 128, 1024),
        *[entry for i, c in enumerate((64, 128, 1024), 1) for entry in bn(f"feat.bn{i}", c)],
    ]
    head = [*linear("fc1", 1024, 512), *linear("fc2", 512, 256), *linear("fc3", 256, k), *bn("bn1", 512)]
    return stn + feat + head + bn("bn2", 256)


def _random_state(k: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in _layout(k):
        leaf = key.rsplit(".", 1)[1]
        if key.endswith("num_batches_tracked"):
            value = torch.tensor(1234, dtype=torch.int64)
        elif leaf == "weight" and len(shape) > 1:
            fan_in = shape[1] * (shape[2] if len(shape) == 3 else 1)
            scale = 0.2 if key == "feat.stn.fc3.weight" else 1.0  # T-Net near the identity, as trained ones are
            value = torch.randn(shape, generator=gen) * scale / fan_in**0.5
        elif leaf == "weight":  # batch-norm gamma
            value = torch.rand(shape, generator=gen) + 0.5
        elif leaf == "bias":
            value = torch.randn(shape, generator=gen) * 0.1
        else:  # running statistics: set by _settle_batch_norm
            value = torch.zeros(shape) if leaf == "running_mean" else torch.ones(shape)
        state[key] = value
    return state


def _settle_batch_norm(state: dict[str, torch.Tensor], clouds: torch.Tensor, seed: int) -> None:
    """PointNetCls's eval forward pass (B, 3, N) in plain F ops, setting each batch norm's statistics on the way."""
    gen = torch.Generator().manual_seed(seed)

    def bn(x, name):
        dims = [0, 2] if x.ndim == 3 else [0]
        mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
        state[f"{name}.running_mean"] = mean + 0.2 * var.sqrt() * torch.randn(mean.shape, generator=gen)
        state[f"{name}.running_var"] = var * (0.6 + 0.8 * torch.rand(var.shape, generator=gen)) + 1e-3
        stats = state[f"{name}.running_mean"], state[f"{name}.running_var"]
        return F.batch_norm(x, *stats, state[f"{name}.weight"], state[f"{name}.bias"], training=False)

    def conv(x, name):
        return F.conv1d(x, state[f"{name}.weight"], state[f"{name}.bias"])

    def linear(x, name):
        return F.linear(x, state[f"{name}.weight"], state[f"{name}.bias"])

    with torch.no_grad():
        t = clouds
        for i in (1, 2, 3):
            t = F.relu(bn(conv(t, f"feat.stn.conv{i}"), f"feat.stn.bn{i}"))
        t = t.amax(dim=2)
        t = F.relu(bn(linear(t, "feat.stn.fc1"), "feat.stn.bn4"))
        t = F.relu(bn(linear(t, "feat.stn.fc2"), "feat.stn.bn5"))
        trans = (linear(t, "feat.stn.fc3") + torch.eye(3).flatten()).view(-1, 3, 3)
        x = torch.bmm(clouds.transpose(2, 1), trans).transpose(2, 1)
        x = F.relu(bn(conv(x, "feat.conv1"), "feat.bn1"))
        x = F.relu(bn(conv(x, "feat.conv2"), "feat.bn2"))
        x = bn(conv(x, "feat.conv3"), "feat.bn3").amax(dim=2)
        x = F.relu(bn(linear(x, "fc1"), "bn1"))
        h = F.relu(bn(linear(x, "fc2"), "bn2"))
        # The classifier reads the directions in which the clouds' features differ most, as a trained one reads
        # discriminative ones: the answers then depend on the cloud rather than on small feature noise.
        mean = h.mean(dim=0)
        directions = torch.linalg.svd(h - mean, full_matrices=False).Vh[: state["fc3.bias"].numel()]
        state["fc3.weight"] = directions * 4.0
        state["fc3.bias"] = -(directions @ mean) * 4.0


def varied_clouds(count: int, num_points: int, seed: int) -> np.ndarray:
    """Gaussian blobs of varied proportions, centred and scaled into the unit sphere.

    Shapes:
        returns (count, num_points, 3) float32
    """
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(count, num_points, 3)) * rng.uniform(0.1, 1.6, size=(count, 1, 3))
    points -= points.mean(axis=1, keepdims=True)
    points /= np.linalg.norm(points, axis=2).max(axis=1)[:, None, None]
    return points.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: the imported + exported model (once per module), a fresh copy of its repository per test.


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A repository holding ``pn-cls`` v1 (fp32 only), made from a pointnet.pytorch ``.pth`` by the CLI."""
    tmp = tmp_path_factory.mktemp("pointnet_pytorch")
    state = _random_state(len(CLASSES), seed=5)
    _settle_batch_norm(state, torch.from_numpy(varied_clouds(32, 96, seed=6)).transpose(1, 2), seed=5)
    pth = tmp / "cls_model_24.pth"
    torch.save(state, pth)
    checkpoint = tmp / "checkpoint"
    argv = ["import-checkpoint", str(pth), "--format", "pointnet.pytorch", "--classes", ",".join(CLASSES)]
    assert main([*argv, "--num-points", str(NUM_POINTS), "-o", str(checkpoint)]) == 0
    assert json.loads((checkpoint / "card.json").read_text())["dataset"] == ""  # the premise of this file
    assert main(["export", str(checkpoint), "-o", str(tmp / "repository"), "--name", MODEL]) == 0
    return tmp / "repository"


@pytest.fixture
def repo(exported: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported, tmp_path / "repository"))


@pytest.fixture(scope="module")
def cloud_dir(tmp_path_factory) -> Path:
    """30 clouds: 6 at the top, 8 in ``chair/``, 8 in ``table/``, 8 (ply, npy, xyz) in ``misc/deep/``, plus noise."""
    root = tmp_path_factory.mktemp("clouds") / "clouds"
    rng = np.random.default_rng(7)
    layout = [("", ".ply", 6), ("chair", ".ply", 8), ("table", ".ply", 8), ("misc/deep", ".ply", 4)]
    layout += [("misc/deep", ".npy", 2), ("misc/deep", ".xyz", 2)]
    number = 0
    for folder, suffix, count in layout:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for cloud in varied_clouds(count, 260, seed=number):
            # Raw scale and offset, as scans come: the calibration set normalises them as training would.
            points = cloud[: rng.integers(150, 261)] * rng.uniform(0.5, 20) + rng.uniform(-5, 5, size=3)
            write_point_cloud(root / folder / f"cloud_{number:02d}{suffix}", points.astype(np.float32))
            number += 1
    (root / "README.md").write_text("not a cloud\n")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "skipped.ply").write_bytes(b"not even a ply")
    return root


def expected_folder_labels(root: Path) -> list[int]:
    """Labels in file order (sorted relative paths): the parent folder's class index, else 0."""
    files = sorted(
        (p for p in root.rglob("*") if p.suffix in (".ply", ".npy", ".xyz") and ".hidden" not in p.parts),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    return [CLASSES.index(p.parent.name) if p.parent.name in CLASSES else 0 for p in files]


@pytest.fixture(scope="module")
def modelnet_root(tmp_path_factory) -> Path:
    """``modelnet40_ply_hdf5_2048/`` with 20 training clouds (two files) and 6 test clouds of 256 points."""
    root = tmp_path_factory.mktemp("modelnet") / "data"
    folder = root / "modelnet40_ply_hdf5_2048"
    folder.mkdir(parents=True)
    (folder / "shape_names.txt").write_text("\n".join(CLASSES) + "\n")
    rng = np.random.default_rng(3)
    for split, files in {
        "train": [("ply_data_train0.h5", 12), ("ply_data_train1.h5", 8)],
        "test": [("t.h5", 6)],
    }.items():
        for name, count in files:
            with h5py.File(folder / name, "w") as h5:
                h5.create_dataset("data", data=varied_clouds(count, 256, seed=count))
                h5.create_dataset("label", data=rng.integers(0, len(CLASSES), size=(count, 1)).astype(np.uint8))
        lines = [f"data/modelnet40_ply_hdf5_2048/{name}" for name, _ in files]
        (folder / f"{split}_files.txt").write_text("\n".join(lines) + "\n")
    return root


# ---------------------------------------------------------------------------------------------------------------


def int8_record(repo: Path) -> dict:
    manifest = json.loads((repo / MODEL / "1" / "manifest.json").read_text())
    return next(v for v in manifest["variants"] if v["name"] == "int8")


def calibration_arrays(repo: Path, record: dict) -> dict[str, np.ndarray]:
    with np.load(repo / MODEL / "1" / record["calibration"]["file"], allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def assert_int8_agrees_with_fp32(repo: Path, record: dict) -> None:
    version = repo / MODEL / "1"
    fp32 = ort.InferenceSession(str(version / "fp32.onnx"), providers=["CPUExecutionProvider"])
    int8 = ort.InferenceSession(str(version / record["file"]), providers=["CPUExecutionProvider"])
    name = fp32.get_inputs()[0].name
    clouds = varied_clouds(64, NUM_POINTS, seed=11)
    ref = fp32.run(None, {name: clouds})[0].argmax(-1)
    got = int8.run(None, {name: clouds})[0].argmax(-1)
    assert len(np.unique(ref)) > 1, "fp32 answers one class for everything: the comparison would mean nothing"
    assert np.mean(ref == got) >= 0.7, f"int8 agrees with fp32 on {np.mean(ref == got):.0%} of clouds"


def test_calibrate_from_a_folder_of_clouds(repo, cloud_dir, capsys) -> None:
    args = ["calibrate", MODEL, "--repository", str(repo), "--num-samples", SAMPLES, "--calibration-data"]
    assert main([*args, str(cloud_dir)]) == 0
    out = capsys.readouterr().out
    assert "scales computed" in out and "all zero points 0" in out

    record = int8_record(repo)
    assert (record["precision"], record["backend"], record["source"]) == ("int8", "onnxruntime", "fp32")
    calibration = record["calibration"]
    assert calibration["source"] == f"folder {cloud_dir.resolve()} (30 files)"
    assert len(calibration["source_sha256"]) == 64
    assert calibration["num_samples"] == int(SAMPLES)
    assert calibration["file"].startswith(f"calibration/folder-{calibration['source_sha256'][:12]}-train-n16-s0")

    arrays = calibration_arrays(repo, record)
    assert arrays["points"].shape == (int(SAMPLES), NUM_POINTS, 3)
    labels = np.array(expected_folder_labels(cloud_dir))
    np.testing.assert_array_equal(arrays["label"], labels[arrays["source_index"]])
    assert {0, CLASSES.index("chair"), CLASSES.index("table")} >= set(arrays["label"].tolist())
    assert_int8_agrees_with_fp32(repo, record)

    # The same folder again: same set, scales from the cache, same record.
    assert main([*args, str(cloud_dir)]) == 0
    assert "scales reused from cache" in capsys.readouterr().out
    assert int8_record(repo)["calibration"] == calibration


def test_calibrate_from_a_registered_dataset_uses_its_train_split(repo, cloud_dir, modelnet_root, capsys) -> None:
    args = ["calibrate", MODEL, "--repository", str(repo), "--num-samples", SAMPLES, "--calibration-data"]
    assert main([*args, str(cloud_dir)]) == 0
    folder_file = int8_record(repo)["calibration"]["file"]
    assert main([*args, f"modelnet40_h5:{modelnet_root}"]) == 0
    assert "scales computed" in capsys.readouterr().out

    record = int8_record(repo)
    calibration = record["calibration"]
    assert calibration["source"] == f"modelnet40_h5:{modelnet_root.resolve()} (train split, 20 clouds)"
    assert len(calibration["source_sha256"]) == 64
    # One calibration file per source: the folder's set is still there, untouched, beside the new one.
    assert calibration["file"] != folder_file
    assert calibration["file"].startswith("calibration/modelnet40_h5-")
    assert (repo / MODEL / "1" / folder_file).is_file()
    arrays = calibration_arrays(repo, record)
    assert arrays["source_index"].max() < 20 and len(np.unique(arrays["source_index"])) == int(SAMPLES)
    assert_int8_agrees_with_fp32(repo, record)


def test_build_int8_with_calibration_data(repo, cloud_dir, capsys) -> None:
    argv = ["build", MODEL, "--repository", str(repo), "--precision", "int8", "--calibration-samples", SAMPLES]
    assert main([*argv, "--calibration-data", str(cloud_dir)]) == 0
    record = int8_record(repo)
    assert record["calibration"]["source"] == f"folder {cloud_dir.resolve()} (30 files)"
    assert record["calibration"]["num_samples"] == int(SAMPLES)
    assert_int8_agrees_with_fp32(repo, record)


# ---------------------------------------------------------------------------------------------------------------
# Errors: one line, exit status 2.


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("command", ["calibrate", "build"])
def test_no_card_dataset_and_no_flag_names_the_flag(repo, capsys, command) -> None:
    extra = ["--precision", "int8"] if command == "build" else []
    assert main([command, MODEL, "--repository", str(repo), *extra]) == 2
    err = one_line_error(capsys)
    assert "names no dataset" in err
    assert "--calibration-data DATASET:ROOT" in err and "--calibration-data DIR_OF_CLOUDS" in err


def test_calibration_data_errors(repo, tmp_path, cloud_dir, capsys) -> None:
    args = ["calibrate", MODEL, "--repository", str(repo), "--num-samples", SAMPLES, "--calibration-data"]

    assert main([*args, str(tmp_path / "nowhere")]) == 2
    err = one_line_error(capsys)
    assert "nowhere" in err and "no such folder" in err and "DATASET:ROOT" in err and "DIR_OF_CLOUDS" in err

    assert main([*args, f"modelnet41_h5:{tmp_path}"]) == 2
    err = one_line_error(capsys)
    assert "unknown dataset 'modelnet41_h5'" in err and "modelnet40_h5" in err and "shapes" in err

    assert main([*args, f"modelnet40_h5:{tmp_path / 'nowhere'}"]) == 2
    assert "nowhere" in one_line_error(capsys)

    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.md").write_text("no clouds here\n")
    assert main([*args, str(tmp_path / "empty")]) == 2
    assert "no point-cloud files" in one_line_error(capsys)

    broken = tmp_path / "broken"
    shutil.copytree(cloud_dir, broken)
    (broken / "chair" / "cloud_99.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1000\n")
    assert main([*args, str(broken)]) == 2
    assert str(broken / "chair" / "cloud_99.ply") in one_line_error(capsys)

    nan_cloud = tmp_path / "nan"
    nan_cloud.mkdir()
    write_point_cloud(nan_cloud / "a.npy", np.array([[0, 0, 0], [np.nan, 1, 2]], dtype=np.float32))
    assert main([*args, str(nan_cloud)]) == 2
    assert "a.npy" in one_line_error(capsys)

    assert main([*args, str(cloud_dir), "--data-root", str(tmp_path)]) == 2
    assert "--data-root" in one_line_error(capsys)
    assert "int8" not in {v["name"] for v in json.loads((repo / MODEL / "1" / "manifest.json").read_text())["variants"]}


# ---------------------------------------------------------------------------------------------------------------
# Part segmentation: the label is the ``category`` graph input, so folders must name categories.


def test_part_segmentation_folders_must_name_categories(tmp_path) -> None:
    from pointserve.calibration.sources import load_calibration_source
    from pointserve.card import ModelCard
    from pointserve.errors import CalibrationError

    card = ModelCard(
        architecture="pointnet_partseg",
        task="part_segmentation",
        class_names=["Airplane", "Chair"],
        part_names=["wing", "body", "seat", "leg"],
        category_parts={"Airplane": [0, 1], "Chair": [2, 3]},
        num_points=64,
    )
    clouds = varied_clouds(4, 80, seed=2)
    for i, category in enumerate(["Chair", "Airplane", "Chair", "Airplane"]):
        (tmp_path / "parts" / category).mkdir(parents=True, exist_ok=True)
        write_point_cloud(tmp_path / "parts" / category / f"{i}.xyz", clouds[i])
    source = load_calibration_source(str(tmp_path / "parts"), card)
    # Sorted by relative path: Airplane/1, Airplane/3, Chair/0, Chair/2.
    assert [s.label for s in source.dataset.samples] == [0, 0, 1, 1]
    np.testing.assert_allclose(source.dataset.samples[0].points, clouds[1], rtol=1e-6)
    assert source.sha256 == source.dataset.content_hash()
    assert source.description == f"folder {(tmp_path / 'parts').resolve()} (4 files)"

    write_point_cloud(tmp_path / "parts" / "loose.xyz", clouds[0])
    with pytest.raises(CalibrationError, match=r"loose\.xyz.*named after its category"):
        load_calibration_source(str(tmp_path / "parts"), card)
