"""Point-cloud files as people have them, written with the real libraries (plyfile, laspy) or byte for byte as
their writers write them (PCL's PCD, ModelNet40's ``normal_resampled`` .txt): xyz plus the fields those files carry
(normals, colours, PCL's packed ``rgb``, LiDAR intensity and classification)."""

from __future__ import annotations

import io

import numpy as np
import plyfile


def exact_cloud(count: int = 100, seed: int = 7) -> np.ndarray:
    """(count, 3) float32 coordinates that are multiples of 1/64 below 100: every writer here (PCL's 8 significant
    digits, ModelNet's 6 decimals, a LAS scale of 1/64) stores them exactly."""
    rng = np.random.default_rng(seed)
    raw = rng.standard_normal((count, 3)) * [3.0, 1.0, 0.5] + [10.0, -2.0, 4.0]
    return (np.round(raw * 64) / 64).astype(np.float32)


def normals_of(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(axis=0)
    return (centred / np.linalg.norm(centred, axis=1, keepdims=True)).astype(np.float32)


def colours_of(points: np.ndarray) -> np.ndarray:
    return (np.arange(len(points) * 3).reshape(-1, 3) * 37 % 256).astype(np.uint8)


def ply_with_normals_and_colours(points: np.ndarray, encoding: str = "binary_little_endian") -> bytes:
    """A PLY as meshing tools write one: float xyz, float normals, uchar red green blue alpha."""
    names = [(k, "f4") for k in ("x", "y", "z", "nx", "ny", "nz")] + [(k, "u1") for k in ("red", "green", "blue")]
    vertex = np.zeros(len(points), dtype=[*names, ("alpha", "u1")])
    for i, key in enumerate("xyz"):
        vertex[key] = points[:, i]
    for i, key in enumerate(("nx", "ny", "nz")):
        vertex[key] = normals_of(points)[:, i]
    for i, key in enumerate(("red", "green", "blue")):
        vertex[key] = colours_of(points)[:, i]
    vertex["alpha"] = 255
    order = {"ascii": "=", "binary_little_endian": "<", "binary_big_endian": ">"}[encoding]
    stream = io.BytesIO()
    element = plyfile.PlyElement.describe(vertex, "vertex")
    plyfile.PlyData([element], text=encoding == "ascii", byte_order=order).write(stream)
    return stream.getvalue()


def pcl_rgb(points: np.ndarray) -> np.ndarray:
    """PCL's packed colour of pcl::PointXYZRGB: 0xAARRGGBB with alpha 255 (as a float, a NaN bit pattern)."""
    c = colours_of(points).astype(np.uint32)
    return (np.uint32(255) << 24) | (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]


def pcd_xyz_rgb(points: np.ndarray, data: str = "ascii", fields: str = "x y z rgb") -> bytes:
    """A PCD byte for byte as pcl::io::savePCDFile writes a pcl::PointXYZRGB cloud (ascii: 8 significant digits,
    ``rgb`` as its uint32 value; binary: the packed rows)."""
    n = len(points)
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {fields}\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"  # PCL declares rgb a float
        f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n"
    )
    rgb = pcl_rgb(points)
    if data == "ascii":
        pairs = zip(points.tolist(), rgb.tolist(), strict=True)
        rows = "".join(f"{p[0]:.8g} {p[1]:.8g} {p[2]:.8g} {c}\n" for p, c in pairs)
        return header.encode() + rows.encode()
    record = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])
    for i, key in enumerate("xyz"):
        record[key] = points[:, i]
    record["rgb"] = rgb
    return header.encode() + record.tobytes()


def modelnet_normal_resampled_txt(points: np.ndarray) -> bytes:
    """A ModelNet40 ``normal_resampled`` file (e.g. ``airplane/airplane_0001.txt``): x,y,z,nx,ny,nz per line."""
    rows = np.column_stack([points, normals_of(points)]).astype(np.float64)
    return "".join(",".join(f"{v:.6f}" for v in row) + "\n" for row in rows.tolist()).encode()


def las_file(points: np.ndarray, *, offsets=(0.0, 0.0, 0.0), scale: float = 1 / 64, laz: bool = False) -> bytes:
    """A LAS 1.2 point format 3 file (xyz, intensity, classification, rgb, GPS time) written by laspy."""
    import laspy

    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales = np.array([scale] * 3)
    header.offsets = np.array(offsets)
    las = laspy.LasData(header)
    las.x, las.y, las.z = (points[:, i].astype(np.float64) + offsets[i] for i in range(3))
    las.intensity = np.arange(len(points), dtype=np.uint16) * 100
    las.classification = np.full(len(points), 2, dtype=np.uint8)
    colours = colours_of(points).astype(np.uint16) * 257
    las.red, las.green, las.blue = colours[:, 0], colours[:, 1], colours[:, 2]
    stream = io.BytesIO()
    las.write(stream, do_compress=laz)
    return stream.getvalue()
