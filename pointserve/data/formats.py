"""Point-cloud files: PLY, PCD, XYZ/TXT, NPY, LAS/LAZ and LiDAR .bin (KITTI, nuScenes), read from a path or from
uploaded bytes, and written.

The service reads uploads with these functions and clients write their payloads with them, so every
reader treats its input as untrusted: a malformed file raises :class:`DataError` naming the file and the
problem, and no reader allocates from a count in a header before checking it against the bytes present.

Channels are taken by name where the format names its fields (PLY vertex properties, PCD ``FIELDS``, LAS
dimensions, the fixed columns of KITTI ``.bin``: x y z intensity, and nuScenes ``.pcd.bin``: x y z intensity
ring, see :mod:`pointserve.data.lidar_formats`); every other field (colours, intensity, PCL's packed ``rgb``,
alpha, curvature, ...) is ignored unless asked for. XYZ/TXT/NPY columns have no names: they are read in
pointserve's layout, x y z, then normals, then the rest.

Shapes:
    points returned: (N, C) float32, xyz in the first three columns. ``channels=3`` gives xyz,
    ``channels=6`` xyz + normals (PLY ``nx ny nz``, PCD ``normal_x normal_y normal_z``; an error if the
    file has none), ``channels=None`` every numeric per-point field (xyz, normals, then the rest in file
    order), ``channels=("x", "y", "z", "intensity")`` those fields by name, in that order. For XYZ/TXT/NPY,
    ``channels=k`` takes the first k columns and names mean columns of the layout above (``nx`` and
    ``normal_x`` are column 3). LAS/LAZ ``x y z`` are the scaled coordinates (float64 in the file; give
    ``dtype=None`` to keep them float64).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import plyfile

from pointserve.data.lidar_formats import read_kitti_columns, read_nuscenes_columns
from pointserve.data.pcd import read_pcd_columns
from pointserve.data.text import _MAX_HEADER_BYTES, Columns, parse_numeric_text, read_file_bytes
from pointserve.errors import DataError

FORMATS = ("ply", "pcd", "xyz", "txt", "npy")  # read and written
READ_FORMATS = (*FORMATS, "las", "laz", "bin", "pcd.bin")  # read, not written here (LiDAR .bin: lidar_formats)
_EXTENSIONS = {".ply": "ply", ".pcd": "pcd", ".xyz": "xyz", ".txt": "txt", ".pts": "xyz", ".csv": "txt", ".npy": "npy"}
_EXTENSIONS.update({".las": "las", ".laz": "laz", ".bin": "bin", ".pcd.bin": "pcd.bin"})
_NORMAL_NAMES = (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z"))
_UNNAMED_ALIASES = {"normal_x": "nx", "normal_y": "ny", "normal_z": "nz"}  # name -> the layout's name

Channels = int | Sequence[str] | None


def format_from_name(name: str | os.PathLike) -> str:
    """The format of a file from its extension (``.ply .pcd .xyz .pts .txt .csv .npy .las .laz .bin .pcd.bin``)."""
    suffix = ".pcd.bin" if str(name).lower().endswith(".pcd.bin") else Path(name).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise DataError(
            f"{name}: unknown point-cloud file type {suffix or '(no extension)'!r}; known: {', '.join(_EXTENSIONS)}"
        )
    return _EXTENSIONS[suffix]


def read_point_cloud(
    source: str | os.PathLike | bytes,
    format: str | None = None,
    *,
    filename: str | None = None,
    channels: Channels = 3,
    dtype: type | None = np.float32,
) -> np.ndarray:
    """Read a point cloud from a path or from bytes; the format comes from ``format`` or the file name.

    ``channels``: a count (xyz, normals, the rest), ``None`` for every field, or field names. ``dtype=None``
    keeps the file's precision (at least float32; LAS coordinates and PLY/PCD doubles stay float64).

    Shapes:
        returns (N, channels) float32, or (N, C) with every field when ``channels`` is None.
    """
    data, format, name = _load(source, format, filename)
    return read_point_cloud_bytes(data, format, filename=name, channels=channels, dtype=dtype)


def _load(source: str | os.PathLike | bytes, format: str | None, filename: str | None) -> tuple[bytes, str, str]:
    """A file's bytes, its format and the name errors call it by, from a path or from bytes."""
    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    name = filename or ("<upload>" if is_bytes else str(source))
    if format is None and is_bytes and filename is None:
        raise DataError("cannot tell the point-cloud format of raw bytes: give format= or filename=")
    format = format or format_from_name(name)  # an unknown kind of file is named before it is read
    return (bytes(source) if is_bytes else read_file_bytes(source)), format, name


