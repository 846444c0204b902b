"""A sharded token store: tokenized splits as fixed-size .npy shards plus a small JSON index,
written by a resumable, multi-process job and read lazily through memory maps.

Layout of a store directory:
    index.json                      what the shards hold (below); written first, updated last
    <split>_<k:05d>.tokens.npy      int16/int32 [n_k, L], or [n_k, A, L] with A augmentations
    <split>_<k:05d>.labels.npy      int32 [n_k]
Shard k of a split of N examples holds examples [k*S, min((k+1)*S, N)) (S = shard_size).
Every file is written to a temporary name and renamed, so a shard file that exists under its
final name is whole; `shard_complete` also checks its header and size, so a truncated or foreign
file is rewritten. Process p of P writes the shards k with k % P == p; a restarted job skips the
shards that are complete, and since shard k is a pure function of its examples (encoded in
fixed-size padded batches) a killed and restarted job leaves the same files as one that ran
through.

index.json: format, version, token_shape [h, w], scales, multiscale, token_length L,
codebook_size, dtype, tokenizer_workdir, tokenizer_step, shard_size, splits: {split:
{num_examples, num_shards, augment ('none' | 'flip' | 'tencrop'), num_augmentations,
default_augmentation}}, complete (all shards written), stats (codebook usage per split, once
complete). With augmentation (LlamaGen stores the codes of the ten crops + flips, or of the
centre crop and its flip), training reads one augmentation per example per step, chosen from
(seed, step, example index) (`TokenShardSplit.train_take`); everything else (`split[i]`,
evaluation) reads `default_augmentation` (the centre crop).

`TokenShardSplit` is the reader: `len`, `shape`, `split[i | slice | index array]` -> int32
token maps, gathered shard by shard from read-only memory maps; only the labels (4 bytes an
example) are held in memory. `load_token_shards(path)` gives the dict that
`data/tokens.TokenData` takes (data.kind='tokens' with data.path = the directory or its
index.json).
"""
from __future__ import annotations

import glob
import json
import mmap
import os
from collections.abc import Callable, Iterable

import numpy as np

from argen_jax.errors import ConfigError, DataError

INDEX = "index.json"
FORMAT = "argen_jax-token-shards"
VERSION = 1
AUGMENTATIONS = {"none": (1, 0), "flip": (2, 0), "tencrop": (10, 4)}  # name: (A, default)
# keys that must agree when a job resumes into an existing store
_IDENTITY = ("format", "version", "token_shape", "scales", "multiscale", "token_length",
             "codebook_size", "dtype", "tokenizer_step", "shard_size", "splits")


def is_shard_store(path: str) -> bool:
    """Whether data.path names a shard store (its directory or its index.json)."""
    path = os.path.expanduser(str(path))
    return os.path.basename(path) == INDEX or os.path.isdir(path)


def store_dir(path: str) -> str:
    path = os.path.expanduser(str(path))
    return os.path.dirname(path) if os.path.basename(path) == INDEX else path


def shard_path(directory: str, split: str, k: int, what: str) -> str:
    """what: 'tokens' or 'labels'."""
    return os.path.join(directory, f"{split}_{k:05d}.{what}.npy")


