"""``export-triton``: one model version of a pointserve repository as a Triton model repository.

    DIR/<model>/config.pbtxt      the description GET /v2/models/{m}/config answers, of the graph's tensors
    DIR/<model>/labels.txt        one class (or part) name per logit, named by the output's label_filename
    DIR/<model>/1/model.onnx      the chosen ONNX variant (or 1/model.plan for a TensorRT variant)
    DIR/README.md                 what pointserve does that Triton will not, per exported model

Triton runs the graph as it is. So what pointserve does around the graph stays behind, and the README says so for
each model: normalising raw coordinates, resampling big clouds, padding clouds of different sizes into one batch
(Triton batches only requests of equal shape), a family's CPU preprocessing (neighbourhood indices the graph takes
as inputs), and the category a part-segmentation client must send.

The model folder is written next to its final place and renamed into it, so a failed export leaves any earlier
one whole; an existing folder is replaced only with ``force`` (and only if it is a Triton model folder).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pointserve.card import ModelCard
from pointserve.engines.backends import oip_platform
from pointserve.errors import ConfigError, RepositoryError
from pointserve.models.registry import get_spec
from pointserve.models.spec import identity_preprocessor
from pointserve.repository.store import ModelVersion
from pointserve.repository.triton import (
    LABELS_FILE,
    MODEL_FILE_OF_PLATFORM,
    Scheduling,
    config_pbtxt,
    labels,
    metadata_shape,
    model_config,
)

CONFIG_FILE = "config.pbtxt"
README_FILE = "README.md"
TRITON_VERSION_FOLDER = "1"


@dataclass(frozen=True)
class TritonExport:
    """What :func:`export_triton` wrote."""

    model_dir: Path
    config: dict
    config_file: Path
    model_file: Path
    labels_file: Path | None
    readme: Path
    notes: list[str]


def _platform(model_version: ModelVersion, variant_name: str) -> str:
    manifest = model_version.manifest
    names = [v.name for v in manifest.variants]
    if variant_name not in names:
        raise ConfigError(
            f"model {manifest.name!r} v{manifest.version} has no variant {variant_name!r} "
            f"(variants: {', '.join(names)})"
        )
    platform = oip_platform(model_version.variant(variant_name).backend)
    if platform not in MODEL_FILE_OF_PLATFORM:
        exportable = [v.name for v in manifest.variants if oip_platform(v.backend) in MODEL_FILE_OF_PLATFORM]
        raise ConfigError(
            f"variant {variant_name!r} runs on {model_version.variant(variant_name).backend}, which Triton cannot "
            f"load from this repository; export an ONNX or TensorRT variant: {', '.join(exportable) or 'none'}"
        )
    return platform


def _plan_max_batch(model_version: ModelVersion, variant_name: str) -> int | None:
    """The largest batch a TensorRT plan's optimisation profile takes (the smallest max batch of its inputs)."""
    built = model_version.variant(variant_name).built_for
    if built is None or not built.max_shape:
        return None
    return min(shape[0] for shape in built.max_shape.values() if shape)


def notes_for(card: ModelCard, config: dict) -> list[str]:
    """What a Triton client of this model (``config``: its :func:`model_config`) must do itself, one line each."""
    spec = get_spec(card.architecture)
    notes = []
    if card.normalization != "none":
        notes.append(
            f"Send normalised coordinates: pointserve normalises raw clouds on the server ({card.normalization}: "
            "centre xyz on their centroid, scale them into the unit sphere); Triton runs the graph on what it gets."
        )
    if config["max_batch_size"] > 0:
        notes.append(
            "Triton batches only requests of equal shape: clouds of different sizes form separate batches. "
            + (
                "pointserve pads them by repeating points (exact for this max-pooled network); a client may do the "
                "same before sending."
                if spec.collate == "repeat"
                else "pointserve batches them only by size too (this network's answer changes when a point repeats)."
            )
        )
    else:
        notes.append(
            f"No batching in Triton (max_batch_size 0): the graph's tensors do not all start with the batch "
            f"dimension (pointserve concatenates clouds, collate policy {spec.collate!r}); one cloud per request."
        )
    if spec.index_inputs or spec.preprocess is not identity_preprocessor:
        extra = [t["name"] for t in config["input"] if t["name"] not in ("points", "category")]
        notes.append(
            "CPU preprocessing does not travel: the graph takes neighbourhood / sampling indices that pointserve "
            f"computes on the CPU for every cloud ({', '.join(extra)}); compute them with pointserve.geometry "
            "(the family's preprocessor) in the client or a Triton Python-backend step before this model."
        )
    if card.needs_category:
        category = next(t for t in config["input"] if t["name"] == "category")
        shape = metadata_shape(category, config["max_batch_size"])
        notes.append(
            f"Send the object category as input 'category' (INT64, shape {shape}): ids 0..{len(card.class_names) - 1}"
            f" = {', '.join(card.class_names)}. pointserve also takes names; Triton only ids."
        )
    if card.task != "classification":
        notes.append(
            "Triton answers the points it is sent: pointserve resamples a cloud above its point limit and still "
            "answers every input point (each takes its nearest processed point's logits)."
        )
    notes.append(
        "pointserve's input checks (finite coordinates, point limits) and its admission control (503 before a "
        "body is read, 504 past a deadline) are Triton's to configure (max_queue_size, default_timeout_microseconds)."
    )
    return notes


