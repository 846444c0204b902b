"""Encoding and decoding with a family's sampler order and constriction's range coder.

Both directions run `_walk`: the family's `Steps` one step at a time, with the same jitted
programs (`_Programs`, compiled once per data shape and batch size), the entropy coder in
place of the sampler's draw. The encoder writes the true symbols (teacher forcing through the
decoder's own step function), the decoder the symbols it decodes, so at every step both call
the same compiled function on the same inputs and get the same integer tables.

Files are coded in batches over the batch axis; each file has its own stream. Audio files of
different lengths share a batch padded to the longest (a row stops coding at its length).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence

import constriction
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from tqdm import tqdm

from argen_jax.codec import format as fmt
from argen_jax.codec.tables import code_length_bits, coder_weights, frequencies
from argen_jax.errors import CheckpointError, CodecError, DataError
from argen_jax.inference import open_run
from argen_jax.io.run_dir import load_config
from argen_jax.models.base import CodesLosslessly, Family
from argen_jax.parallel.mesh import create_mesh

_MODEL = constriction.stream.model.Categorical(perfect=False)  # exact for `coder_weights`


@dataclasses.dataclass(frozen=True)
class Encoded:
    """One compressed file and what its symbols cost under the integer tables."""

    data: bytes  # the whole file (header + stream)
    table_bits: float  # -sum log2 of the coded symbols' table probabilities
    header_bytes: int


class _Programs:
    """The jitted functions of one (data shape, batch size): shared by encode and decode."""

    def __init__(self, family, shape: tuple[int, ...], batch: int):
        sym = family.coding_symbols()
        box = {}

        def steps(params, labels):
            s = family.coding_steps(params, shape, labels)
            box["num_steps"] = s.num_steps
            return s

        def init(params, labels):
            s = steps(params, labels)
            return s.seq, s.cache

        def step(params, labels, seq, cache, t):
            out, cache = steps(params, labels).step_fn(seq, cache, t)
            x = jnp.zeros((batch, sym.per_step, sym.stages), jnp.int32)
            return out, cache, frequencies(sym.log_probs(out, x, 0))

        def stage(out, x, s):
            return frequencies(sym.log_probs(out, x, s))

        def write(params, labels, seq, x, t):
            return steps(params, labels).write_fn(seq, sym.to_draw(x), t)

        self.symbols, self.batch, self.shape = sym, batch, shape
        # the step's cache (a family's step state: KV cache, queues, pixel caches) is donated:
        # updated in place, not copied once per step
        self.init, self.write = jax.jit(init), jax.jit(write)
        self.step = jax.jit(step, donate_argnums=3)
        self.stage = jax.jit(stage, static_argnums=2)
        self._box = box

    @property
    def num_steps(self) -> int:
        return self._box["num_steps"]  # set when `init` is first traced


class Codec:
    """A trained model as a lossless codec: `encode` arrays to files, `decode` files back."""

    def __init__(self, family: Family, params, run: str = "", step: int = 0):
        if not isinstance(family, CodesLosslessly):
            raise CodecError(f"{type(family).__name__} cannot drive the codec (no exact "
                             "step-by-step likelihood)")
        self.family, self.params = family, nn.meta.unbox(params)
        self.run, self.step = os.path.basename(os.path.normpath(run))[:fmt.MAX_RUN], int(step)
        self.checksum = fmt.params_checksum(self.params)
        self.kind = family.spec.kind
        self.num_labels, self.default_label = family.coding_labels()
        self._programs: dict = {}

    @classmethod
    def load(cls, workdir: str, pixel_cache: bool = True) -> Codec:
        """The newest checkpoint of a trained run (its Polyak average when it kept one).
        `pixel_cache=False`: the pixel models' full pass per step (`sample.pixel_cache`)."""
        config = load_config(workdir, CheckpointError, "a trained run")
        if not pixel_cache:
            config.sample.pixel_cache = False
        run = open_run(workdir, config, mesh=create_mesh(devices=jax.local_devices()[:1]))
        return cls(run.family, run.params, workdir, run.step)

    @property
    def dtype(self):
        return np.uint8 if self.family.spec.levels <= 256 else np.int32

    def programs(self, shape: tuple[int, ...], batch: int) -> _Programs:
        key = (tuple(shape), batch)
        if key not in self._programs:
            self._programs[key] = _Programs(self.family, tuple(shape), batch)
        return self._programs[key]

    # ---------------------------------------------------------------- labels and data
    def _labels(self, labels, n: int) -> list[int | None]:
        if self.num_labels == 0:
            if labels is not None and any(v is not None for v in labels):
                raise DataError("this model is not conditioned on labels; give none")
            return [None] * n
        labels = [None] * n if labels is None else list(labels)
        if len(labels) != n:
            raise DataError(f"{len(labels)} labels for {n} inputs")
        out = []
        for v in labels:
            v = self.default_label if v is None else int(v)
            if v is None:
                raise DataError(f"this model is conditioned on a label in [0, "
                                f"{self.num_labels}): give one (--label)")
            if not 0 <= v < self.num_labels:
                raise DataError(f"label {v} is outside [0, {self.num_labels})")
            out.append(v)
        return out

    def _check(self, x: np.ndarray) -> np.ndarray:
        spec = self.family.spec
        x = np.asarray(x)
        if x.size and (x.min() < 0 or x.max() >= spec.levels):
            raise DataError(f"values must be in [0, {spec.levels}), got [{x.min()}, {x.max()}]")
        if self.kind != "audio" and tuple(x.shape) != tuple(spec.shape):
            raise DataError(f"an input has shape {x.shape}, the model codes {spec.shape}")
        if self.kind == "audio" and (x.ndim != 1 or not len(x)):
            raise DataError(f"audio must be a non-empty 1-D array of codes, got {x.shape}")
        return x

    # ---------------------------------------------------------------- encode / decode
    def encode(self, data: Sequence[np.ndarray], labels: Sequence[int | None] | None = None,
               batch_size: int = 16, progress: bool = False) -> list[Encoded]:
        """Arrays (ints in [0, levels): images [H, W, C], audio codes [T], token maps) ->
        one compressed file each, coded `batch_size` at a time."""
        data = [self._check(x) for x in data]
        labels = self._labels(labels, len(data))
        out = []
        for lo in range(0, len(data), batch_size):
            out += self._encode_batch(data[lo:lo + batch_size], labels[lo:lo + batch_size],
                                      progress)
        return out

    def _encode_batch(self, data, labels, progress) -> list[Encoded]:
        b = len(data)
        padded = max(len(x) for x in data)
        batch = np.zeros((b, padded) + data[0].shape[1:], np.int32)
        for i, x in enumerate(data):
            batch[i, :len(x)] = x
        prog = self.programs(batch.shape[1:], b)
        encoders = [constriction.stream.queue.RangeEncoder() for _ in range(b)]
        bits = np.zeros(b)
        targets = np.asarray(prog.symbols.targets(jnp.asarray(batch)))  # [T, B, M, S]

        def code(t, s, freqs, active):
            sym = targets[t, :, :, s]  # [B, M]
            for i in np.flatnonzero(active):
                encoders[i].encode(sym[i].astype(np.int32), _MODEL, coder_weights(freqs[i]))
                bits[i] += code_length_bits(freqs[i], sym[i])
            return sym

        seq = _walk(self, prog, labels, [len(x) for x in data], code, progress, "encode")
        if not np.array_equal(seq.reshape(batch.shape), batch):
            raise RuntimeError("the coded sequence is not the data: the family's coding "
                               "targets do not match its write_fn")
        out = []
        for i, x in enumerate(data):
            h = fmt.Header(self.kind, self.checksum, self.step, self.run, tuple(x.shape),
                           padded, labels[i], b, i, fmt.backend_fingerprint(),
                           fmt.data_crc(x))
            body = fmt.pack(h, np.zeros(0, np.uint32))
            out.append(Encoded(body + np.asarray(encoders[i].get_compressed(), "<u4").tobytes(),
                               float(bits[i]), len(body)))
        return out

    def read_header(self, buf: bytes, name: str = "file") -> tuple[fmt.Header, np.ndarray]:
        """(header, stream) of a file this model wrote; a one-line CodecError otherwise."""
        h, stream = fmt.unpack(buf, name)
        if h.params != self.checksum:
            raise CodecError(f"{name} was written by another model (run {h.run!r} step "
                             f"{h.step}, parameters {h.params.hex()}); this is run "
                             f"{self.run!r} step {self.step}, parameters {self.checksum.hex()}")
        if h.kind != self.kind:
            raise CodecError(f"{name} holds {h.kind} data, this model codes {self.kind}")
        return h, stream

    def decode(self, files: Sequence[bytes], names: Sequence[str] | None = None,
               progress: bool = False) -> list[tuple[np.ndarray, int | None]]:
        """Compressed files -> [(data, label)], in order. Files coded in the same batch are
        decoded together, each in its row of a batch of the encoder's geometry."""
        names = list(names) if names is not None else [f"file {i}" for i in range(len(files))]
        parsed = [self.read_header(buf, n) for buf, n in zip(files, names, strict=True)]
        if any(h.backend != fmt.backend_fingerprint() for h, _ in parsed):
            print(f"warning: some files were encoded on another backend or JAX version than "
                  f"this one ({fmt.backend_string()}); decoding is exact only on the same "
                  "(docs/design.md); the data checksum will tell", file=sys.stderr)
        results: list = [None] * len(files)
        for group in _batches(parsed):
            self._decode_batch(group, parsed, names, results, progress)
        return results

    def _decode_batch(self, group, parsed, names, results, progress):
        h0 = parsed[group[0]][0]
        b = h0.batch
        prog = self.programs(h0.batch_shape, b)
        decoders: list = [None] * b
        lengths, labels = [0] * b, [self.default_label] * b
        for k in group:
            h, stream = parsed[k]
            decoders[h.row] = constriction.stream.queue.RangeDecoder(stream)
            lengths[h.row], labels[h.row] = h.shape[0], h.label
        m = prog.symbols.per_step
        name_of = {parsed[k][0].row: names[k] for k in group}

        def code(t, s, freqs, active):
            sym = np.zeros((b, m), np.int32)
            for i in np.flatnonzero(active):
                try:
                    sym[i] = decoders[i].decode(_MODEL, coder_weights(freqs[i]))
                except (ValueError, RuntimeError) as e:  # constriction: invalid stream
                    raise CodecError(f"{name_of[i]}: a damaged stream ({e})") from None
            return sym

        seq = _walk(self, prog, labels, lengths, code, progress, "decode")
        seq = seq.reshape((b,) + h0.batch_shape)
        for k in group:
            h, _ = parsed[k]
            x = seq[h.row, :h.shape[0]].astype(self.dtype)
            if fmt.data_crc(x) != h.data_crc:
                raise CodecError(f"{names[k]}: the decoded data fail their checksum (a damaged "
                                 "stream, or a file encoded on another backend or JAX)")
            results[k] = (x, h.label)


