"""Numeric text (rows of numbers separated by whitespace or commas) as untrusted input, shared by the text
formats (XYZ/TXT, ModelNet's ``.txt``, ShapeNet's ``.pts``) and PCD's ASCII body; and reading a file's bytes
with an error that names it (every format module)."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from pointserve.errors import DataError

_MAX_HEADER_BYTES = 65536  # no format's header may be longer: bounds what is read before any check

Columns = dict[str, np.ndarray]


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a file, or a DataError naming it when it is missing or unreadable."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def parse_numeric_text(
    data: bytes,
    name: str,
    *,
    dtype: type = np.float32,
    delimiter: str | None = None,
    min_columns: int = 1,
    max_rows: int | None = None,
    skip_header: bool = False,
    first_line: int = 1,
) -> np.ndarray:
    """Parse rows of numbers separated by whitespace or commas (``delimiter=None``) or by ``delimiter``.

    Blank lines and ``#`` comments are skipped; with ``skip_header`` a first line that is not numeric is
    skipped. Every row must have the same number of values. ``first_line`` is the line number of
    ``data``'s first line in its file, so errors name the right line.

    Shapes:
        returns (rows, columns) of ``dtype``; (0, min_columns) when there are no rows.
    """
    if delimiter is None and b"," in data:
        data = data.replace(b",", b" ")
    if skip_header:
        data, first_line = _drop_text_header(data, first_line, delimiter)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": handled below
            table = np.loadtxt(io.BytesIO(data), dtype=dtype, delimiter=delimiter, ndmin=2, max_rows=max_rows)
    except (ValueError, OverflowError):
        raise DataError(f"{name}: {_locate_text_error(data, dtype, delimiter, first_line)}") from None
    if table.size == 0:
        return np.zeros((0, min_columns), dtype=dtype)
    if table.shape[1] < min_columns:
        raise DataError(f"{name}: rows have {table.shape[1]} values, expected at least {min_columns}")
    return table


def _split_line(line: bytes, delimiter: str | None) -> list[bytes]:
    line = line.split(b"#", 1)[0]
    if delimiter is None:
        return line.split()
    return [] if not line.strip() else [t.strip() for t in line.split(delimiter.encode())]


def _drop_text_header(data: bytes, first_line: int, delimiter: str | None) -> tuple[bytes, int]:
    lines = data.split(b"\n")
    for index, line in enumerate(lines):
        tokens = _split_line(line, delimiter)
        if not tokens:
            continue
        try:
            [float(t) for t in tokens]
        except ValueError:  # a column-name line such as "x y z": skip it, keep line numbers right
            return b"\n".join(lines[index + 1 :]), first_line + index + 1
        break
    return data, first_line


def _locate_text_error(data: bytes, dtype: type, delimiter: str | None, first_line: int) -> str:
    """Find the line np.loadtxt rejected (its own row numbers skip blank lines) and say what is wrong."""
    convert = int if np.issubdtype(dtype, np.integer) else float
    width = None
    for number, line in enumerate(data.split(b"\n"), start=first_line):
        tokens = _split_line(line, delimiter)
        if not tokens:
            continue
        if width is not None and len(tokens) != width:
            return f"line {number} has {len(tokens)} values, expected {width}"
        width = len(tokens)
        for token in tokens:
            try:
                convert(token)
            except ValueError:
                return f"line {number}: {token.decode(errors='replace')[:40]!r} is not a number"
    return "malformed numeric text"
