"""The body codec on its own: request bodies inflated chunk by chunk under a cap, Accept-Encoding negotiation."""

from __future__ import annotations

import gzip
import zlib

import pytest

from pointserve.errors import InputError, PayloadTooLargeError, UnsupportedMediaTypeError
from pointserve.service.compression import BodyDecoder, compress, response_encoding

BODY = b'{"inputs": [{"name": "points", "datatype": "FP32", "shape": [1, 2, 3], "data": [1, 2, 3, 4, 5, 6]}]}' * 50


def _raw_deflate(data: bytes) -> bytes:
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflate.compress(data) + deflate.flush()


def inflate(encoding: str, data: bytes, chunk: int, limit: int = 1 << 20) -> bytes:
    decoder = BodyDecoder.for_header(encoding, limit)
    assert decoder is not None
    out = b"".join(decoder.feed(data[i : i + chunk]) for i in range(0, len(data), chunk))
    decoder.finish()
    return out


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20], ids=["byte by byte", "small chunks", "one chunk"])
@pytest.mark.parametrize(
    "encoding, packed",
    [
        ("gzip", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),  # what HTTP (and tritonclient) mean by deflate: the zlib format
        ("deflate", _raw_deflate(BODY)),  # a raw stream, as some clients send
        ("gzip", gzip.compress(BODY[:100]) + gzip.compress(BODY[100:])),  # two gzip members
    ],
)
def test_streams_inflate_whatever_the_chunking(encoding, packed, chunk):
    assert inflate(encoding, packed, chunk) == BODY


def test_the_cap_counts_inflated_bytes():
    packed = gzip.compress(BODY)
    assert inflate("gzip", packed, 64, limit=len(BODY)) == BODY
    with pytest.raises(PayloadTooLargeError, match=f"inflates to more than the limit of {len(BODY) - 1} bytes"):
        inflate("gzip", packed, 64, limit=len(BODY) - 1)


def test_broken_streams_name_the_problem():
    with pytest.raises(InputError, match="truncated"):
        inflate("gzip", gzip.compress(BODY)[:-5], 64)
    with pytest.raises(InputError, match="not valid deflate data"):
        inflate("deflate", b"\x78\x9c" + b"\xff" * 20, 64)
    with pytest.raises(InputError, match="empty or cut short"):
        inflate("gzip", b"", 64)


def test_encodings_other_than_gzip_and_deflate_are_refused():
    assert BodyDecoder.for_header(None, 10) is None and BodyDecoder.for_header("identity", 10) is None
    for value in ("br", "zstd", "gzip, gzip", "compress"):
        with pytest.raises(UnsupportedMediaTypeError, match="is not supported"):
            BodyDecoder.for_header(value, 10)


@pytest.mark.parametrize(
    "accept, chosen",
    [
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("GZip, deflate, br", "gzip"),
        ("deflate, gzip", "deflate"),  # a tie: the client's first
        ("deflate;q=0.5, gzip;q=0.8", "gzip"),
        ("gzip;q=0, deflate;q=0.1", "deflate"),
        ("gzip;q=0", None),
        ("br, zstd", None),
        ("identity", None),
        ("*", "gzip"),
        ("", None),
        (None, None),
        ("gzip;q=oops", None),
    ],
)
def test_accept_encoding_negotiation(accept, chosen):
    assert response_encoding(accept) == chosen


def test_answers_compress_to_what_clients_undo():
    assert gzip.decompress(compress(BODY, "gzip")) == BODY
    assert zlib.decompress(compress(BODY, "deflate")) == BODY  # tritonclient's zlib.decompress