def num_shards(num_examples: int, shard_size: int) -> int:
    return -(-num_examples // shard_size)


def shard_range(k: int, num_examples: int, shard_size: int) -> tuple[int, int]:
    return k * shard_size, min((k + 1) * shard_size, num_examples)


def make_index(*, token_shape, scales, multiscale: bool, codebook_size: int,
               splits: dict[str, int], shard_size: int, augment: str = "none",
               augment_splits: Iterable[str] = ("train",), tokenizer_workdir: str = "",
               tokenizer_step: int = 0) -> dict:
    """The index of a store. splits: {name: num_examples}; `augment` applies to the splits in
    `augment_splits` (the others store the centre crop only)."""
    if augment not in AUGMENTATIONS:
        raise ConfigError(f"augment={augment!r}: must be one of {sorted(AUGMENTATIONS)}")
    if shard_size < 1:
        raise ConfigError(f"shard_size={shard_size}: must be positive")
    scales = [int(s) for s in scales]
    token_shape = [int(v) for v in token_shape]
    length = sum(s * s for s in scales) if multiscale else token_shape[0] * token_shape[1]
    index = {"format": FORMAT, "version": VERSION, "token_shape": token_shape,
             "scales": scales, "multiscale": bool(multiscale), "token_length": length,
             "codebook_size": int(codebook_size),
             "dtype": "int16" if codebook_size <= 32767 else "int32",
             "tokenizer_workdir": tokenizer_workdir, "tokenizer_step": int(tokenizer_step),
             "shard_size": int(shard_size), "splits": {}, "complete": False}
    for name, n in splits.items():
        aug = augment if name in tuple(augment_splits) else "none"
        a, default = AUGMENTATIONS[aug]
        index["splits"][name] = {"num_examples": int(n), "num_shards": num_shards(n, shard_size),
                                 "augment": aug, "num_augmentations": a,
                                 "default_augmentation": default}
    return index


def _atomic_write(path: str, write: Callable) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_index(directory: str, index: dict) -> None:
    _atomic_write(os.path.join(directory, INDEX),
                  lambda f: f.write(json.dumps(index, indent=1).encode()))


def read_index(path: str) -> dict:
    directory = store_dir(path)
    p = os.path.join(directory, INDEX)
    if not os.path.exists(p):
        raise DataError(f"{directory!r} is not a token shard store (no {INDEX}; write one with "
                        "experiments/tokenizer/tokenize_dataset.py --shards=DIR)")
    try:
        with open(p, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"{p} cannot be read: {e}") from None
    if index.get("format") != FORMAT:
        raise DataError(f"{p} is not a token shard index (format {index.get('format')!r})")
    return index


def _expected_shape(index: dict, split: str, k: int) -> tuple[int, ...]:
    info = index["splits"][split]
    lo, hi = shard_range(k, info["num_examples"], index["shard_size"])
    a = info["num_augmentations"]
    return (hi - lo, a, index["token_length"]) if a > 1 else (hi - lo, index["token_length"])


def _open(path: str, shape, dtype) -> np.memmap | None:
    """The read-only memory map of a .npy with this shape and dtype, else None."""
    try:
        mm = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):  # missing, truncated or not a .npy
        return None
    if not isinstance(mm, np.memmap) or mm.shape != tuple(shape) or mm.dtype != dtype:
        return None
    return mm


def shard_complete(directory: str, index: dict, split: str, k: int) -> bool:
    shape = _expected_shape(index, split, k)
    return (_open(shard_path(directory, split, k, "tokens"), shape, np.dtype(index["dtype"]))
            is not None and
            _open(shard_path(directory, split, k, "labels"), shape[:1], np.int32) is not None)


def missing_shards(directory: str, index: dict, split: str) -> list[int]:
    return [k for k in range(index["splits"][split]["num_shards"])
            if not shard_complete(directory, index, split, k)]


# --------------------------------------------------------------------------- writer
class ShardWriter:
    """Writes the shards of one process of a (possibly multi-process) tokenization job.

    Creating it writes the index (the same bytes from every process) or, when the directory
    already holds one, checks that it describes the same job (a DataError otherwise)."""

    def __init__(self, directory: str, index: dict, process_index: int = 0,
                 process_count: int = 1):
        if not 0 <= process_index < process_count:
            raise ConfigError(f"process_index={process_index} must be in [0, process_count="
                              f"{process_count})")
        self.directory = os.path.expanduser(directory)
        self.index, self.process_index, self.process_count = index, process_index, process_count
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, INDEX)
        if os.path.exists(path):
            old = read_index(self.directory)
            diff = [key for key in _IDENTITY if old.get(key) != index.get(key)]
            if diff:
                raise DataError(f"{self.directory} holds shards of a different job ({diff[0]}: "
                                f"{old.get(diff[0])!r} there, {index.get(diff[0])!r} now); use "
                                "another directory or delete it")
            self.index = old
        else:
            write_index(self.directory, index)

    def my_shards(self, split: str) -> list[int]:
        n = self.index["splits"][split]["num_shards"]
        return list(range(self.process_index, n, self.process_count))

    def pending(self, split: str) -> list[int]:
        """This process's shards of `split` that are not complete yet."""
        return [k for k in self.my_shards(split)
                if not shard_complete(self.directory, self.index, split, k)]

    def shard_range(self, split: str, k: int) -> tuple[int, int]:
        return shard_range(k, self.index["splits"][split]["num_examples"],
                           self.index["shard_size"])

    def write_shard(self, split: str, k: int, tokens: np.ndarray, labels: np.ndarray) -> None:
        shape = _expected_shape(self.index, split, k)
        tokens = np.asarray(tokens)
        if tokens.shape != shape:
            raise DataError(f"shard {split} {k}: tokens {tokens.shape}, expected {shape}")
        kmax = self.index["codebook_size"]
        if tokens.size and (tokens.min() < 0 or tokens.max() >= kmax):
            raise DataError(f"shard {split} {k}: tokens outside [0, codebook_size={kmax})")
        tokens = tokens.astype(self.index["dtype"])
        labels = np.asarray(labels, np.int32).reshape(shape[:1])
        for what in ("labels", "tokens"):  # temp files of a killed earlier attempt
            for stale in glob.glob(glob.escape(shard_path(self.directory, split, k, what))
                                   + ".tmp*"):
                os.remove(stale)
        # labels first: a shard counts as written once its tokens file exists whole
        _atomic_write(shard_path(self.directory, split, k, "labels"),
                      lambda f: np.save(f, labels))
        _atomic_write(shard_path(self.directory, split, k, "tokens"),
                      lambda f: np.save(f, tokens))

    def finalize(self) -> bool:
        """If every shard of every split is written: mark the index complete, with codebook
        usage per split (streamed shard by shard). Returns whether the store is complete."""
        if any(missing_shards(self.directory, self.index, s) for s in self.index["splits"]):
            return False
        index = dict(self.index, complete=True, stats=store_stats(self.directory, self.index))
        write_index(self.directory, index)
        self.index = index
        return True


