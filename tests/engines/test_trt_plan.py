"""TensorRT logic that needs no TensorRT: profiles, names, build records, compatibility checks."""

from __future__ import annotations

import pytest

from pointserve.engines.gpu import GpuInfo, parse_nvidia_smi_csv
from pointserve.engines.trt_plan import (
    ShapeProfile,
    builder_flags_for,
    check_plan_compatible,
    make_build_info,
    onnx_variant_for,
    plan_file_name,
    profile_from_build_info,
    profile_from_flags,
    read_sidecar,
    sidecar_path,
    tensorrt_variant_name,
    timing_cache_file_name,
    write_sidecar,
)
from pointserve.errors import ConfigError, EngineCompatibilityError

H100 = GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0", memory_total_mib=81559)


def test_profile_defaults():
    profile = profile_from_flags(1024)
    assert (profile.min_batch, profile.opt_batch, profile.max_batch) == (1, 64, 64)
    assert (profile.min_points, profile.opt_points, profile.max_points) == (1, 1024, 2048)
    assert profile.shapes() == {"points": ((1, 1, 3), (64, 1024, 3), (64, 2048, 3))}
    small = profile_from_flags(64, max_batch=8)
    assert (small.opt_batch, small.opt_points, small.max_points) == (8, 64, 2048)


def test_profile_flags_and_category():
    profile = profile_from_flags(
        2048, channels=6, needs_category=True, min_batch=2, opt_batch=16, max_batch=32, opt_points=512, max_points=4096
    )
    assert profile.shapes("pts", "cat") == {
        "pts": ((2, 1, 6), (16, 512, 6), (32, 4096, 6)),
        "cat": ((2,), (16,), (32,)),
    }
    limits = profile.limits(num_categories=16)
    assert (limits.max_batch, limits.max_points, limits.channels, limits.needs_category) == (32, 4096, 6, True)
    # opt points above the default maximum raise the maximum with them
    assert profile_from_flags(64, opt_points=5000).max_points == 5000


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
        ShapeProfile(1, 1, 1, 1, 1, 1, channels=2)