_SECTION = re.compile(r"<!-- model (?P<name>[A-Za-z0-9._-]+) -->\n.*?<!-- end (?P=name) -->\n", re.S)
_README_HEAD = """# Triton model repository

Written by `pointserve export-triton`. Serve it with `tritonserver --model-repository <this folder>`.
Each model's `config.pbtxt` is the description pointserve answers at `GET /v2/models/<model>/config`, of the
graph's own tensors; below, per model, what pointserve does around the graph that Triton does not.

"""


def _write_readme(output: Path, name: str, section: str) -> Path:
    """Add (or replace) this model's section, keep those of the other models still in the folder."""
    readme = output / README_FILE
    sections = {}
    if readme.is_file():
        for match in _SECTION.finditer(readme.read_text()):
            if (output / match["name"] / CONFIG_FILE).is_file():
                sections[match["name"]] = match.group(0)
    sections[name] = f"<!-- model {name} -->\n{section}<!-- end {name} -->\n"
    readme.write_text(_README_HEAD + "\n".join(sections[n] for n in sorted(sections)))
    return readme


def _section(model_version: ModelVersion, variant_name: str, config: dict, notes: list[str]) -> str:
    variant = model_version.variant(variant_name)
    tensors = "\n".join(
        f"- {kind} `{t['name']}`: {t['data_type'].removeprefix('TYPE_')} {metadata_shape(t, config['max_batch_size'])}"
        for kind, key in (("input", "input"), ("output", "output"))
        for t in config[key]
    )
    lines = "\n".join(f"- {note}" for note in notes)
    return (
        f"## {config['name']}\n\n"
        f"From pointserve model `{model_version.name}` version {model_version.version}, variant `{variant.name}` "
        f"({variant.precision}, {variant.backend}, sha256 `{variant.sha256[:16]}…`).\n\n"
        f"{tensors}\n\nWhat does not travel:\n\n{lines}\n\n"
    )


def _replace_dir(staged: Path, target: Path, force: bool) -> None:
    if target.exists():
        if not force:
            raise RepositoryError(f"{target} exists; pass --force to replace it")
        if not (target / CONFIG_FILE).is_file():
            raise RepositoryError(f"{target} is not a Triton model folder (no {CONFIG_FILE}); not replacing it")
        old = target.with_name(f".{target.name}.old-{staged.name}")
        target.rename(old)
        staged.rename(target)
        shutil.rmtree(old)
    else:
        staged.rename(target)


def export_triton(
    model_version: ModelVersion,
    output: str | Path,
    *,
    variant: str = "fp32",
    max_batch_size: int = 32,
    max_queue_delay_ms: float = 0.0,
    preferred_batch_sizes: tuple[int, ...] = (),
    instance_count: int = 1,
    instance_kind: str | None = None,
    force: bool = False,
) -> TritonExport:
    """Write ``output/<model>/`` (config, labels, the variant's file) and ``output/README.md``.

    ``instance_kind``: ``KIND_CPU`` or ``KIND_GPU`` (default: GPU for a TensorRT plan, else CPU).
    """
    platform = _platform(model_version, variant)
    name = model_version.name
    if platform == "tensorrt_plan":
        if instance_kind == "KIND_CPU":
            raise ConfigError(f"variant {variant!r} is a TensorRT plan: it runs on a GPU only (instance kind GPU)")
        instance_kind = "KIND_GPU"
        plan_batch = _plan_max_batch(model_version, variant)
        max_batch_size = min(max_batch_size, plan_batch) if plan_batch else max_batch_size
    source = model_version.variant_path(variant, verify=True)  # the size and sha256 the manifest records
    manifest = model_version.manifest
    names = labels(manifest.card)
    label_file = LABELS_FILE if names else None
    config = model_config(
        name,
        platform=platform,
        inputs=manifest.inputs,
        outputs=manifest.outputs,
        scheduling=Scheduling(
            max_batch_size=max_batch_size,
            max_queue_delay_us=round(max_queue_delay_ms * 1000),
            preferred_batch_sizes=preferred_batch_sizes,
            instance_kind=instance_kind or "KIND_CPU",  # type: ignore[arg-type]
            instance_count=instance_count,
        ),
        label_filename=label_file,
    )
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{name}.export-", dir=output))
    try:
        (staged / CONFIG_FILE).write_text(config_pbtxt(config))
        if label_file:
            (staged / label_file).write_text("".join(f"{label}\n" for label in names))
        version_dir = staged / TRITON_VERSION_FOLDER
        version_dir.mkdir()
        shutil.copyfile(source, version_dir / MODEL_FILE_OF_PLATFORM[platform])
        staged.chmod(0o755)  # mkdtemp makes it private; a Triton container runs as another user
        _replace_dir(staged, output / name, force)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    model_dir = output / name
    notes = notes_for(manifest.card, config)
    readme = _write_readme(output, name, _section(model_version, variant, config, notes))
    return TritonExport(
        model_dir=model_dir,
        config=config,
        config_file=model_dir / CONFIG_FILE,
        model_file=model_dir / TRITON_VERSION_FOLDER / MODEL_FILE_OF_PLATFORM[platform],
        labels_file=model_dir / label_file if label_file else None,
        readme=readme,
        notes=notes,
    )


__all__ = ["CONFIG_FILE", "README_FILE", "TritonExport", "export_triton", "notes_for"]
