"""``pointserve repo list`` and ``pointserve repo show``: the repository as tables."""

from __future__ import annotations

import argparse
from pathlib import Path

from pointserve.arguments import DEFAULT_REPOSITORY


def register(subparsers: argparse._SubParsersAction) -> None:
    repo = subparsers.add_parser("repo", help="list the model repository or show one model version")
    repo_sub = repo.add_subparsers(dest="repo_command", metavar="ACTION", required=True)

    listing = repo_sub.add_parser("list", help="every model, its versions and variants")
    listing.add_argument("--repository", default=DEFAULT_REPOSITORY, help="repository folder (default ./repository)")
    listing.set_defaults(handler=_list)

    show = repo_sub.add_parser("show", help="one model version: card, tensors, variants, accuracy, build records")
    show.add_argument("model", help="model name, name:version, or a version folder")
    show.add_argument("--version", type=int, help="version number (default: the latest)")
    show.add_argument("--repository", default=DEFAULT_REPOSITORY, help="repository folder (default ./repository)")
    show.add_argument("--verify", action="store_true", help="also check every file's size and sha256")
    show.set_defaults(handler=_show)


def resolve_model_version(target: str, repository: str | Path | None = None, version: int | None = None):
    """A :class:`ModelVersion` from a version folder, a model folder (latest version) or a repository name
    (``name`` or ``name:version``)."""
    from pointserve.errors import ModelNotFoundError
    from pointserve.repository.manifest import MANIFEST_FILE
    from pointserve.repository.store import ModelVersion, Repository

    path = Path(target)
    if (path / MANIFEST_FILE).is_file():
        return ModelVersion(path)
    if path.is_dir() and any(p.name.isdigit() for p in path.iterdir()):
        return Repository(path.parent).open(path.name, version)
    name, _, pinned = target.partition(":")
    if pinned:
        if not pinned.isdigit():
            raise ModelNotFoundError(f"bad version in {target!r}: expected name:NUMBER")
        version = int(pinned)
    if repository is not None and "/" not in name:
        return Repository(repository).open(name, version)
    raise ModelNotFoundError(f"{target}: not a model version folder, a model folder, or a model name")


def _size(num_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return ""  # pragma: no cover


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from pointserve.errors import RepositoryError
    from pointserve.repository.store import Repository

    repository = Repository(args.repository)
    if not repository.root.is_dir():
        raise RepositoryError(f"repository {repository.root} does not exist")
    table = Table(title=f"model repository {repository.root}")
    for column in ("model", "version", "task", "classes", "points", "variants", "created (UTC)"):
        table.add_column(column)
    for name in repository.models():
        for number in repository.versions(name):
            manifest = repository.open(name, number).manifest
            card = manifest.card
            table.add_row(
                name,
                str(number),
                card.task,
                str(len(card.class_names)),
                str(card.num_points),
                ", ".join(v.name for v in manifest.variants) or "-",
                manifest.created_utc,
            )
    console = Console()
    if table.row_count:
        console.print(table)
    else:
        console.print(f"repository {repository.root} holds no models")
    return 0


def _show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from pointserve.errors import IntegrityError

    model_version = resolve_model_version(args.model, args.repository, args.version)
    manifest = model_version.manifest
    card = manifest.card
    console = Console()
    console.print(f"[b]{manifest.name}[/b] version {manifest.version}  ({model_version.path})")
    console.print(
        f"{card.architecture} {card.config}  task={card.task}  classes={len(card.class_names)}  "
        f"points={card.num_points}  normalization={card.normalization}  dataset={card.dataset or '-'}"
    )
    tensors = Table(title="tensors")
    for column in ("", "name", "dtype", "shape"):
        tensors.add_column(column)
    for kind, specs in (("input", manifest.inputs), ("output", manifest.outputs)):
        for spec in specs:
            tensors.add_row(kind, spec.name, spec.dtype, str(spec.shape))
    console.print(tensors)

    variants = Table(title="variants")
    columns = ("variant", "precision", "backend", "file", "size", "sha256", "built for", "calibration", "accuracy")
    for column in columns:
        variants.add_column(column)
    for v in manifest.variants:
        built = v.built_for
        built_text = (
            f"{built.gpu_name} (sm {built.compute_capability}), TensorRT {built.tensorrt_version}" if built else "-"
        )
        calib = v.calibration
        calib_text = f"{calib.method}, {calib.num_samples} clouds, seed {calib.seed}" if calib else "-"
        acc = v.accuracy
        acc_text = "-"
        if acc is not None:
            second = f"mIoU {_pct(acc.mean_iou)}" if acc.mean_iou is not None else f"mAcc {_pct(acc.mean_class_acc)}"
            acc_text = f"acc {_pct(acc.overall_acc)}, {second}, agree {_pct(acc.agreement_with_fp32)}"
        status = v.sha256[:12]
        if args.verify:
            try:
                model_version.variant_path(v.name, verify=True)
                status += " ok"
            except IntegrityError:
                status += " [red]BAD[/red]"
        variants.add_row(
            v.name, v.precision, v.backend, v.file, _size(v.size_bytes), status, built_text, calib_text, acc_text
        )
    console.print(variants)
    shown: list = []  # int8-cpu shares int8's calibration: its search is printed once, for both
    for v in manifest.variants:
        if v.calibration is not None and v.calibration.search is not None and v.calibration not in shown:
            sharing = [w.name for w in manifest.variants if w.calibration == v.calibration]
            console.print(f"[b]{', '.join(sharing)}[/b]:", end=" ")
            print_search(console, v.calibration.search)
            shown.append(v.calibration)
    if manifest.reference_accuracy is not None:
        ref = manifest.reference_accuracy
        second = (
            f"mIoU {_pct(ref.mean_iou)}" if ref.mean_iou is not None else f"mean class acc {_pct(ref.mean_class_acc)}"
        )
        console.print(
            f"PyTorch fp32 reference: overall acc {_pct(ref.overall_acc)}, {second} "
            f"({ref.dataset} {ref.split}, {ref.num_samples} samples)"
        )
    if manifest.export:
        report = manifest.export
        keys = ("opset", "exporter", "max_abs_diff", "export_time_s")
        console.print("export: " + ", ".join(f"{k}={report[k]}" for k in keys if k in report))
    leftovers = model_version.leftover_tmp_files()
    if leftovers:
        console.print(f"[yellow]{len(leftovers)} leftover temporary file(s) of interrupted writes (safe to delete)")
    return 0


def print_search(console, search) -> None:
    """What ``--target-agreement`` tried and kept in float (also ``pointserve repo show``)."""
    from rich.table import Table

    verdict = "[green]reached[/green]" if search.reached_target else "[red]NOT reached[/red]"
    console.print(
        f"int8 search: target agreement {search.target_agreement} {verdict}: held-out agreement "
        f"{search.heldout_agreement:.4f} ({search.heldout_samples} held-out / {search.calibration_samples} "
        f"calibration clouds), mean |Δlogit| {search.heldout_mean_abs_logit_diff:.4f}, method {search.method} "
        f"(tried {', '.join(search.methods_tried)}; {len(search.trials)} graphs in {search.elapsed_s:.0f}s)"
    )
    if search.float_nodes:
        table = Table(title="kept in float")
        for column in ("node", "op", "why"):
            table.add_column(column)
        for node in search.float_nodes:
            table.add_row(node.name, node.op_type, node.reason)
        console.print(table)
    else:
        console.print("every quantisable node is int8")