def _batches(parsed) -> list[list[int]]:
    """Indices of files that can share one decoding run: the same geometry, distinct rows."""
    runs: list[tuple[tuple, set, list]] = []
    for k, (h, _) in enumerate(parsed):
        key = (h.batch, h.batch_shape)
        for rkey, rows, members in runs:
            if rkey == key and h.row not in rows:
                rows.add(h.row)
                members.append(k)
                break
        else:
            runs.append((key, {h.row}, [k]))
    return [members for _, _, members in runs]


def _walk(codec: Codec, prog: _Programs, labels, lengths, code: Callable, progress: bool,
          desc: str) -> np.ndarray:
    """Runs the family's steps with `code(t, stage, freqs [B, M, V], active [B]) -> x [B, M]`
    as the draw; returns the final seq. `lengths`: each row's length along the first data
    axis (rows stop coding after it; they are not coded at all when 0)."""
    b = prog.batch
    lab = jnp.asarray([0 if v is None else v for v in labels], jnp.int32)
    seq, cache = prog.init(codec.params, lab)
    n, sym = prog.num_steps, prog.symbols
    per_row = n // prog.shape[0]  # steps per element of the first data axis
    row_steps = np.asarray(lengths) * per_row if len(prog.shape) == 1 else (
        np.where(np.asarray(lengths) > 0, n, 0))
    with tqdm(total=n, desc=desc, unit="step", disable=not progress, mininterval=1.0) as bar:
        for t in range(n):
            out, cache, freqs = prog.step(codec.params, lab, seq, cache, t)
            x = np.zeros((b, sym.per_step, sym.stages), np.int32)
            active = row_steps > t
            for s in range(sym.stages):
                if s:
                    freqs = prog.stage(out, jnp.asarray(x), s)
                x[:, :, s] = code(t, s, np.asarray(freqs), active)
            seq = prog.write(codec.params, lab, seq, jnp.asarray(x), t)
            bar.update(1)
    return np.asarray(seq)
