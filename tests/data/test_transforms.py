import numpy as np
import pytest

from pointserve.data import transforms as T
from pointserve.errors import InputError


def test_normalize_unit_sphere_centres_and_scales_xyz_only():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(5, 3, (100, 3)), rng.normal(0, 1, (100, 3))], axis=1).astype(np.float32)
    out = T.normalize_unit_sphere(pts)
    assert np.allclose(out[:, :3].mean(0), 0, atol=1e-5)
    assert np.sqrt((out[:, :3] ** 2).sum(1)).max() == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(out[:, 3:], pts[:, 3:])


def test_resample_subsamples_without_repeats_and_pads_by_repeating():
    rng = np.random.default_rng(0)
    idx = T.resample_indices(100, 30, rng)
    assert len(set(idx.tolist())) == 30
    idx = T.resample_indices(10, 25, rng)
    assert len(idx) == 25 and set(idx.tolist()) == set(range(10))
    with pytest.raises(InputError):
        T.resample_indices(0, 5)


def test_rotate_up_keeps_height_and_radius_and_rotates_normals():
    pts = np.array([[1.0, 2.0, 0.0, 1.0, 0.0, 0.0]], dtype=np.float32)
    out = T.rotate_up(pts, np.pi / 2)
    assert out[0, 1] == pytest.approx(2.0)
    assert np.hypot(out[0, 0], out[0, 2]) == pytest.approx(1.0)
    assert np.allclose(out[0, 3:6], out[0, [0, 1, 2]] * [1, 0, 1])


def test_augment_keeps_point_count_and_labels_aligned():
    rng = np.random.default_rng(1)
    pts = np.arange(30, dtype=np.float32).reshape(10, 3)
    seg = np.arange(10)
    out, out_seg = T.augment(pts, rng, seg)
    assert out.shape == pts.shape and sorted(out_seg.tolist()) == list(range(10))
    # each point's height (y, up axis) is only scaled and jittered, so the shuffle kept labels with points
    ratio = out[:, 1] / pts[out_seg, 1].clip(min=1)
    assert np.ptp(ratio[pts[out_seg, 1] > 10]) < 0.1
