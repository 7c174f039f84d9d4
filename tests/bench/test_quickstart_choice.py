"""The quickstart serves the fastest variant whose accuracy is within 1 point of fp32."""

import shutil

from rich.console import Console

from pointserve.quickstart import choose_variant
from pointserve.repository import Repository


def test_a_variant_more_than_one_point_below_fp32_is_never_served(bench_repository, tmp_path):
    root = shutil.copytree(bench_repository, tmp_path / "repository")
    version = Repository(root).open("tiny-shapes")
    fp32 = version.manifest.variant("fp32").accuracy
    version.set_accuracy("fp16", fp32.model_copy(update={"overall_acc": fp32.overall_acc - 0.0101}))
    choice = choose_variant(version, Console(quiet=True), batch=2, num_points=64, duration_s=0.2)
    assert choice == {"variant": "fp32"}
