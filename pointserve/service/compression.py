"""HTTP body compression: gzip / deflate request bodies in (any route), compressed infer answers out (v2 infer).

What ``tritonclient.http`` sends: ``request_compression_algorithm="gzip"`` is ``Content-Encoding: gzip`` with a
gzip stream (``gzip.compress``), ``"deflate"`` is ``Content-Encoding: deflate`` with a zlib stream
(``zlib.compress``: HTTP's "deflate" means the zlib format); ``response_compression_algorithm`` sends
``Accept-Encoding: gzip`` or ``deflate`` and the client undoes the answer's ``Content-Encoding`` itself, then reads
``Inference-Header-Content-Length`` as the size of the *uncompressed* JSON header (Triton's rule).

Requests are decompressed as they stream in (:class:`BodyDecoder`), never past ``max_body_bytes`` of output: a body
that inflates beyond it (a zip bomb) is a 413 as soon as it does, a corrupt or truncated stream a 400 naming the
problem, an encoding other than gzip, deflate or identity a 415.
"""

from __future__ import annotations

import zlib

from pointserve.errors import InputError, PayloadTooLargeError, UnsupportedMediaTypeError

GZIP_WBITS = 16 + zlib.MAX_WBITS
ZLIB_WBITS = zlib.MAX_WBITS
RAW_DEFLATE_WBITS = -zlib.MAX_WBITS
# Answers are floats, which compress little at any level; level 1 costs a fifth of level 6's CPU.
RESPONSE_LEVEL = 1
RESPONSE_ENCODINGS = ("gzip", "deflate")


class BodyDecoder:
    """Inflates one request body chunk by chunk, refusing more than ``limit`` bytes of output."""

    def __init__(self, encoding: str, limit: int):
        self.encoding = encoding
        self.limit = limit
        self.produced = 0
        self._inflate: zlib._Decompress | None = None
        self._finished = False  # a complete stream was read (gzip may start another member after it)
        self._head = b""  # deflate: the first bytes, held until there are two to tell zlib from raw deflate

    @classmethod
    def for_header(cls, value: str | None, limit: int) -> BodyDecoder | None:
        """The decoder for a ``Content-Encoding`` header value; None for no encoding (or ``identity``)."""
        if value is None:
            return None
        codings = [c.strip().lower() for c in value.split(",") if c.strip() and c.strip().lower() != "identity"]
        if not codings:
            return None
        if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
            raise UnsupportedMediaTypeError(
                f"Content-Encoding {value[:64]!r} is not supported: send gzip, deflate or an uncompressed body"
            )
        return cls("gzip" if codings[0] == "x-gzip" else codings[0], limit)

    def _start(self, data: bytes) -> None:
        if self.encoding == "gzip":
            self._inflate = zlib.decompressobj(GZIP_WBITS)
        else:  # the zlib format, as HTTP means; a raw deflate stream (no zlib header) as some clients send it
            zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._inflate = zlib.decompressobj(ZLIB_WBITS if zlib_header else RAW_DEFLATE_WBITS)
        self._finished = False

    def feed(self, data: bytes) -> bytes:
        """The inflated bytes of the next chunk of the compressed body."""
        out = []
        if self._inflate is None and self.encoding == "deflate" and len(self._head + data) < 2:
            self._head += data
            return b""
        data, self._head = self._head + data, b""
        while data:
            if self._inflate is None or self._finished:
                if self._finished and self.encoding != "gzip":
                    raise InputError(f"{self.encoding} request body has {len(data)} bytes after the end of its stream")
                self._start(data)
            assert self._inflate is not None
            try:
                # One byte over what is left is enough to know the limit is passed, without inflating a bomb.
                chunk = self._inflate.decompress(data, self.limit - self.produced + 1)
            except zlib.error as exc:
                raise InputError(f"request body is not valid {self.encoding} data ({exc})") from None
            self.produced += len(chunk)
            if self.produced > self.limit:
                raise PayloadTooLargeError(
                    f"{self.encoding} request body inflates to more than the limit of {self.limit} bytes"
                )
            out.append(chunk)
            if self._inflate.eof:
                self._finished = True
                data = self._inflate.unused_data  # gzip: the next member of a multi-member stream
            else:
                data = self._inflate.unconsumed_tail
        return b"".join(out)

    def finish(self) -> None:
        """The body ended: the stream must have ended with it."""
        if self._inflate is None:
            raise InputError(f"Content-Encoding is {self.encoding} but the request body is empty or cut short")
        if not self._finished:
            raise InputError(f"{self.encoding} request body is truncated (the compressed stream does not end)")


def response_encoding(accept_encoding: str | None) -> str | None:
    """The encoding to answer with for an ``Accept-Encoding`` header: gzip or deflate, whichever has the higher
    q (> 0; the client's first on a tie; ``*`` counts as gzip); None when neither is acceptable."""
    if not accept_encoding:
        return None
    best, best_q = None, 0.0
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        coding = coding.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        coding = "gzip" if coding in ("x-gzip", "*") else coding
        if coding in RESPONSE_ENCODINGS and q > best_q:
            best, best_q = coding, q
    return best


def compress(body: bytes, encoding: str) -> bytes:
    """``body`` as a gzip or zlib ("deflate") stream."""
    if encoding == "gzip":
        deflate = zlib.compressobj(RESPONSE_LEVEL, zlib.DEFLATED, GZIP_WBITS)
    else:
        deflate = zlib.compressobj(RESPONSE_LEVEL, zlib.DEFLATED, ZLIB_WBITS)
    return deflate.compress(body) + deflate.flush()


__all__ = ["BodyDecoder", "compress", "response_encoding"]
