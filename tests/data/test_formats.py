"""Point-cloud files: PLY (via plyfile), PCD (written by hand per the PCL spec), XYZ/TXT and NPY."""

from __future__ import annotations

import io
import struct

import numpy as np
import people_files
import plyfile
import pytest

from pointserve.data.formats import (
    FORMATS,
    point_cloud_to_bytes,
    read_point_cloud,
    read_point_cloud_bytes,
    read_point_cloud_columns,
    write_point_cloud,
)
from pointserve.data.pcd import lzf_decompress
from pointserve.errors import DataError

RNG = np.random.default_rng(0)
CLOUD = RNG.uniform(-2, 2, size=(40, 6)).astype(np.float32)


def data_error(data: bytes, format: str, name: str, **options) -> str:
    """The one-line DataError message for reading ``data``; it must name the file."""
    with pytest.raises(DataError) as info:
        read_point_cloud_bytes(data, format, filename=name, **options)
    message = str(info.value)
    assert name in message and "\n" not in message
    return message


# -------------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("binary", [True, False])
def test_write_then_read_gives_the_same_points(tmp_path, format, binary):
    path = write_point_cloud(tmp_path / f"cloud.{format}", CLOUD, binary=binary)
    np.testing.assert_array_equal(read_point_cloud(path, channels=6), CLOUD)
    np.testing.assert_array_equal(read_point_cloud(path), CLOUD[:, :3])
    data = point_cloud_to_bytes(CLOUD[:, :3], format, binary=binary)
    np.testing.assert_array_equal(read_point_cloud(data, format), CLOUD[:, :3])
    np.testing.assert_array_equal(read_point_cloud(data, filename=f"upload.{format}", channels=None), CLOUD[:, :3])


# ---------------------------------------------------------------------------------------------------------- PLY


def ply_bytes(encoding: str, *, vertex_last: bool = False, count: int = 5) -> tuple[bytes, np.ndarray]:
    """A PLY written by plyfile itself: xyz float, normals double, colour uchar, and a face element with a list."""
    vertex = np.zeros(
        count, dtype=[(k, "f4") for k in "xyz"] + [(k, "f8") for k in ("nx", "ny", "nz")] + [("red", "u1")]
    )
    values = RNG.uniform(-1, 1, size=(count, 6))
    for i, key in enumerate(("x", "y", "z", "nx", "ny", "nz")):
        vertex[key] = values[:, i]
    vertex["red"] = np.arange(count) * 40
    faces = np.array([([0, 1, 2],), ([1, 2, 3, 4],)], dtype=[("vertex_indices", "O")])
    elements = [plyfile.PlyElement.describe(vertex, "vertex"), plyfile.PlyElement.describe(faces, "face")]
    if vertex_last:
        elements.reverse()
    order = {"ascii": "=", "binary_little_endian": "<", "binary_big_endian": ">"}[encoding]
    stream = io.BytesIO()
    plyfile.PlyData(elements, text=encoding == "ascii", byte_order=order).write(stream)
    expected = np.column_stack([values.astype(np.float32), vertex["red"]]).astype(np.float32)
    return stream.getvalue(), expected


@pytest.mark.parametrize("encoding", ["ascii", "binary_little_endian", "binary_big_endian"])
@pytest.mark.parametrize("vertex_last", [False, True])
def test_ply_from_plyfile_in_every_encoding(encoding, vertex_last):
    data, expected = ply_bytes(encoding, vertex_last=vertex_last)
    assert f"format {encoding} 1.0".encode() in data
    np.testing.assert_allclose(read_point_cloud_bytes(data, "ply"), expected[:, :3], rtol=0, atol=1e-6)
    np.testing.assert_allclose(read_point_cloud_bytes(data, "ply", channels=6), expected[:, :6], rtol=0, atol=1e-6)
    every = read_point_cloud_bytes(data, "ply", channels=None)  # xyz, normals, then the rest in file order
    assert every.dtype == np.float32 and every.shape == (5, 7)
    np.testing.assert_allclose(every, expected, rtol=0, atol=1e-6)


def _ply_header(encoding: str, count: int, properties: str = "property float x\nproperty float y\nproperty float z\n"):
    return f"ply\nformat {encoding} 1.0\nelement vertex {count}\n{properties}end_header\n".encode()


