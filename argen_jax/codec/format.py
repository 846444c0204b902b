"""The compressed file: a small header, then the range coder's stream.

    magic      3 bytes  b"AJC"
    version    1 byte
    kind       1 byte   0 image, 1 audio, 2 tokens (what `decode` writes: PNG, WAV, .npy)
    params     4 bytes  checksum of the model's parameters (`params_checksum`)
    step       varint   the checkpoint step of the run
    run        varint length + UTF-8: the run's name (its workdir's base name, <= 64 bytes)
    shape      1 byte ndim + varints: this file's data shape
    padded     varint   first dimension of the batch it was coded in (0: = shape[0])
    label      varint   label + 1 (0: none)
    batch      varint   rows of the coding batch;  row  varint  this file's row
    backend    2 bytes  checksum of the platform string (`backend_fingerprint`)
    data       4 bytes  CRC-32 of the data (checked after decoding)
    header     4 bytes  CRC-32 of every byte above
    stream     the rest: little-endian uint32 words of constriction's RangeEncoder

Integers are little-endian; varints are LEB128 (7 bits a byte). The batch geometry (batch,
row, padded length) is in the header because the decoder must run the very program the
encoder ran: the same shapes, the file in the same row (see docs/design.md, the codec rule).
"""
from __future__ import annotations

import dataclasses
import hashlib
import zlib

import jax
import numpy as np

from argen_jax.errors import CodecError

MAGIC = b"AJC"
VERSION = 1
KINDS = ("image", "audio", "tokens")
MAX_RUN = 64


@dataclasses.dataclass(frozen=True)
class Header:
    kind: str
    params: bytes  # 4-byte checksum of the parameters
    step: int
    run: str
    shape: tuple[int, ...]
    padded: int  # first dimension of the coding batch (>= shape[0])
    label: int | None
    batch: int
    row: int
    backend: bytes  # 2-byte checksum of the platform string
    data_crc: int

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The per-row data shape of the batch the file was coded in."""
        return (self.padded,) + tuple(self.shape[1:])


def _varint(n: int) -> bytes:
    if n < 0:
        raise ValueError(f"varint of a negative number {n}")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    def __init__(self, buf: bytes, name: str):
        self.buf, self.pos, self.name = buf, 0, name

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise CodecError(f"{self.name}: the header is truncated (damaged file?)")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def varint(self) -> int:
        n = shift = 0
        while True:
            byte = self.take(1)[0]
            n |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return n
            if shift > 63:
                raise CodecError(f"{self.name}: the header is damaged (bad integer)")


def pack(h: Header, stream: np.ndarray) -> bytes:
    """The file's bytes: header, then the stream (uint32 words)."""
    run = h.run.encode()[:MAX_RUN]
    out = bytearray(MAGIC)
    out.append(VERSION)
    out.append(KINDS.index(h.kind))
    out += h.params
    out += _varint(h.step) + _varint(len(run)) + run
    out.append(len(h.shape))
    for d in h.shape:
        out += _varint(d)
    out += _varint(0 if h.padded == h.shape[0] else h.padded)
    out += _varint(0 if h.label is None else h.label + 1)
    out += _varint(h.batch) + _varint(h.row)
    out += h.backend + int(h.data_crc).to_bytes(4, "little")
    out += zlib.crc32(bytes(out)).to_bytes(4, "little")
    return bytes(out) + np.asarray(stream, "<u4").tobytes()


def unpack(buf: bytes, name: str = "file") -> tuple[Header, np.ndarray]:
    """(header, stream words) of a file; a one-line CodecError if it is not a codec file or
    its header is damaged."""
    r = _Reader(buf, name)
    if r.take(3) != MAGIC:
        raise CodecError(f"{name}: not a file of this codec (bad magic bytes)")
    version = r.take(1)[0]
    if version != VERSION:
        raise CodecError(f"{name}: codec format version {version}, this code reads {VERSION}")
    kind = r.take(1)[0]
    params = r.take(4)
    step = r.varint()
    run = r.take(r.varint())
    shape = tuple(r.varint() for _ in range(r.take(1)[0]))
    padded, label = r.varint(), r.varint()
    batch, row = r.varint(), r.varint()
    backend, data_crc = r.take(2), int.from_bytes(r.take(4), "little")
    end = r.pos
    crc = int.from_bytes(r.take(4), "little")
    if crc != zlib.crc32(buf[:end]):
        raise CodecError(f"{name}: the header is damaged (checksum mismatch)")
    if kind >= len(KINDS) or not shape or row >= batch:
        raise CodecError(f"{name}: the header is damaged (impossible values)")
    stream = buf[r.pos:]
    if len(stream) % 4:
        raise CodecError(f"{name}: the stream is truncated ({len(stream)} bytes is not whole "
                         "32-bit words)")
    header = Header(KINDS[kind], params, step, run.decode(errors="replace"), shape,
                    padded or shape[0], None if label == 0 else label - 1, batch, row, backend,
                    data_crc)
    return header, np.frombuffer(stream, "<u4").astype(np.uint32)


def params_checksum(params) -> bytes:
    """4 bytes of the SHA-256 of every parameter (path, dtype, shape, values)."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        a = np.ascontiguousarray(jax.device_get(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.digest()[:4]


def data_crc(data: np.ndarray) -> int:
    """CRC-32 of the data as little-endian int32 (independent of the array's dtype)."""
    return zlib.crc32(np.ascontiguousarray(np.asarray(data).astype("<i4")).tobytes())


def backend_string() -> str:
    """What the integer tables depend on besides the model and the data: the backend and
    device, the JAX / jaxlib versions and the XLA flags (see docs/design.md)."""
    import os

    import jaxlib

    dev = jax.devices()[0]
    return (f"{jax.default_backend()}|{dev.device_kind}|jax {jax.__version__}|jaxlib "
            f"{jaxlib.__version__}|{os.environ.get('XLA_FLAGS', '')}")


def backend_fingerprint() -> bytes:
    return hashlib.sha256(backend_string().encode()).digest()[:2]
