"""TensorRT logic that needs no TensorRT: profiles, names, build records, compatibility checks, the backend's
registration, and the runner's batch padding and named buffers on a fake engine."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pointserve.engines.base import InputLimits
from pointserve.engines.gpu import GpuInfo, parse_nvidia_smi_csv
from pointserve.engines.tensorrt.plan import (
    ShapeProfile,
    builder_flags_for,
    check_plan_compatible,
    make_build_info,
    onnx_variant_for,
    output_spec_from_engine,
    pad_batch,
    plan_file_name,
    plan_limits,
    point_cloud_inputs,
    profile_from_build_info,
    profile_from_flags,
    read_sidecar,
    sidecar_path,
    tensorrt_variant_name,
    timing_cache_file_name,
    unpad_outputs,
    write_sidecar,
)
from pointserve.errors import ConfigError, EngineCompatibilityError
from pointserve.models.spec import TensorSpec
from pointserve.repository.manifest import BuildInfo

H100 = GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0", memory_total_mib=81559)


def test_profile_defaults():
    profile = profile_from_flags(1024)
    assert profile.dims == {"batch": (1, 64, 64), "num_points": (1, 1024, 2048)}
    assert (profile.min_batch, profile.opt_batch, profile.max_batch) == (1, 64, 64)
    assert (profile.min_points, profile.opt_points, profile.max_points) == (1, 1024, 2048)
    assert profile.inputs == tuple(point_cloud_inputs(3))
    assert profile.shapes() == {"points": ((1, 1, 3), (64, 1024, 3), (64, 2048, 3))}
    small = profile_from_flags(64, max_batch=8)
    assert (small.opt_batch, small.opt_points, small.max_points) == (8, 64, 2048)


def test_profile_flags_and_category():
    profile = profile_from_flags(
        2048, channels=6, needs_category=True, min_batch=2, opt_batch=16, max_batch=32, opt_points=512, max_points=4096
    )
    assert profile.shapes() == {
        "points": ((2, 1, 6), (16, 512, 6), (32, 4096, 6)),
        "category": ((2,), (16,), (32,)),
    }
    limits = profile.limits({"category": 16})
    # Batches below the profile's minimum are padded by the runner: the limits start at 1.
    assert limits.dims == {"batch": (1, 32), "num_points": (1, 4096)}
    assert limits.max_batch == 32 and limits.value_bounds == {"category": 16}
    # opt points above the default maximum raise the maximum with them
    assert profile_from_flags(64, opt_points=5000).max_points == 5000


def test_profile_of_any_named_inputs_keeps_fixed_dimensions():
    inputs = [
        TensorSpec(name="points", dtype="float32", shape=["num_points", 3]),
        TensorSpec(name="neighbours", dtype="int64", shape=["num_points", 16]),
        TensorSpec(name="segment_start", dtype="int64", shape=["batch"]),
        TensorSpec(name="scale", dtype="float32", shape=[1]),
    ]
    profile = profile_from_flags(1024, inputs=inputs, max_batch=8, max_points=8192, opt_points=4096)
    assert profile.dims == {"batch": (1, 8, 8), "num_points": (1, 4096, 8192)}
    assert profile.shapes() == {
        "points": ((1, 3), (4096, 3), (8192, 3)),
        "neighbours": ((1, 16), (4096, 16), (8192, 16)),
        "segment_start": ((1,), (8,), (8,)),
        "scale": ((1,), (1,), (1,)),
    }
    # shapes() of other specs (same dimensions) and of a dimension the profile lacks
    other = [TensorSpec(name="x", dtype="float32", shape=["batch", 5])]
    assert profile.shapes(other) == {"x": ((1, 5), (8, 5), (8, 5))}
    with pytest.raises(ConfigError, match="does not size dimension 'k'"):
        profile.shapes([TensorSpec(name="y", dtype="float32", shape=["k"])])
    with pytest.raises(ConfigError, match="does not size"):
        ShapeProfile({"batch": (1, 1, 1)}, (inputs[0],))
    # a family's extra symbolic dimension comes in through ``dims``
    extra = [TensorSpec(name="grid", dtype="float32", shape=["batch", "cells", 4])]
    profile = profile_from_flags(64, inputs=extra, dims={"cells": (8, 64, 512)})
    assert profile.dims == {"batch": (1, 64, 64), "cells": (8, 64, 512)}
    info = make_build_info(H100, "11.0.0.5", profile, workspace_mib=64, build_time_s=1, builder_flags=[])
    assert info.max_shape == {"grid": [64, 512, 4]}
    assert profile_from_build_info(info, extra) == profile


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"min_batch": 8, "max_batch": 4}, "batch profile"),
        ({"opt_points": 100, "max_points": 50}, "points profile"),
        ({"min_points": 200, "opt_points": 100}, "points profile"),
    ],
)
def test_profile_rejects_disordered_flags(flags, message):
    with pytest.raises(ConfigError, match=message):
        profile_from_flags(1024, **flags)


def test_old_build_records_read_as_points_and_category():
    """Records written before named inputs: ``points`` [B, N, C] and an optional ``category`` [B]."""
    old = BuildInfo(
        compute_capability="9.0",
        tensorrt_version="10.13.0.35",
        min_shape={"points": [1, 1, 3], "category": [1]},
        opt_shape={"points": [64, 2048, 3], "category": [64]},
        max_shape={"points": [64, 2048, 3], "category": [64]},
    )
    profile = profile_from_build_info(old)
    assert profile.inputs == tuple(point_cloud_inputs(3, needs_category=True))
    assert profile.dims == {"batch": (1, 64, 64), "num_points": (1, 2048, 2048)}
    # the manifest's specs give the same profile
    assert profile_from_build_info(old, point_cloud_inputs(3, needs_category=True)) == profile
    classifier = old.model_copy(
        update={k: {"points": getattr(old, k)["points"]} for k in ("min_shape", "opt_shape", "max_shape")}
    )
    assert profile_from_build_info(classifier).inputs == tuple(point_cloud_inputs(3))


_CATEGORY = TensorSpec(name="category", dtype="int64", shape=["batch"])


@pytest.mark.parametrize(
    "points, message",
    [
        (TensorSpec(name="points", dtype="float32", shape=["batch", "num_points", 6]), r"dimension 2 in \(3, 3, 3\)"),
        (TensorSpec(name="points", dtype="float32", shape=["batch", "num_points"]), "built with shapes"),
        (TensorSpec(name="xyz", dtype="float32", shape=["batch", "num_points", 3]), "built for input.s. points"),
        (TensorSpec(name="points", dtype="float32", shape=["num_points", "batch", 3]), "dimension 'batch' was built"),
    ],
)
def test_build_record_must_match_the_graph_inputs(points, message):
    profile = profile_from_flags(64, needs_category=True, max_batch=8)
    info = make_build_info(H100, "11.0.0.5", profile, workspace_mib=64, build_time_s=1, builder_flags=[])
    with pytest.raises(EngineCompatibilityError, match=message) as exc:
        profile_from_build_info(info, [points, _CATEGORY], "m/1/fp32-tensorrt.plan")
    assert "m/1/fp32-tensorrt.plan" in str(exc.value)
    extra = TensorSpec(name="extra", dtype="int64", shape=["batch"])
    with pytest.raises(EngineCompatibilityError, match="no profile for input 'extra'"):
        profile_from_build_info(info, [*point_cloud_inputs(3, True), extra])


def test_records_of_other_graphs_need_their_specs():
    info = BuildInfo(
        min_shape={"points": [1, 3], "neighbours": [1, 16]},
        opt_shape={"points": [1024, 3], "neighbours": [1024, 16]},
        max_shape={"points": [4096, 3], "neighbours": [4096, 16]},
    )
    with pytest.raises(EngineCompatibilityError, match="not one .B, N, C. point cloud"):
        profile_from_build_info(info)
    specs = [
        TensorSpec(name="points", dtype="float32", shape=["num_points", 3]),
        TensorSpec(name="neighbours", dtype="int64", shape=["num_points", 16]),
    ]
    assert profile_from_build_info(info, specs).dims == {"num_points": (1, 1024, 4096)}
    with pytest.raises(EngineCompatibilityError, match="no optimisation profile"):
        profile_from_build_info(BuildInfo(), specs)


def test_plan_limits_intersect_the_cards_limits_and_the_profile():
    profile = profile_from_flags(64, needs_category=True, min_batch=2, max_batch=16, min_points=8, max_points=512)
    card = InputLimits(dims={"batch": (1, 64), "num_points": (1, 2048)}, value_bounds={"category": 12})
    limits = plan_limits(card, profile)
    assert limits.dims == {"batch": (1, 16), "num_points": (8, 512)} and limits.value_bounds == {"category": 12}
    with pytest.raises(EngineCompatibilityError, match="num_points in .8, 512."):
        plan_limits(InputLimits(dims={"num_points": (1, 4)}), profile)


def test_names():
    assert tensorrt_variant_name("fp16") == "fp16-tensorrt"
    assert plan_file_name("int8") == "int8-tensorrt.plan"
    assert sidecar_path("/r/m/1/int8-tensorrt.plan").name == "int8-tensorrt.plan.json"
    assert [onnx_variant_for(p) for p in ("fp32", "tf32", "fp16", "int8")] == ["fp32", "fp32", "fp16", "int8"]
    with pytest.raises(ConfigError, match="unknown precision"):
        onnx_variant_for("bf16")
    assert timing_cache_file_name(H100, "11.0.0.1") == "timing-sm90-trt11.0.0.1.cache"


def test_tf32_is_the_only_builder_precision_flag():
    assert builder_flags_for("tf32") == ["TF32"]
    assert builder_flags_for("fp32") == builder_flags_for("fp16") == builder_flags_for("int8") == []


def test_build_info_sidecar_round_trip(tmp_path):
    profile = profile_from_flags(1024, needs_category=True, max_batch=32)
    assert profile.to_build_info().max_shape == {"points": [32, 2048, 3], "category": [32]}
    info = make_build_info(H100, "11.0.0.5", profile, workspace_mib=2048, build_time_s=12.3456, builder_flags=["TF32"])
    plan = tmp_path / plan_file_name("tf32")
    plan.write_bytes(b"plan")
    write_sidecar(plan, info)
    loaded = read_sidecar(plan)
    assert loaded == info and loaded.build_time_s == 12.346
    assert loaded.max_shape == {"points": [32, 2048, 3], "category": [32]}
    assert profile_from_build_info(loaded) == profile
    assert read_sidecar(tmp_path / "other.plan") is None
    sidecar_path(plan).write_text("{broken")
    with pytest.raises(EngineCompatibilityError, match="unreadable build record"):
        read_sidecar(plan)


def _info(**overrides):
    info = make_build_info(H100, "11.0.0.5", profile_from_flags(64), workspace_mib=64, build_time_s=1, builder_flags=[])
    return info.model_copy(update=overrides)


def test_compatible_plan_passes():
    assert check_plan_compatible(_info(), H100, "11.0.0.7") == []  # build number differences are fine


def test_same_architecture_other_model_warns():
    h100_pcie = GpuInfo(index=0, name="NVIDIA H100 PCIe", compute_capability="9.0")
    (warning,) = check_plan_compatible(_info(), h100_pcie, "11.0.0.5", "m/1/fp16-tensorrt.plan")
    assert "NVIDIA H100 80GB HBM3" in warning and "NVIDIA H100 PCIe" in warning


@pytest.mark.parametrize(
    "info, gpu, version, message",
    [
        (_info(), GpuInfo(0, "NVIDIA A100-SXM4-80GB", "8.0"), "11.0.0.5", r"compute capability 9\.0.*8\.0"),
        (_info(), H100, "10.13.0.35", "built with TensorRT 11.0.0.5, this is TensorRT 10.13.0.35"),
        (_info(), None, "11.0.0.5", "need an NVIDIA GPU"),
        (_info(), H100, None, "TensorRT is not installed"),
        (_info(compute_capability=None), H100, "11.0.0.5", "no record"),
        (None, H100, "11.0.0.5", "no record"),
    ],
)
def test_incompatible_plans_are_refused_before_loading(info, gpu, version, message):
    with pytest.raises(EngineCompatibilityError, match=message) as exc:
        check_plan_compatible(info, gpu, version, "m/1/fp32-tensorrt.plan")
    assert "m/1/fp32-tensorrt.plan" in str(exc.value)


def test_parse_nvidia_smi():
    text = "0, NVIDIA H100 80GB HBM3, 9.0, 81559, 550.54.15\n1, NVIDIA L4, 8.9, 23034, 550.54.15\n"
    gpus = parse_nvidia_smi_csv(text)
    assert gpus[0] == GpuInfo(0, "NVIDIA H100 80GB HBM3", "9.0", 81559, "550.54.15")
    assert (gpus[1].name, gpus[1].sm) == ("NVIDIA L4", "sm89")
    assert parse_nvidia_smi_csv("") == []
    assert parse_nvidia_smi_csv("No devices were found") == []


def test_shape_profile_rejects_too_few_channels():
    with pytest.raises(ConfigError, match="3 channels"):
        profile_from_flags(64, channels=2)


# -- batches below the profile's minimum --------------------------------------------------------------------------
SEG_INPUTS = point_cloud_inputs(3, needs_category=True)
SEG_OUTPUTS = [TensorSpec(name="logits", dtype="float32", shape=["batch", "num_points", 5])]


def test_pad_batch_repeats_the_first_row_of_batched_inputs_only():
    specs = [*SEG_INPUTS, TensorSpec(name="table", dtype="float32", shape=[4, 2])]
    feeds = {
        "points": np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3),
        "category": np.array([7, 9]),
        "table": np.zeros((4, 2), np.float32),
    }
    padded, batch = pad_batch(feeds, specs, min_batch=4)
    assert batch == 2 and padded["points"].shape == (4, 3, 3) and padded["table"].shape == (4, 2)
    np.testing.assert_array_equal(padded["points"][2:], np.stack([feeds["points"][0]] * 2))
    np.testing.assert_array_equal(padded["category"], [7, 9, 7, 7])
    same, batch = pad_batch(feeds, specs, min_batch=1)
    assert batch == 2 and same["points"] is feeds["points"]
    outputs = unpad_outputs({"logits": np.ones((4, 3, 5), np.float16), "aux": np.ones(7)}, SEG_OUTPUTS, 2)
    assert outputs["logits"].shape == (2, 3, 5) and outputs["logits"].dtype == np.float32
    assert outputs["aux"].shape == (7,)


def test_output_specs_read_from_an_engine():
    assert output_spec_from_engine("logits", (-1, 12), np.dtype(np.float16)) == TensorSpec(
        name="logits", dtype="float32", shape=["batch", 12]
    )
    assert output_spec_from_engine("labels", (-1, -1, -1), np.dtype(np.int32)).shape == [
        "batch",
        "num_points",
        "labels_2",
    ]


# -- the backend ---------------------------------------------------------------------------------------------------
def test_backend_is_registered_without_importing_tensorrt():
    from pointserve.engines import get_backend, list_backends

    spec = get_backend("tensorrt")
    assert (spec.oip_platform, spec.artifact_suffix, spec.priority) == ("tensorrt_plan", ".plan", 10)
    assert spec.variant_for("int8") == "int8-tensorrt" and list_backends()[0] == "tensorrt"
    # a fresh interpreter: other tests of this session may have imported TensorRT on a GPU machine
    code = (
        "import sys, pointserve.engines, pointserve.engines.tensorrt; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'cuda', 'torch', 'onnxruntime')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- the runner on a fake engine: named inputs, padding, buffers per shape ------------------------------------------
class _FakeArray:
    def __init__(self, shape, dtype):
        self.array = np.zeros(shape, dtype)
        self.nbytes = self.array.nbytes
        self.ptr = id(self)

    def free(self):
        pass


class _FakeStream:
    handle = 0

    def synchronize(self):
        pass


class _FakeContext:
    """Sums each cloud's points and category into a (B, N, 5) answer, with the engine's min batch 2."""

    def __init__(self, runner):
        self.runner, self.shapes, self.addresses, self.calls = runner, {}, {}, []

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return shape[0] >= 2

    def get_tensor_shape(self, name):
        if name == "logits":
            b, n, _ = self.shapes["points"]
            return (b, n, 5)
        return self.shapes[name]

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def execute_async_v3(self, stream):
        buffers = next(b for b in self.runner._buffers.values() if id(b.device["points"]) == self.addresses["points"])
        points, category = buffers.host["points"].array, buffers.host["category"].array
        self.calls.append(points.shape)
        value = points.sum(-1, keepdims=True) + category[:, None, None]
        buffers.host["logits"].array[...] = np.repeat(value, 5, axis=-1)
        return True


def _fake_runner(monkeypatch, tmp_path, max_cached_shapes=8):
    from pointserve.engines.tensorrt import cuda_rt
    from pointserve.engines.tensorrt.runner import TensorRTRunner

    monkeypatch.setattr(cuda_rt, "PinnedArray", _FakeArray)
    monkeypatch.setattr(cuda_rt, "DeviceBuffer", lambda nbytes: _FakeArray((0,), np.uint8))
    monkeypatch.setattr(cuda_rt, "copy_host_to_device_async", lambda dst, src, stream: None)
    monkeypatch.setattr(cuda_rt, "copy_device_to_host_async", lambda dst, src, stream: None)
    profile = profile_from_flags(64, needs_category=True, min_batch=2, max_batch=8, max_points=256)
    info = make_build_info(H100, "11.0.0.5", profile, workspace_mib=64, build_time_s=1, builder_flags=[])
    runner = TensorRTRunner(
        tmp_path / "x.plan", SEG_INPUTS, SEG_OUTPUTS, build_info=info, max_cached_shapes=max_cached_shapes
    )
    dtypes = {"points": np.float32, "category": np.int64, "logits": np.float16}
    runner._dtype = lambda tensor: np.dtype(dtypes[tensor])
    runner.engine_inputs, runner.engine_outputs = ["points", "category"], ["logits"]
    runner.context, runner.stream, runner.is_active = _FakeContext(runner), _FakeStream(), True
    return runner


def test_runner_pads_small_batches_and_gives_named_float32_outputs(monkeypatch, tmp_path):
    runner = _fake_runner(monkeypatch, tmp_path)
    assert runner.limits.dims == {"batch": (1, 8), "num_points": (1, 256)}
    points = np.random.default_rng(0).uniform(-1, 1, (1, 10, 3)).astype(np.float32)
    outputs = runner.infer({"points": points, "category": np.array([3])})
    assert list(outputs) == ["logits"] and outputs["logits"].shape == (1, 10, 5)
    assert outputs["logits"].dtype == np.float32
    want = points.sum(-1, keepdims=True) + 3
    np.testing.assert_allclose(outputs["logits"][..., :1], want, atol=1e-2)
    assert runner.context.calls == [(2, 10, 3)]  # padded to the profile's minimum batch
    runner.infer({"points": np.zeros((4, 10, 3), np.float32), "category": np.zeros(4, np.int64)})
    runner.infer({"points": points, "category": np.array([3])})  # the padded shape again: buffers reused
    assert list(runner._buffers) == [((4, 10, 3), (4,)), ((2, 10, 3), (2,))]


def test_runner_shape_cache_is_bounded(monkeypatch, tmp_path):
    runner = _fake_runner(monkeypatch, tmp_path, max_cached_shapes=2)
    for n in (10, 20, 30, 10):
        runner.infer({"points": np.zeros((2, n, 3), np.float32), "category": np.zeros(2, np.int64)})
    assert list(runner._buffers) == [((2, 30, 3), (2,)), ((2, 10, 3), (2,))]


def test_runner_checks_feeds_against_the_specs(monkeypatch, tmp_path):
    from pointserve.errors import InputError

    runner = _fake_runner(monkeypatch, tmp_path)
    with pytest.raises(InputError, match="missing input 'category'"):
        runner.infer({"points": np.zeros((2, 10, 3), np.float32)})
    with pytest.raises(InputError, match="outside"):
        runner.infer({"points": np.zeros((9, 10, 3), np.float32), "category": np.zeros(9, np.int64)})


def test_runner_without_specs_reads_raw_cloud_inputs_from_the_record(tmp_path):
    from pointserve.engines.tensorrt.runner import TensorRTRunner

    plan = tmp_path / "fp16-tensorrt.plan"
    info = make_build_info(
        H100, "11.0.0.5", profile_from_flags(64, max_batch=8), workspace_mib=64, build_time_s=1, builder_flags=[]
    )
    write_sidecar(plan, info)
    runner = TensorRTRunner(plan)
    assert runner.input_specs == point_cloud_inputs(3) and runner.output_specs == []
    assert runner.limits.max_batch == 8 and runner.name == "tensorrt:fp16-tensorrt.plan"
    with pytest.raises(EngineCompatibilityError, match="no build record"):
        TensorRTRunner(tmp_path / "other.plan")


def test_cuda_event_timer_times_the_runners_own_steps(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from pointserve.bench.phases import timed_call
    from pointserve.engines.tensorrt import cuda_rt

    runner = _fake_runner(monkeypatch, tmp_path)
    runner.stream.stream = "stream"
    records = []
    fake = SimpleNamespace(
        cudaError_t=SimpleNamespace(cudaSuccess=0),
        cudaEventCreate=lambda: (0, object()),
        cudaEventRecord=lambda event, stream: records.append(stream) or (0,),
        cudaEventElapsedTime=lambda a, b: (0, 2.0),
    )
    monkeypatch.setattr(cuda_rt, "load_cudart", lambda: fake)
    call, gpu = timed_call(runner)
    assert gpu
    phases = call({"points": np.ones((1, 10, 3), np.float32), "category": np.array([1])})
    assert (phases.h2d_s, phases.gpu_compute_s, phases.d2h_s) == (0.002, 0.002, 0.002)
    assert phases.enqueue_s >= 0 and records == ["stream"] * 4 and runner.context.calls == [(2, 10, 3)]
    runner.cuda_graph = True  # replayed graphs record no events between their steps: host timing
    _, gpu = timed_call(runner)
    assert not gpu


def test_create_runner_gives_a_plan_runner_within_the_cards_limits_and_the_profile(repository, tmp_path):
    from pointserve.engines import create_runner
    from pointserve.engines.tensorrt.runner import TensorRTRunner

    version = repository.open("tiny-seg")
    profile = profile_from_flags(64, needs_category=True, min_batch=2, max_batch=16, max_points=512)
    info = make_build_info(H100, "11.0.0.5", profile, workspace_mib=64, build_time_s=1, builder_flags=[])
    plan = tmp_path / "fp16.plan"
    plan.write_bytes(b"not really a plan")
    version.add_variant("fp16-tensorrt", plan, precision="fp16", backend="tensorrt", source="fp32", built_for=info)
    runner = create_runner(version, "fp16-tensorrt", max_batch=32)  # made, not loaded: no GPU needed
    assert isinstance(runner, TensorRTRunner) and runner.name == "tiny-seg/1/fp16-tensorrt"
    assert runner.input_specs == version.manifest.inputs and runner.output_specs == version.manifest.outputs
    assert runner.limits.dims == {"batch": (1, 16), "num_points": (1, 512)}
    assert runner.limits.value_bounds == {"category": len(version.card.class_names)}
    with pytest.raises(ConfigError, match="does not run on tensorrt"):
        create_runner(version, "fp32", backend="tensorrt")


def test_a_concat_family_profile_counts_the_batchs_points_and_sizes_its_coarser_levels():
    """pcn-like inputs: points of the whole batch, a coarser level, and per-cloud pooling rows."""
    from tiny_models import tiny_card

    from pointserve.models import get_spec

    card = tiny_card("pcn_cls_small")
    inputs = get_spec("pcn_cls_small").inputs(card)
    profile = profile_from_flags(256, inputs=inputs, max_batch=8, opt_batch=4, max_points=1024, concat=True)
    assert profile.dims["num_points"] == (1, 4 * 256, 8 * 1024)
    assert profile.dims["points_3"] == profile.dims["pool_size"] == profile.dims["num_points"]
    assert profile.shapes()["down_1"][2] == (8 * 1024, card.preprocessing["down_sample_k"])
    # without concat the coarser levels are unsized: the build says so instead of guessing
    with pytest.raises(ConfigError, match="does not size"):
        profile_from_flags(256, inputs=inputs, max_batch=8)
