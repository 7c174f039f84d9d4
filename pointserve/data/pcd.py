"""PCD (the Point Cloud Library's format): ascii, binary and binary_compressed (LZF), read as columns.

Split out of :mod:`pointserve.data.formats`; the same untrusted-input rules hold: every count in a header
is checked against the bytes present before anything is allocated.
"""

from __future__ import annotations

import struct

import numpy as np

from pointserve.data.text import _MAX_HEADER_BYTES, Columns, parse_numeric_text
from pointserve.errors import DataError

# One LZF back-reference (3 bytes) expands to at most 264 bytes: a larger claimed ratio is a lie or a bomb.
_LZF_MAX_RATIO = 88

_PCD_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA")
_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8"}
_PCD_TYPES.update({("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"})


def read_pcd_columns(data: bytes, name: str) -> Columns:
    header, body_start, header_lines = _parse_pcd_header(data, name)
    fields = header["FIELDS"]
    sizes = _pcd_ints(header, "SIZE", name)
    types = [t.upper() for t in header["TYPE"]]
    counts = _pcd_ints(header, "COUNT", name) if "COUNT" in header else [1] * len(fields)
    for key, values in (("SIZE", sizes), ("TYPE", types), ("COUNT", counts)):
        if len(values) != len(fields):
            raise DataError(f"{name}: PCD header has {len(fields)} FIELDS but {len(values)} {key} entries")
    width = _pcd_ints(header, "WIDTH", name)[0]
    height = _pcd_ints(header, "HEIGHT", name)[0] if "HEIGHT" in header else 1
    points = _pcd_ints(header, "POINTS", name)[0] if "POINTS" in header else width * height
    if points != width * height:
        raise DataError(f"{name}: PCD header says POINTS {points} but WIDTH x HEIGHT = {width * height}")
    dtypes = []
    for field, size, kind in zip(fields, sizes, types, strict=True):
        if (kind, size) not in _PCD_TYPES:
            raise DataError(f"{name}: PCD field {field!r} has unsupported TYPE {kind} with SIZE {size}")
        dtypes.append(np.dtype("<" + _PCD_TYPES[kind, size]))
    body = memoryview(data)[body_start:]
    mode = header["DATA"][0].lower()
    row_bytes = sum(d.itemsize * c for d, c in zip(dtypes, counts, strict=True))
    if mode == "ascii":
        table = parse_numeric_text(bytes(body), name, dtype=np.float64, first_line=header_lines + 1)
        rows = len(table) if table.size else 0
        if rows != points or (rows and table.shape[1] != sum(counts)):
            raise DataError(
                f"{name}: PCD data has {rows} rows of {table.shape[1]} values, header says {points} x {sum(counts)}"
            )
        per_field = np.split(table.reshape(rows, sum(counts)), np.cumsum(counts)[:-1], axis=1)
    elif mode == "binary":
        if len(body) < points * row_bytes:
            raise DataError(
                f"{name}: truncated PCD: {points} points need {points * row_bytes} bytes, found {len(body)}"
            )
        record = np.dtype([(f"f{i}", d, (c,)) for i, (d, c) in enumerate(zip(dtypes, counts, strict=True))])
        rows = np.frombuffer(body, dtype=record, count=points)
        per_field = [rows[f"f{i}"] for i in range(len(fields))]
    elif mode == "binary_compressed":
        raw = _pcd_decompress(body, points * row_bytes, name)
        per_field, offset = [], 0
        # binary_compressed stores the fields one after the other (structure of arrays), not row by row.
        for dtype, count in zip(dtypes, counts, strict=True):
            values = np.frombuffer(raw, dtype=dtype, count=points * count, offset=offset)
            per_field.append(values.reshape(points, count))
            offset += points * count * dtype.itemsize
    else:
        raise DataError(f"{name}: unknown PCD DATA type {mode!r} (ascii, binary, binary_compressed)")
    columns: Columns = {}
    for field, count, values in zip(fields, counts, per_field, strict=True):
        if field == "_":  # padding
            continue
        for j in range(count):
            columns[field if count == 1 else f"{field}_{j}"] = values[:, j]
    return columns


def _parse_pcd_header(data: bytes, name: str) -> tuple[dict[str, list[str]], int, int]:
    header: dict[str, list[str]] = {}
    position = 0
    for number, line in enumerate(data[:_MAX_HEADER_BYTES].split(b"\n"), start=1):
        position += len(line) + 1
        text = line.split(b"#", 1)[0].decode("ascii", errors="replace").strip()
        if not text:
            continue
        key, *values = text.split()
        if key.upper() not in _PCD_KEYS:
            raise DataError(f"{name}: line {number}: unknown PCD header entry {key!r}")
        if not values:
            raise DataError(f"{name}: line {number}: PCD header entry {key} has no value")
        header[key.upper()] = values
        if key.upper() == "DATA":
            missing = [k for k in ("FIELDS", "SIZE", "TYPE", "WIDTH") if k not in header]
            if missing:
                raise DataError(f"{name}: PCD header lacks {', '.join(missing)}")
            return header, position, number
    raise DataError(f"{name}: not a PCD file (no DATA line in its header)")


def _pcd_ints(header: dict[str, list[str]], key: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in header[key]]
    except ValueError:
        raise DataError(f"{name}: PCD header {key} must be integers, got {' '.join(header[key])!r}") from None
    if any(v < 0 for v in values):
        raise DataError(f"{name}: PCD header {key} must not be negative")
    return values


def _pcd_decompress(body: memoryview, expected: int, name: str) -> bytes:
    if len(body) < 8:
        raise DataError(f"{name}: truncated binary_compressed PCD (no size words)")
    compressed, uncompressed = struct.unpack("<II", body[:8])
    if uncompressed != expected:
        raise DataError(f"{name}: binary_compressed PCD holds {uncompressed} bytes, the header needs {expected}")
    if len(body) - 8 < compressed:
        raise DataError(f"{name}: truncated binary_compressed PCD ({compressed} bytes declared, {len(body) - 8} found)")
    if uncompressed > max(compressed, 1) * _LZF_MAX_RATIO:
        raise DataError(f"{name}: binary_compressed PCD claims an impossible compression ratio")
    try:
        return lzf_decompress(bytes(body[8 : 8 + compressed]), uncompressed)
    except ValueError as exc:
        raise DataError(f"{name}: corrupt binary_compressed PCD: {exc}") from None


def lzf_decompress(data: bytes, expected_size: int) -> bytes:
    """Decompress LZF (liblzf's format, used by PCL's binary_compressed PCD) to exactly ``expected_size`` bytes."""
    out = bytearray()
    position, end = 0, len(data)
    while position < end:
        control = data[position]
        position += 1
        if control < 32:  # a literal run of control + 1 bytes
            length = control + 1
            if position + length > end:
                raise ValueError("literal run past the end of the input")
            out += data[position : position + length]
            position += length
        else:  # a back-reference: length in the top 3 bits (7 = extended), distance in the rest + 1 byte
            length = control >> 5
            if length == 7:
                if position >= end:
                    raise ValueError("back-reference past the end of the input")
                length += data[position]
                position += 1
            if position >= end:
                raise ValueError("back-reference past the end of the input")
            distance = ((control & 0x1F) << 8) + data[position] + 1
            position += 1
            length += 2
            start = len(out) - distance
            if start < 0:
                raise ValueError("back-reference before the start of the output")
            chunk = out[start : start + length]
            out += (chunk * (length // len(chunk) + 1))[:length] if len(chunk) < length else chunk
        if len(out) > expected_size:
            raise ValueError(f"output exceeds the declared {expected_size} bytes")
    if len(out) != expected_size:
        raise ValueError(f"output has {len(out)} bytes, {expected_size} declared")
    return bytes(out)
