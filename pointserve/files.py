"""Atomic file writes and hashes: what every stage that writes files uses (the repository, training state, the
epoch cache).

A write goes to a hidden temporary file in the destination's folder, is fsynced, then renamed over the
destination (``os.replace`` is atomic within one file system): readers see the old file or the whole new
one, never a part. A crash leaves at most a ``.<name>.tmp-<pid>-<random>`` file behind, which nothing reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pointserve.errors import IntegrityError

TMP_MARK = ".tmp-"
FILE_MODE = 0o644
_HASH_CHUNK_BYTES = 1 << 20


def _tmp_path_for(path: Path) -> Path:
    # Hidden, unique, same folder (os.replace is only atomic within one file system).
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a folder be opened, hence the guard.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a temporary file and rename it to ``path``: readers see the old file or the
    whole new one, never a part (for writers that stream, such as ``np.savez``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path_for(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(src: str | Path, dest: str | Path, *, move: bool = False) -> Path:
    """Place ``src`` at ``dest`` atomically (copy or move through a fsynced temporary file)."""
    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path_for(dest)
    try:
        if move:
            try:
                os.replace(src, tmp)  # same file system: a rename, no copy
            except OSError:
                shutil.copyfile(src, tmp)
                src.unlink()
        else:
            shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        # A moved temporary file keeps mkstemp's 0600; a repository file must be readable by the server's user.
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)
    return dest


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, size_bytes: int, sha256: str) -> None:
    """Raise :class:`IntegrityError` naming ``path`` unless it exists with exactly this size and hash."""
    if not path.is_file():
        raise IntegrityError(f"{path}: file named in the manifest is missing")
    size = path.stat().st_size
    if size != size_bytes:
        raise IntegrityError(
            f"{path}: size {size} bytes differs from the manifest's {size_bytes} (half written or replaced)"
        )
    digest = sha256_file(path)
    if digest != sha256:
        raise IntegrityError(f"{path}: sha256 {digest[:16]}... differs from the manifest's {sha256[:16]}... (tampered)")


__all__ = [
    "TMP_MARK",
    "atomic_copy",
    "atomic_write",
    "fsync_dir",
    "atomic_write_bytes",
    "atomic_write_text",
    "sha256_file",
    "verify_file",
]