PLY_BREAKAGES = {
    "not ply": (b"PLX\nformat ascii 1.0\n", "not a PLY file"),
    "no end_header": (_ply_header("ascii", 1)[:-11] + b"0 0 0\n", "no end_header"),
    "bad version": (_ply_header("ascii", 1).replace(b"1.0", b"2.0") + b"0 0 0\n", "bad PLY header"),
    "unknown property type": (_ply_header("ascii", 1, "property quad x\n") + b"0\n", "bad PLY header"),
    "no vertex element": (b"ply\nformat ascii 1.0\nelement point 1\nproperty float x\nend_header\n1\n", "no 'vertex'"),
    "no z": (_ply_header("ascii", 1, "property float x\nproperty float y\n") + b"1 2\n", "has no z field"),
    "garbage value": (_ply_header("ascii", 2) + b"1 2 3\n1 abc 3\n", "line 9: 'abc' is not a number"),
    "short row": (_ply_header("ascii", 2) + b"10 20 30\n10 20\n", "line 9 has 2 values, expected 3"),
    "missing rows": (_ply_header("ascii", 3) + b"1 2 3\n4 5 6\n7 8 9\n"[:12], "more data than the file holds"),
    "huge count": (_ply_header("ascii", 10**12) + b"1 2 3\n", "more data than the file holds"),
    "truncated binary": (_ply_header("binary_little_endian", 4) + bytes(40), "at least 48 bytes, found 40"),
    "truncated list before vertex": (
        b"ply\nformat binary_little_endian 1.0\nelement face 2\nproperty list uchar int vertex_indices\n"
        + _ply_header("binary_little_endian", 1)[36:]
        + b"\x03"
        + bytes(12)
        + b"\x05"
        + bytes(8),
        "malformed PLY",
    ),
}


@pytest.mark.parametrize("breakage", list(PLY_BREAKAGES))
def test_malformed_ply_is_a_data_error_naming_the_file(breakage):
    data, problem = PLY_BREAKAGES[breakage]
    assert problem in data_error(data, "ply", "scan.ply")


def test_ply_without_normals_refuses_six_channels():
    data = point_cloud_to_bytes(CLOUD[:, :3], "ply")
    assert "has no normals" in data_error(data, "ply", "scan.ply", channels=6)


# ---------------------------------------------------------------------------------------------------------- PCD


def pcd_header(fields: str, size: str, type_: str, count: str, width: int, height: int, data: str, points=None):
    points = width * height if points is None else points
    return (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {fields}\nSIZE {size}\nTYPE {type_}\nCOUNT {count}\nWIDTH {width}\nHEIGHT {height}\n"
        f"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {points}\nDATA {data}\n"
    ).encode()


def test_pcd_ascii_with_colour_and_nan():
    header = pcd_header("x y z rgb", "4 4 4 4", "F F F U", "1 1 1 1", 3, 1, "ascii")
    body = b"0.5 -1 2 4278190335\n1.25 0 3e-2 255\nnan nan nan 0\n"
    points = read_point_cloud_bytes(header + body, "pcd")
    np.testing.assert_array_equal(points[:2], np.array([[0.5, -1, 2], [1.25, 0, 0.03]], np.float32))
    assert np.isnan(points[2]).all()  # PCL marks invalid points with NaN; the service decides what to do with them
    every = read_point_cloud_bytes(header + body, "pcd", channels=None)
    assert every.shape == (3, 4) and every[1, 3] == 255


def test_pcd_binary_organised_mixed_types_with_normals():
    header = pcd_header(
        "x y z normal_x normal_y normal_z intensity", "4 4 4 8 8 8 2", "F F F F F F I", "1 1 1 1 1 1 1", 2, 2, "binary"
    )
    rows = [(i, -i, 0.5 * i, 0.0, 1.0, 0.0, -7 * i) for i in range(4)]
    body = b"".join(struct.pack("<fffdddh", *row) for row in rows)
    points = read_point_cloud_bytes(header + body, "pcd", channels=6)
    np.testing.assert_array_equal(points, np.array(rows, dtype=np.float32)[:, :6])
    np.testing.assert_array_equal(read_point_cloud_bytes(header + body, "pcd", channels=None)[:, 6], [0, -7, -14, -21])


def test_pcd_binary_with_multi_value_field_and_padding():
    header = pcd_header("x y z _ fpfh", "4 4 4 1 1", "F F F U U", "1 1 1 3 2", 2, 1, "binary")
    body = struct.pack("<fff3x2B", 1, 2, 3, 9, 8) + struct.pack("<fff3x2B", 4, 5, 6, 7, 6)
    every = read_point_cloud_bytes(header + body, "pcd", channels=None)
    np.testing.assert_array_equal(every, [[1, 2, 3, 9, 8], [4, 5, 6, 7, 6]])


def lzf_literals(raw: bytes) -> bytes:
    """LZF with literal runs only (valid LZF: runs of at most 32 bytes, each after a control byte of length - 1)."""
    return b"".join(bytes([len(raw[i : i + 32]) - 1]) + raw[i : i + 32] for i in range(0, len(raw), 32))