def read_point_cloud_bytes(
    data: bytes, format: str, *, filename: str | None = None, channels: Channels = 3, dtype: type | None = np.float32
) -> np.ndarray:
    """Parse an in-memory point-cloud file (an upload). See :func:`read_point_cloud`."""
    name = filename or "<upload>"
    fmt = _reader_format(format, name)
    if isinstance(channels, str):
        channels = (channels,)
    if isinstance(channels, int) and channels < 3:
        raise DataError(f"{name}: channels must be at least 3 (xyz), got {channels}")
    if channels is not None and not isinstance(channels, int) and not channels:
        raise DataError(f"{name}: no channels asked for")
    return _select_channels(_READERS[fmt](bytes(data), name), channels, name, dtype)


def read_point_cloud_columns(
    source: str | os.PathLike | bytes, format: str | None = None, *, filename: str | None = None
) -> dict[str, np.ndarray]:
    """Every per-point field of a file by name, as stored (PLY properties, PCD fields, LAS dimensions with x y z
    scaled; XYZ/TXT/NPY columns named x y z nx ny nz c6 c7 ...). See :func:`read_point_cloud`."""
    data, format, name = _load(source, format, filename)
    table = _READERS[_reader_format(format, name)](data, name)
    if isinstance(table, np.ndarray):
        return {key: table[:, i] for i, key in enumerate(default_channel_names(table.shape[1]))}
    return dict(table)


def _reader_format(format: str, name: str) -> str:
    fmt = format.lower().lstrip(".")
    if fmt not in _READERS:
        raise DataError(f"{name}: unknown point-cloud format {format!r}; known: {', '.join(READ_FORMATS)}")
    return fmt


def _stack(columns: list[np.ndarray], dtype: type | None) -> np.ndarray:
    if dtype is None:  # the file's precision, at least float32 (int8/16 fit float32, int32/64 need float64)
        dtype = np.result_type(np.float32, *(c.dtype for c in columns))
    return np.stack([np.asarray(c, dtype=dtype) for c in columns], axis=1)


def _select_channels(table: Columns | np.ndarray, channels: Channels, name: str, dtype: type | None) -> np.ndarray:
    if isinstance(table, np.ndarray):  # unnamed columns: the first k, or names of pointserve's layout
        if channels is not None and not isinstance(channels, int):
            layout = default_channel_names(table.shape[1])
            missing = [key for key in channels if _UNNAMED_ALIASES.get(key, key) not in layout]
            if missing:
                raise DataError(
                    f"{name}: has {table.shape[1]} unnamed values per point ({' '.join(layout)}), "
                    f"no {', '.join(missing)}"
                )
            table = table[:, [layout.index(_UNNAMED_ALIASES.get(key, key)) for key in channels]]
            channels = None
        if table.shape[1] < (channels or 3):
            raise DataError(f"{name}: has {table.shape[1]} values per point, expected at least {channels or 3}")
        table = table[:, :channels] if channels else table
        out = dtype or np.result_type(np.float32, table.dtype)
        return np.ascontiguousarray(table, dtype=out)
    if channels is not None and not isinstance(channels, int):
        missing = [key for key in channels if key not in table]
        if missing:
            raise DataError(f"{name}: has no {', '.join(missing)} field (fields: {', '.join(table) or 'none'})")
        return _stack([table[key] for key in channels], dtype)
    missing = [axis for axis in "xyz" if axis not in table]
    if missing:
        raise DataError(f"{name}: has no {', '.join(missing)} field (fields: {', '.join(table) or 'none'})")
    order = ["x", "y", "z"]
    normals = next((list(n) for n in _NORMAL_NAMES if all(k in table for k in n)), None)
    if channels == 6 and normals is None:
        raise DataError(f"{name}: has no normals (nx ny nz or normal_x normal_y normal_z); 6 channels were asked for")
    order += normals or []
    order += [key for key in table if key not in order]
    if channels is not None and len(order) < channels:
        raise DataError(f"{name}: has {len(order)} fields per point, expected at least {channels}")
    picked = order[:channels] if channels else order
    return _stack([table[key] for key in picked], dtype)