def store_stats(directory: str, index: dict) -> dict:
    """{split: {usage, perplexity, num_examples}} over all tokens of all augmentations."""
    k, out = index["codebook_size"], {}
    for split, info in index["splits"].items():
        counts = np.zeros(k, np.int64)
        for s in range(info["num_shards"]):
            mm = np.load(shard_path(directory, split, s, "tokens"), mmap_mode="r")
            counts += np.bincount(np.asarray(mm).reshape(-1), minlength=k)[:k]
        p = counts / max(counts.sum(), 1)
        nz = p[p > 0]
        out[split] = {"usage": float((counts > 0).mean()),
                      "perplexity": float(np.exp(-(nz * np.log(nz)).sum())),
                      "num_examples": info["num_examples"]}
    return out


# --------------------------------------------------------------------------- reader
def _mix(*arrays) -> np.ndarray:
    """A splitmix64-style hash of broadcast uint64 arrays (deterministic, vectorised)."""
    h = np.zeros(np.broadcast(*arrays).shape, np.uint64)
    with np.errstate(over="ignore"):
        for a in arrays:
            h = (h ^ np.asarray(a).astype(np.uint64)) + np.uint64(0x9E3779B97F4A7C15)
            h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h = h ^ (h >> np.uint64(31))
    return h


