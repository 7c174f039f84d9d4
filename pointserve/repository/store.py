"""The on-disk model repository: ``<root>/<model>/<version>/manifest.json`` plus the variant files.

Every write is atomic (temporary file in the same folder, fsync, ``os.replace``), and a variant file is
placed *before* the manifest that names it is rewritten, under a new name when it replaces a file the
manifest still points at. So a crash at any moment leaves either the old manifest with its old, intact
files or the new manifest with its new, intact files — never a manifest pointing at a partial file.
Loading a variant checks its size and sha256 against the manifest and refuses a tampered or half-written
file with :class:`~pointserve.errors.IntegrityError` naming it.

Layout::

    <root>/<model>/<version>/manifest.json
    <root>/<model>/<version>/fp32.onnx, fp16.onnx, int8.onnx, fp16-tensorrt.plan, ...
    <root>/<model>/<version>/calibration/*.npz
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import ValidationError

from pointserve.card import ModelCard
from pointserve.errors import ModelNotFoundError, RepositoryError
from pointserve.files import (
    TMP_MARK,
    atomic_copy,
    atomic_write_bytes,
    atomic_write_text,
    fsync_dir,
    sha256_file,
    verify_file,
)
from pointserve.repository.manifest import (
    MANIFEST_FILE,
    AccuracyInfo,
    Backend,
    BuildInfo,
    CalibrationInfo,
    Manifest,
    Precision,
    TensorSpec,
    Variant,
)

CALIBRATION_DIR = "calibration"
LOCK_FILE = ".lock"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str, what: str = "model") -> str:
    """Model and variant names become file and folder names: letters, digits, ``._-`` only."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RepositoryError(f"invalid {what} name {name!r}: use letters, digits, '.', '_' or '-' (max 128)")
    return name


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a ``manifest.json``; a malformed one is a :class:`RepositoryError` naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RepositoryError(f"{path}: manifest not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RepositoryError(f"{path}: manifest is not valid JSON ({exc})") from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RepositoryError(f"{path}: invalid manifest: {where}: {first['msg']}") from None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An advisory inter-process lock (POSIX flock) so two writers never lose each other's manifest edits."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: single writer assumed
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# -- one version of one model -------------------------------------------------------------------------------
class ModelVersion:
    """A folder ``<root>/<name>/<version>/`` and its manifest."""

    def __init__(self, path: str | Path, manifest: Manifest | None = None):
        self.path = Path(path)
        self.manifest = manifest if manifest is not None else load_manifest(self.path / MANIFEST_FILE)
        self.name = self.manifest.name
        self.version = self.manifest.version

    def __repr__(self) -> str:
        return f"ModelVersion({self.name!r}, {self.version}, variants={[v.name for v in self.manifest.variants]})"

    @property
    def card(self) -> ModelCard:
        return self.manifest.card

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def calibration_dir(self) -> Path:
        """``<version>/calibration/``; may not exist yet (writers create it)."""
        return self.path / CALIBRATION_DIR

    def variant_names(self) -> list[str]:
        return [v.name for v in self.manifest.variants]

    def variant(self, name: str) -> Variant:
        try:
            return self.manifest.variant(name)
        except KeyError:
            known = ", ".join(self.variant_names()) or "none"
            raise ModelNotFoundError(f"{self.name} v{self.version} has no variant {name!r} (has: {known})") from None

    def has_variant(self, name: str) -> bool:
        return name in self.variant_names()

    # -- reading ----------------------------------------------------------------------------------------
    def variant_path(self, name: str, verify: bool = True) -> Path:
        """The variant's file; with ``verify`` its size and sha256 are checked against the manifest."""
        variant = self.variant(name)
        path = self.path / variant.file
        if verify:
            verify_file(path, variant.size_bytes, variant.sha256)
        return path

    def reload(self) -> Manifest:
        self.manifest = load_manifest(self.manifest_path)
        return self.manifest

    # -- writing ----------------------------------------------------------------------------------------
    def save_manifest(self) -> None:
        """Atomically rewrite ``manifest.json`` from :attr:`manifest`."""
        atomic_write_text(self.manifest_path, self.manifest.model_dump_json(indent=2) + "\n")

    @contextlib.contextmanager
    def editing(self) -> Iterator[Manifest]:
        """Lock, reload the manifest from disk, let the caller edit it, save it atomically.

        Re-reading under the lock means two processes (a build and an evaluation) never drop each
        other's variants.
        """
        with _file_lock(self.path / LOCK_FILE):
            if self.manifest_path.exists():
                self.reload()
            yield self.manifest
            self.save_manifest()

    def add_variant(
        self,
        name: str,
        src: str | Path,
        *,
        precision: Precision,
        backend: Backend,
        source: str | None = None,
        built_for: BuildInfo | None = None,
        calibration: CalibrationInfo | None = None,
        accuracy: AccuracyInfo | None = None,
        move: bool = True,
    ) -> Variant:
        """Place ``src`` in the version folder and record it (sha256, size); replaces a variant of that name.

        The file lands first (atomically), the manifest is rewritten after; the replaced file is deleted
        last. ``src`` may already be inside the folder (it is then recorded where it is).
        """
        check_name(name, "variant")
        src = Path(src)
        if not src.is_file():
            raise RepositoryError(f"{src}: variant file not found")
        with self.editing() as manifest:
            referenced = {v.file for v in manifest.variants}
            previous = next((v for v in manifest.variants if v.name == name), None)
            in_place = src.resolve().parent == self.path.resolve() and src.name not in referenced
            if in_place:
                dest = src
            else:
                digest = sha256_file(src)
                dest = self.path / f"{name}{''.join(src.suffixes[-1:])}"
                if dest.name in referenced:
                    # Never overwrite a file the current manifest names: a crash before the manifest is
                    # rewritten would leave it pointing at different bytes.
                    dest = self.path / f"{name}.{digest[:12]}{''.join(src.suffixes[-1:])}"
                atomic_copy(src, dest, move=move)
            variant = Variant(
                name=name,
                precision=precision,
                backend=backend,
                file=dest.name,
                sha256=sha256_file(dest),
                size_bytes=dest.stat().st_size,
                source=source,
                built_for=built_for,
                calibration=calibration,
                accuracy=accuracy,
            )
            manifest.variants = [v for v in manifest.variants if v.name != name] + [variant]
        if previous is not None and previous.file != variant.file:
            still_used = {v.file for v in self.manifest.variants}
            if previous.file not in still_used:
                (self.path / previous.file).unlink(missing_ok=True)
        return variant

    def set_accuracy(self, name: str, accuracy: AccuracyInfo) -> None:
        with self.editing() as manifest:
            self.variant(name)  # clear error for an unknown name
            manifest.variants = [
                v.model_copy(update={"accuracy": accuracy}) if v.name == name else v for v in manifest.variants
            ]

    def set_reference_accuracy(self, accuracy: AccuracyInfo) -> None:
        """Record the PyTorch fp32 result every variant is compared with."""
        with self.editing() as manifest:
            manifest.reference_accuracy = accuracy

    def update(self, edit: Callable[[Manifest], None]) -> None:
        """Apply ``edit`` to the manifest under the lock and save it (for fields without a helper)."""
        with self.editing() as manifest:
            edit(manifest)

    def remove_variant(self, name: str) -> None:
        with self.editing() as manifest:
            variant = self.variant(name)
            manifest.variants = [v for v in manifest.variants if v.name != name]
        if variant.file not in {v.file for v in self.manifest.variants}:
            (self.path / variant.file).unlink(missing_ok=True)

    def leftover_tmp_files(self) -> list[Path]:
        """Temporary files of writes that never finished (a crash); harmless, safe to delete."""
        return sorted(p for p in self.path.rglob(f".*{TMP_MARK}*") if p.is_file())


# -- the repository -------------------------------------------------------------------------------------------
class Repository:
    """``<root>/<model>/<version>/``: lists, opens and creates model versions."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Repository({str(self.root)!r})"

    def models(self) -> list[str]:
        """Names of the models with at least one complete version (a folder with a manifest)."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and _NAME_RE.match(p.name) and self.versions(p.name)
        )

    def versions(self, name: str) -> list[int]:
        """Version numbers of ``name`` in ascending order (only folders holding a manifest count)."""
        model_dir = self.root / name
        if not model_dir.is_dir():
            return []
        return sorted(
            int(p.name)
            for p in model_dir.iterdir()
            if p.is_dir() and p.name.isdigit() and (p / MANIFEST_FILE).is_file()
        )

    def open(self, name: str, version: int | None = None) -> ModelVersion:
        """Open version ``version`` of model ``name`` (the latest when ``None``)."""
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.models()) or "none"
            raise ModelNotFoundError(f"no model {name!r} in repository {self.root} (models: {known})")
        if version is None:
            version = versions[-1]
        elif version not in versions:
            raise ModelNotFoundError(f"model {name!r} has no version {version} (versions: {versions})")
        model_version = ModelVersion(self.root / name / str(version))
        if (model_version.name, model_version.version) != (name, version):
            raise RepositoryError(
                f"{model_version.manifest_path}: manifest says {model_version.name} v{model_version.version}, "
                f"but the folder is {name}/{version}"
            )
        return model_version

    def create_version(
        self,
        name: str,
        manifest_without_variants: Manifest | None = None,
        *,
        card: ModelCard | None = None,
        inputs: list[TensorSpec] | None = None,
        outputs: list[TensorSpec] | None = None,
        export_report: dict | None = None,
    ) -> ModelVersion:
        """Create ``<root>/<name>/<next version>/`` with its manifest (no variants yet).

        The folder is assembled under a temporary name and renamed into place, so a version folder
        without a manifest never appears. Pass either a manifest (its name/version are overwritten) or
        ``card``, ``inputs`` and ``outputs``.
        """
        check_name(name)
        if manifest_without_variants is None:
            if card is None or inputs is None or outputs is None:
                raise RepositoryError("create_version needs a manifest or card, inputs and outputs")
            base = {"card": card, "inputs": inputs, "outputs": outputs, "export": export_report or {}}
        else:
            base = manifest_without_variants.model_dump()
            base.update(variants=[])
            if export_report is not None:
                base["export"] = export_report
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(model_dir / LOCK_FILE):
            existing = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
            version = max(existing, default=0) + 1
            manifest = Manifest.model_validate({**base, "name": name, "version": version})
            staging = model_dir / f".{version}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
            staging.mkdir()
            try:
                atomic_write_text(staging / MANIFEST_FILE, manifest.model_dump_json(indent=2) + "\n")
                os.rename(staging, model_dir / str(version))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            fsync_dir(model_dir)
        return ModelVersion(model_dir / str(version), manifest)


__all__ = [
    "ModelVersion",
    "Repository",
    "atomic_copy",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_name",
    "load_manifest",
    "sha256_file",
    "verify_file",
]