# ----------------------------------------------------------------------------------------------------------- text


def _read_text(data: bytes, name: str) -> np.ndarray:
    return parse_numeric_text(data, name, min_columns=3, skip_header=True)


# ------------------------------------------------------------------------------------------------------------ npy


def _read_npy(data: bytes, name: str) -> np.ndarray:
    # np.load would allocate the array the header declares before reading it; check the header first.
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran_order, dtype = read_header[version](stream)
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise DataError(f"{name}: not a valid .npy file ({exc})") from None
    if dtype.hasobject or dtype.kind not in "fiu":
        raise DataError(f"{name}: .npy array has dtype {dtype}, expected a float or integer array")
    if len(shape) != 2 or shape[1] < 3:
        raise DataError(f"{name}: .npy array has shape {shape}, expected (N, C) with C >= 3")
    count = int(np.prod(shape))
    body = memoryview(data)[stream.tell() :]
    if len(body) < count * dtype.itemsize:
        raise DataError(
            f"{name}: truncated .npy: shape {shape} needs {count * dtype.itemsize} bytes, found {len(body)}"
        )
    array = np.frombuffer(body, dtype=dtype, count=count).reshape(shape, order="F" if fortran_order else "C")
    return array.astype(np.float32)


# ------------------------------------------------------------------------------------------------------------ ply