def lzf_repeat_last_byte(total: int) -> bytes:
    """Back-references of distance 1 that copy the previous byte ``total`` times (3..264 bytes each)."""
    out = b""
    while total:
        length = min(total, 264) if total - min(total, 264) not in (1, 2) else total - 3
        code = length - 2
        out += bytes([7 << 5, code - 7, 0]) if code >= 7 else bytes([code << 5, 0])
        total -= length
    return out


@pytest.mark.parametrize("with_back_references", [False, True])
def test_pcd_binary_compressed_decompresses_lzf(with_back_references):
    points = RNG.uniform(-1, 1, size=(100, 3)).astype(np.float32)
    points[:, 2] = 0.0
    # binary_compressed stores fields one after another: all x, then all y, then all z.
    raw = b"".join(points[:, i].astype("<f4").tobytes() for i in range(3))
    if with_back_references:  # the zero z column as one literal zero byte plus back-references
        compressed = lzf_literals(raw[:800]) + lzf_literals(b"\x00") + lzf_repeat_last_byte(399)
    else:
        compressed = lzf_literals(raw)
    header = pcd_header("x y z", "4 4 4", "F F F", "1 1 1", 100, 1, "binary_compressed")
    data = header + struct.pack("<II", len(compressed), len(raw)) + compressed
    np.testing.assert_array_equal(read_point_cloud_bytes(data, "pcd"), points)


def test_lzf_decompress_known_streams():
    assert lzf_decompress(b"\x02abc", 3) == b"abc"
    assert lzf_decompress(b"\x01ab\x60\x01", 7) == b"abababa"  # overlapping back-reference of 5, distance 2
    assert lzf_decompress(b"\x00a\xe0\x0b\x00", 21) == b"a" * 21  # extended length 7 + 11 + 2 = 20
    for stream, expected, problem in [
        (b"\x05ab", 6, "past the end"),
        (b"\x00a\x20\x05", 4, "before the start"),
        (b"\x02abc", 2, "exceeds"),
        (b"\x02abc", 5, "3 bytes, 5 declared"),
    ]:
        with pytest.raises(ValueError, match=problem):
            lzf_decompress(stream, expected)


XYZ = "x y z"
PCD_BREAKAGES = {
    "no DATA": (pcd_header(XYZ, "4 4 4", "F F F", "1 1 1", 1, 1, "ascii")[:-11], "no DATA line"),
    "sizes": (pcd_header(XYZ, "4 4", "F F F", "1 1 1", 1, 1, "ascii") + b"1 2 3\n", "3 FIELDS but 2 SIZE"),
    "unknown entry": (b"COLOUR red\n" + pcd_header(XYZ, "4 4 4", "F F F", "1 1 1", 1, 1, "ascii"), "unknown PCD"),
    "points": (pcd_header(XYZ, "4 4 4", "F F F", "1 1 1", 2, 1, "ascii", points=3) + b"1 2 3\n", "POINTS 3"),
    "half float": (pcd_header(XYZ, "2 2 2", "F F F", "1 1 1", 1, 1, "binary") + bytes(6), "TYPE F with SIZE 2"),
    "data type": (pcd_header(XYZ, "4 4 4", "F F F", "1 1 1", 1, 1, "binary_lz4") + bytes(12), "unknown PCD DATA"),
    "negative": (pcd_header(XYZ, "4 4 4", "F F F", "1 1 1", -1, 1, "ascii", points=1), "must not be negative"),
    "not a number": (
        pcd_header(XYZ, "4 4 4", "F F F", "1 1 1", 1, 1, "ascii").replace(b"WIDTH 1", b"WIDTH a"),
        "WIDTH",
    ),
    "truncated binary": (pcd_header(XYZ, "4 4 4", "F F F", "1 1 1", 4, 1, "binary") + bytes(40), "need 48 bytes"),
    "rows": (pcd_header(XYZ, "4 4 4", "F F F", "1 1 1", 3, 1, "ascii") + b"1 2 3\n4 5 6\n", "has 2 rows"),
    "garbage": (pcd_header(XYZ, "4 4 4", "F F F", "1 1 1", 2, 1, "ascii") + b"1 2 3\n1 2 abc\n", "line 13: 'abc'"),
    "compressed size": (
        pcd_header(XYZ, "4 4 4", "F F F", "1 1 1", 1, 1, "binary_compressed") + struct.pack("<II", 13, 11),
        "holds 11 bytes, the header needs 12",
    ),
    "compressed truncated": (
        pcd_header(XYZ, "4 4 4", "F F F", "1 1 1", 1, 1, "binary_compressed") + struct.pack("<II", 13, 12) + bytes(5),
        "13 bytes declared, 5 found",
    ),
    "compression bomb": (
        pcd_header(XYZ, "4 4 4", "F F F", "1 1 1", 10**8, 1, "binary_compressed")
        + struct.pack("<II", 2, 12 * 10**8)
        + bytes(2),
        "impossible compression ratio",
    ),
    "corrupt stream": (
        pcd_header(XYZ, "4 4 4", "F F F", "1 1 1", 1, 1, "binary_compressed") + struct.pack("<II", 2, 12) + b"\x20\x05",
        "before the start",
    ),
}