class TokenShardSplit:
    """Lazy random access to one split of a store: int32 token maps [.., L] gathered from
    memory-mapped shards; `labels` (int32 [N]) in memory. `limit` keeps the first n.

    Pages of a memory map that were read stay in the process's resident set (file-backed,
    reclaimable) until unmapped, and a kernel with large page-cache folios maps up to 2 MB
    per row read; so the reader drops a shard's pages right after gathering from it (madvise
    DONTNEED; the page cache keeps the data) and the resident set stays flat in the dataset
    size instead of growing to the store's size within a few batches (`release_pages`)."""

    def __init__(self, path: str, split: str, limit: int = 0, index: dict | None = None):
        self.directory = store_dir(path)
        self.index = index or read_index(self.directory)
        if split not in self.index["splits"]:
            raise DataError(f"{self.directory} has no {split!r} split "
                            f"(has {sorted(self.index['splits'])})")
        self.split, info = split, self.index["splits"][split]
        self.shard_size = self.index["shard_size"]
        self.num_augmentations = info["num_augmentations"]
        self.default_augmentation = info["default_augmentation"]
        self.length = self.index["token_length"]
        self.dtype = np.dtype(self.index["dtype"])
        n = info["num_examples"]
        self.num_examples = min(limit, n) if limit else n
        used = num_shards(self.num_examples, self.shard_size)
        self._tokens: list[np.memmap] = []
        labels = []
        for k in range(used):
            shape = _expected_shape(self.index, split, k)
            t = _open(shard_path(self.directory, split, k, "tokens"), shape, self.dtype)
            lab = _open(shard_path(self.directory, split, k, "labels"), shape[:1], np.int32)
            if t is None or lab is None:
                missing = missing_shards(self.directory, self.index, split)
                raise DataError(f"{self.directory}: {len(missing)} of the {info['num_shards']} "
                                f"{split} shards are missing or incomplete (first: {missing[0]});"
                                " rerun tokenize_dataset.py with the same --shards to finish")
            self._tokens.append(t)
            labels.append(np.asarray(lab))
        self.labels = (np.concatenate(labels) if labels else np.zeros(0, np.int32)
                       )[: self.num_examples]
        check_labels(self.labels, f"{self.directory}: the {split} shards' labels")

    release_pages = True  # drop the mapped pages of a shard right after reading from it

    @staticmethod
    def _release(m: np.memmap) -> None:
        mm = getattr(m, "_mmap", None)  # numpy's memmap keeps its mmap.mmap here
        if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
            mm.madvise(mmap.MADV_DONTNEED)  # the data stays in the page cache

    def __len__(self) -> int:
        return self.num_examples

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_examples, self.length)

    ndim = 2

    def limit(self, n: int) -> TokenShardSplit:
        """The first n examples (0: all)."""
        if not n or n >= self.num_examples:
            return self
        return TokenShardSplit(self.directory, self.split, n, self.index)

    def augmentations(self, idx, step: int, seed: int = 0) -> np.ndarray:
        """The augmentation each example of `idx` uses at `step`: a pure function of
        (seed, step, example index)."""
        idx = np.asarray(idx, np.int64)
        if self.num_augmentations == 1:
            return np.zeros(idx.shape, np.int64)
        return (_mix(np.uint64(seed), np.uint64(step), idx)
                % np.uint64(self.num_augmentations)).astype(np.int64)

    def take(self, idx, aug=None) -> np.ndarray:
        """int32 [len(idx), L]: the maps of examples `idx` (augmentation `aug`: one per
        example, default `default_augmentation`)."""
        idx = np.asarray(idx, np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_examples):
            raise IndexError(f"index outside [0, {self.num_examples}) of split {self.split!r}")
        if aug is None:
            aug = np.full(idx.shape, self.default_augmentation, np.int64)
        aug = np.broadcast_to(np.asarray(aug, np.int64), idx.shape)
        out = np.empty((len(idx), self.length), np.int32)
        shard, off = np.divmod(idx, self.shard_size)
        order = np.argsort(shard, kind="stable")
        ks, starts = np.unique(shard[order], return_index=True)
        for k, sel in zip(ks, np.split(order, starts[1:]), strict=True):
            mm = self._tokens[int(k)]
            out[sel] = mm[off[sel], aug[sel]] if mm.ndim == 3 else mm[off[sel]]
            if self.release_pages:
                self._release(mm)
        return out

    def train_take(self, idx, step: int, seed: int = 0) -> np.ndarray:
        """The training maps of `idx` at `step`: one augmentation per example."""
        return self.take(idx, self.augmentations(idx, step, seed))

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return self.take(np.arange(self.num_examples)[key])
        if np.ndim(key) == 0:
            i = int(key)
            return self.take([i + self.num_examples if i < 0 else i])[0]
        return self.take(key)


def load_token_shards(path: str) -> dict:
    """The dict `data/tokens.TokenData` takes, with lazy `{split}_tokens` (TokenShardSplit)."""
    directory = store_dir(path)
    index = read_index(directory)
    for split in ("train", "test"):
        if split not in index["splits"]:
            raise DataError(f"{directory} has no {split!r} split; data.kind='tokens' needs "
                            "train and test")
    d = {"token_shape": np.asarray(index["token_shape"]), "scales": np.asarray(index["scales"]),
         "multiscale": index["multiscale"], "codebook_size": index["codebook_size"]}
    if index.get("tokenizer_workdir"):
        d["tokenizer_workdir"] = index["tokenizer_workdir"]
    for split in ("train", "test"):
        s = TokenShardSplit(directory, split, index=index)
        d[f"{split}_tokens"], d[f"{split}_labels"] = s, s.labels
    return d


def check_labels(labels: np.ndarray, what: str) -> None:
    """Class labels are integers >= 0 (a DataError naming `what` otherwise)."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise DataError(f"{what} are {labels.dtype}, not integer class labels")
    if labels.size and labels.min() < 0:
        raise DataError(f"{what} include {int(labels.min())}: class labels must be >= 0")