def _read_ply(data: bytes, name: str) -> Columns:
    # The header is parsed by plyfile; the vertex rows are read with numpy because plyfile reads in-memory
    # streams one value at a time (seconds for a large upload). Odd layouts fall back to plyfile entirely.
    match = re.search(rb"(?:^|\n|\r)end_header(\r\n|\n|\r)", data[:_MAX_HEADER_BYTES])
    if not data.startswith(b"ply"):
        raise DataError(f"{name}: not a PLY file (it must start with 'ply')")
    if match is None:
        raise DataError(f"{name}: PLY header has no end_header line in its first {_MAX_HEADER_BYTES} bytes")
    try:
        header = plyfile.PlyData._parse_header(io.BytesIO(data[: match.end()]))
    except (plyfile.PlyParseError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{name}: bad PLY header: {exc}") from None
    body = memoryview(data)[match.end() :]
    elements = list(header.elements)
    _check_ply_sizes(elements, header.text, len(body), name)
    vertex_index = next((i for i, e in enumerate(elements) if e.name == "vertex"), None)
    if vertex_index is None:
        raise DataError(f"{name}: PLY file has no 'vertex' element")
    vertex = elements[vertex_index]
    before = elements[:vertex_index]

    def has_lists(element: plyfile.PlyElement) -> bool:
        return any(isinstance(p, plyfile.PlyListProperty) for p in element.properties)

    if has_lists(vertex) or (not header.text and any(has_lists(e) for e in before)):
        return _read_ply_with_plyfile(data, name)
    names = [p.name for p in vertex.properties]
    if header.text:
        rows_before = sum(e.count for e in before)
        text = bytes(body)
        parts = text.split(b"\n", rows_before)
        if len(parts) <= rows_before:
            raise DataError(f"{name}: PLY ends before its vertex rows")
        first_line = data[: match.end()].count(b"\n") + 1 + rows_before
        table = parse_numeric_text(parts[-1], name, dtype=np.float64, max_rows=vertex.count, first_line=first_line)
        if vertex.count and table.shape != (vertex.count, len(names)):
            raise DataError(
                f"{name}: PLY vertex rows have shape {table.shape}, header says {vertex.count} rows of {len(names)}"
            )
        return {key: table[:, i] for i, key in enumerate(names)} if vertex.count else _empty(names)
    dtype = vertex.dtype(header.byte_order)
    offset = sum(e.count * e.dtype(header.byte_order).itemsize for e in before)
    array = np.frombuffer(body, dtype=dtype, count=vertex.count, offset=offset)
    return {key: array[key] for key in names}


def _empty(names: Sequence[str]) -> Columns:
    return {key: np.zeros(0, dtype=np.float32) for key in names}


def _check_ply_sizes(elements: list, text: bool, body_bytes: int, name: str) -> None:
    """Reject element counts the bytes after the header cannot hold (before anything is allocated)."""
    needed = 0
    for element in elements:
        if element.count < 0:
            raise DataError(f"{name}: PLY element {element.name!r} has a negative count")
        if text:  # at least one character and one separator per value
            row = 2 * len(element.properties)
        else:
            row = sum(
                np.dtype(p.len_dtype).itemsize
                if isinstance(p, plyfile.PlyListProperty)
                else np.dtype(p.val_dtype).itemsize
                for p in element.properties
            )
        needed += element.count * row
    if needed > body_bytes + (1 if text else 0):
        raise DataError(
            f"{name}: PLY header declares more data than the file holds (at least {needed} bytes, found {body_bytes}):"
            " truncated or corrupt"
        )


def _read_ply_with_plyfile(data: bytes, name: str) -> Columns:
    try:
        ply = plyfile.PlyData.read(io.BytesIO(data))
    except (plyfile.PlyParseError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{name}: malformed PLY: {exc}") from None
    vertex = ply["vertex"]
    return {p.name: vertex.data[p.name] for p in vertex.properties if not isinstance(p, plyfile.PlyListProperty)}


# ------------------------------------------------------------------------------------------------------ LAS / LAZ

# LAZ (LASzip) compresses LiDAR points ~5-15x; a header claiming far more than this is a lie or a bomb.
_LAZ_MAX_RATIO = 200


def _read_las(data: bytes, name: str) -> Columns:
    """LAS / LAZ (ASPRS LiDAR) with laspy, imported here (LAZ needs the lazrs backend: ``pointserve[las]``).

    The header's point count is checked against the bytes present before laspy allocates the points."""
    try:
        import laspy
    except ImportError:
        raise DataError(f"{name}: reading LAS/LAZ needs the laspy package (pip install laspy)") from None
    if not data.startswith(b"LASF"):
        raise DataError(f"{name}: not a LAS file (it must start with 'LASF')")
    if len(data) < 227:
        raise DataError(f"{name}: truncated LAS header ({len(data)} bytes, a LAS header has at least 227)")
    if data[24] != 1 or data[25] > 4:
        raise DataError(f"{name}: bad LAS header: version {data[24]}.{data[25]} (LAS 1.0 to 1.4 are read)")
    try:
        with laspy.open(io.BytesIO(data)) as reader:
            header = reader.header
            count, record = int(header.point_count), int(header.point_format.size)
            compressed = bool(header.are_points_compressed)
            present = len(data) - int(header.offset_to_point_data)
            if present < 0:
                raise DataError(
                    f"{name}: LAS header puts the points at byte {header.offset_to_point_data}, past the end"
                )
            if compressed and not laspy.LazBackend.detect_available():
                raise DataError(
                    f"{name}: LAZ (compressed LAS) needs the lazrs package: pip install 'pointserve[las]' (or lazrs)"
                )
            limit = present * _LAZ_MAX_RATIO if compressed else present
            if count * record > limit:
                raise DataError(
                    f"{name}: LAS header declares {count} points of {record} bytes, more than the file's {present}"
                    f" bytes of point data {'can decompress to' if compressed else 'hold'}: truncated or corrupt"
                )
            points = reader.read_points(count)
            if len(points) != count:
                raise DataError(f"{name}: truncated LAS: {len(points)} of the header's {count} points")
            columns: Columns = {axis: np.asarray(getattr(points, axis), dtype=np.float64) for axis in "xyz"}
            for dimension in points.point_format.dimension_names:
                if dimension.lower() not in ("x", "y", "z"):
                    values = np.asarray(points[dimension])
                    if values.ndim == 1 and values.dtype.kind in "fiub":
                        columns[dimension] = values
            return columns
    except DataError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # laspy / lazrs raise many kinds (LaspyException, ValueError, struct.error, ...)
        raise DataError(f"{name}: malformed LAS/LAZ: {str(exc)[:200] or type(exc).__name__}") from None


_READERS = {"ply": _read_ply, "pcd": read_pcd_columns, "xyz": _read_text, "txt": _read_text, "npy": _read_npy}
_READERS.update({"las": _read_las, "laz": _read_las, "bin": read_kitti_columns, "pcd.bin": read_nuscenes_columns})


# ---------------------------------------------------------------------------------------------------------- write


def default_channel_names(channels: int, format: str = "ply") -> list[str]:
    """x y z, then normals for channels 3..5 (the pointserve layout), then c6, c7, ..."""
    normals = ["normal_x", "normal_y", "normal_z"] if format == "pcd" else ["nx", "ny", "nz"]
    return (["x", "y", "z"] + normals + [f"c{i}" for i in range(6, channels)])[:channels]


def point_cloud_to_bytes(
    points: np.ndarray, format: str, *, binary: bool = True, channel_names: Sequence[str] | None = None
) -> bytes:
    """Serialise ``points`` (N, C >= 3) to a PLY, PCD, XYZ/TXT or NPY file's bytes (binary PLY is little endian)."""
    fmt = format.lower().lstrip(".")
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3 or points.dtype.kind not in "fiu":
        raise DataError(f"points must be a numeric (N, C >= 3) array, got {points.dtype} {points.shape}")
    points = points.astype(np.float32)
    names = list(channel_names or default_channel_names(points.shape[1], fmt))
    if len(names) != points.shape[1]:
        raise DataError(f"{len(names)} channel names for {points.shape[1]} channels")
    if fmt == "ply":
        rows = np.empty(len(points), dtype=[(key, "<f4") for key in names])
        for i, key in enumerate(names):
            rows[key] = points[:, i]
        stream = io.BytesIO()
        plyfile.PlyData([plyfile.PlyElement.describe(rows, "vertex")], text=not binary, byte_order="<").write(stream)
        return stream.getvalue()
    if fmt == "pcd":
        k, n = len(names), len(points)
        header = (
            f"# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS {' '.join(names)}\n"
            f"SIZE {' '.join(['4'] * k)}\n"
            f"TYPE {' '.join(['F'] * k)}\nCOUNT {' '.join(['1'] * k)}\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
            f"POINTS {n}\nDATA {'binary' if binary else 'ascii'}\n"
        ).encode()
        return header + (points.astype("<f4").tobytes() if binary else _text_rows(points))
    if fmt in ("xyz", "txt"):
        return _text_rows(points)
    if fmt == "npy":
        stream = io.BytesIO()
        np.save(stream, points, allow_pickle=False)
        return stream.getvalue()
    raise DataError(f"cannot write point-cloud format {format!r}; writable: {', '.join(FORMATS)}")


def _text_rows(points: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.savetxt(stream, points, fmt="%.9g")  # 9 significant digits round-trip float32 exactly
    return stream.getvalue()


def write_point_cloud(
    path: str | os.PathLike,
    points: np.ndarray,
    format: str | None = None,
    *,
    binary: bool = True,
    channel_names: Sequence[str] | None = None,
) -> Path:
    """Write ``points`` (N, C >= 3) to ``path``; the format comes from ``format`` or the extension."""
    path = Path(path)
    path.write_bytes(
        point_cloud_to_bytes(points, format or format_from_name(path), binary=binary, channel_names=channel_names)
    )
    return path