@pytest.mark.parametrize("breakage", list(PCD_BREAKAGES))
def test_malformed_pcd_is_a_data_error_naming_the_file(breakage):
    data, problem = PCD_BREAKAGES[breakage]
    assert problem in data_error(data, "pcd", "scan.pcd")


# ------------------------------------------------------------------------------------------------------ XYZ/TXT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 2 3\n4 5 6\n", [[1, 2, 3], [4, 5, 6]]),
        ("1,2,3\n4,5,6\n", [[1, 2, 3], [4, 5, 6]]),
        ("x y z\n1\t2 3\n", [[1, 2, 3]]),  # a column-name line is skipped
        ("X,Y,Z,NX,NY,NZ\n1, 2, 3, 0, 0, 1\n", [[1, 2, 3]]),
        ("# scanner export\n\n1 2 3  # first\n\n4 5 6\n", [[1, 2, 3], [4, 5, 6]]),
        ("", np.zeros((0, 3))),
    ],
)
def test_xyz_text_variants(text, expected):
    for format in ("xyz", "txt"):
        np.testing.assert_array_equal(read_point_cloud_bytes(text.encode(), format), np.array(expected, np.float32))


@pytest.mark.parametrize(
    ("text", "problem", "channels"),
    [
        ("1 2 3\n4 5 6\n7 8 abc\n", "line 3: 'abc' is not a number", 3),
        ("1 2 3\n4 5\n", "line 2 has 2 values, expected 3", 3),
        ("x y z\n1 2 3\nx y z\n", "line 3: 'x' is not a number", 3),  # only a first line can be a header
        ("1 2\n3 4\n", "expected at least 3", 3),
        ("1 2 3\n", "has 3 values per point, expected at least 6", 6),
    ],
)
def test_malformed_text_names_file_and_line(text, problem, channels):
    assert problem in data_error(text.encode(), "xyz", "scan.xyz", channels=channels)


# ---------------------------------------------------------------------------------------------------------- NPY


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array, allow_pickle=allow_pickle)
    return stream.getvalue()


def test_npy_float_int_and_fortran_arrays():
    np.testing.assert_array_equal(read_point_cloud_bytes(npy(CLOUD.astype(np.float64)), "npy", channels=6), CLOUD)
    ints = np.arange(12, dtype=np.int32).reshape(4, 3)
    np.testing.assert_array_equal(read_point_cloud_bytes(npy(ints), "npy"), ints.astype(np.float32))
    np.testing.assert_array_equal(read_point_cloud_bytes(npy(np.asfortranarray(CLOUD)), "npy"), CLOUD[:, :3])


def _npy_claiming(shape: tuple[int, ...]) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return stream.getvalue() + bytes(24)


NPY_BREAKAGES = {
    "object array": (npy(np.array([[1, "a", None]], dtype=object), allow_pickle=True), "dtype object"),
    "structured": (npy(np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])), "expected a float or integer"),
    "bool": (npy(np.zeros((3, 3), dtype=bool)), "dtype bool"),
    "1-D": (npy(np.zeros(9, np.float32)), "shape (9,)"),
    "two columns": (npy(np.zeros((4, 2), np.float32)), "shape (4, 2)"),
    "3-D": (npy(np.zeros((1, 4, 3), np.float32)), "shape (1, 4, 3)"),
    "truncated": (npy(CLOUD)[:-10], "truncated .npy"),
    "huge header shape": (_npy_claiming((10**12, 3)), "needs 12000000000000 bytes, found 24"),
    "garbage": (b"\x93NUMPX" + bytes(20), "not a valid .npy file"),
}


@pytest.mark.parametrize("breakage", list(NPY_BREAKAGES))
def test_malformed_npy_is_a_data_error_naming_the_file(breakage):
    data, problem = NPY_BREAKAGES[breakage]
    assert problem in data_error(data, "npy", "cloud.npy")


# ------------------------------------------------------------------------------------------------- dispatching


def test_read_point_cloud_names_missing_and_unknown_files(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'absent.ply'}: file not found"):
        read_point_cloud(tmp_path / "absent.ply")
    (tmp_path / "folder.ply").mkdir()
    with pytest.raises(DataError, match="is a directory"):
        read_point_cloud(tmp_path / "folder.ply")
    with pytest.raises(DataError, match="unknown point-cloud file type '.obj'"):
        read_point_cloud(tmp_path / "mesh.obj")
    with pytest.raises(DataError, match="give format= or filename="):
        read_point_cloud(b"1 2 3\n")
    with pytest.raises(DataError, match="unknown point-cloud format 'e57'"):
        read_point_cloud_bytes(b"", "e57")
    with pytest.raises(DataError, match="channels must be at least 3"):
        read_point_cloud_bytes(b"1 2 3\n", "xyz", channels=2)
    with pytest.raises(DataError, match="N, C >= 3"):
        point_cloud_to_bytes(np.zeros((4, 2)), "ply")


# ------------------------------------------------------------------------------------ files as people have them


@pytest.mark.parametrize("encoding", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_ply_with_normals_and_colours_gives_xyz_by_name(encoding):
    points = people_files.exact_cloud()
    data = people_files.ply_with_normals_and_colours(points, encoding)
    np.testing.assert_array_equal(read_point_cloud_bytes(data, "ply"), points)
    by_name = read_point_cloud_bytes(data, "ply", channels=("x", "y", "z", "red", "alpha"))
    np.testing.assert_array_equal(by_name[:, :3], points)
    np.testing.assert_array_equal(by_name[:, 3], people_files.colours_of(points)[:, 0])
    assert (by_name[:, 4] == 255).all()


@pytest.mark.parametrize("data", ["ascii", "binary"])
def test_pcl_xyz_rgb_pcd_gives_xyz_by_name(data):
    points = people_files.exact_cloud()
    pcd = people_files.pcd_xyz_rgb(points, data)
    np.testing.assert_array_equal(read_point_cloud_bytes(pcd, "pcd"), points)
    assert list(read_point_cloud_columns(pcd, "pcd")) == ["x", "y", "z", "rgb"]


def test_modelnet_normal_resampled_txt_gives_the_first_three_columns(tmp_path):
    points = people_files.exact_cloud()
    path = tmp_path / "airplane_0001.txt"
    path.write_bytes(people_files.modelnet_normal_resampled_txt(points))
    np.testing.assert_array_equal(read_point_cloud(path), points)
    normals = read_point_cloud(path, channels=("nx", "normal_y", "nz"))
    np.testing.assert_allclose(normals, people_files.normals_of(points), atol=1e-6)
    assert read_point_cloud(path, channels=None).shape == (len(points), 6)
    assert "no intensity" in data_error(path.read_bytes(), "txt", "airplane_0001.txt", channels=("x", "intensity"))


@pytest.mark.parametrize("laz", [False, True])
def test_las_and_laz_from_laspy_give_scaled_xyz(laz):
    if laz:
        pytest.importorskip("lazrs")
    points = people_files.exact_cloud()
    data = people_files.las_file(points, laz=laz)
    np.testing.assert_array_equal(read_point_cloud_bytes(data, "laz" if laz else "las"), points)
    columns = read_point_cloud_columns(data, filename="tile.las")
    assert {"x", "y", "z", "intensity", "classification", "red"} <= set(columns)
    georeferenced = people_files.las_file(points, offsets=(500000.0, 4000000.0, 0.0))
    kept = read_point_cloud_bytes(georeferenced, "las", dtype=None)
    assert kept.dtype == np.float64
    np.testing.assert_array_equal(kept - [500000.0, 4000000.0, 0.0], points)


def test_malformed_people_files_are_data_errors_naming_the_file():
    points = people_files.exact_cloud()
    no_x = people_files.pcd_xyz_rgb(points, "binary", fields="a y z rgb")
    assert "has no x field" in data_error(no_x, "pcd", "scan.pcd")
    truncated = people_files.ply_with_normals_and_colours(points)[:-50]
    assert "truncated" in data_error(truncated, "ply", "mesh.ply")
    las = bytearray(people_files.las_file(points))
    las[107:111] = struct.pack("<I", 10**9)  # the point count
    assert "declares 1000000000 points" in data_error(bytes(las), "las", "tile.las")
    las[24:26] = b"\x09\x09"
    assert "bad LAS header: version 9.9" in data_error(bytes(las), "las", "tile.las")
    assert "not a LAS file" in data_error(b"PK\x03\x04" + bytes(300), "las", "tile.las")
