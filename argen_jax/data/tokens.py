"""Token maps of a tokenized image dataset, for the token-level AR models (LlamaGen, VAR).

data.path is either a shard store (a directory or its index.json, `data/token_shards.py`:
fixed-size memory-mapped shards, read lazily, optionally with augmented maps of which training
draws one per example and step) or the single .npz (small sets), both written by
`experiments/tokenizer/tokenize_dataset.py`. The .npz holds:
    {train,test}_tokens  int [N, L]   one h x w map in raster order (L = h*w), or the maps of
                                      every scale flattened coarse to fine (L = sum p_s^2)
    {train,test}_labels  int32 [N]
    token_shape [h, w], scales [S], codebook_size, multiscale, tokenizer_workdir (optional)

Batches are {'tokens': int32 [B, L], 'label': int32 [B], 'mask': float32 [B]}; like every
data builder the training batch is a pure function of (seed, step). The spec is
DataSpec(shape=(L,), levels=codebook_size, kind='tokens', grid=(h, w), scales=...).

The images the tokens came from (the reference set of sample-quality metrics) are read
through the tokenizer run's own data config: `test_images()`.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import numpy as np

from argen_jax.config_lib import typed
from argen_jax.data import batch as keys
from argen_jax.data.batch import check_batching
from argen_jax.data.images import load_image_set
from argen_jax.data.patches import PatchDataSettings, load_patch_split
from argen_jax.data.pipeline import DataSpec, RandomAccessBatcher, sequential_batches
from argen_jax.data.token_shards import check_labels, is_shard_store, load_token_shards
from argen_jax.errors import ConfigError, DataError
from argen_jax.io.run_dir import load_config

REQUIRED = ("train_tokens", "train_labels", "test_tokens", "test_labels", "token_shape",
            "codebook_size")


@dataclasses.dataclass(frozen=True)
class TokenDataSettings:
    """`config.data` of data.kind='tokens'."""

    kind: str = "tokens"  # registry: which data builder (data/builders.py)
    path: str = ""  # the token .npz, or a token shard directory (or its index.json), written
    # by experiments/tokenizer/tokenize_dataset.py (--out / --shards)
    tokenizer: str = ""  # the tokenizer run's workdir ('' = the one stored in the .npz / index)
    batch_size: int = 64  # global batch (split over the data mesh axis)
    eval_batch_size: int = 0  # global eval batch (0: batch_size)
    train_limit: int = 0  # use only the first N train maps (0 = all)
    test_limit: int = 0  # use only the first N test maps (0 = all)

    def __post_init__(self):
        if self.kind != "tokens":
            raise ConfigError(f"data.kind={self.kind!r}: these are the settings of 'tokens'")
        check_batching(self)


def load_token_file(path: str) -> dict:
    """The arrays of a token .npz, checked; raises DataError naming what is wrong."""
    path = os.path.expanduser(path)
    if not path:
        raise ConfigError("data.path must name a token .npz (experiments/tokenizer/"
                          "tokenize_dataset.py writes one)")
    if not os.path.exists(path):
        raise DataError(f"token file {path!r} not found (write it with experiments/tokenizer/"
                        "tokenize_dataset.py)")
    try:
        with np.load(path) as f:
            d = {k: f[k] for k in f.files}
    except Exception as e:  # zip / pickle errors from a corrupt or foreign file
        raise DataError(f"token file {path!r} cannot be read: {e}") from None
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise DataError(f"token file {path!r} lacks {missing}; is it from tokenize_dataset.py?")
    k = int(d["codebook_size"])
    for split in ("train", "test"):
        t = d[f"{split}_tokens"]
        if t.ndim != 2 or len(t) != len(d[f"{split}_labels"]):
            raise DataError(f"{path!r}: {split}_tokens {t.shape} does not match "
                            f"{split}_labels {d[f'{split}_labels'].shape}")
        if t.dtype.kind not in "iu":
            raise DataError(f"{path!r}: {split}_tokens are {t.dtype}, not integers (codebook "
                            "indices)")
        if t.size and (t.min() < 0 or t.max() >= k):
            raise DataError(f"{path!r}: {split}_tokens outside [0, codebook_size={k})")
        check_labels(d[f"{split}_labels"], f"{path!r}: {split}_labels")
    return d


def scales_and_grid(d: dict) -> tuple[tuple[int, ...] | None, tuple[int, int]]:
    grid = tuple(int(v) for v in d["token_shape"])
    multiscale = bool(d.get("multiscale", False))
    scales = tuple(int(s) for s in d["scales"]) if multiscale else None
    length = d["train_tokens"].shape[1]
    expect = sum(s * s for s in scales) if scales else grid[0] * grid[1]
    if length != expect:
        raise DataError(f"token maps have {length} tokens but token_shape {grid} / scales "
                        f"{scales} imply {expect}")
    return scales, grid


def _head(tokens, limit: int):
    """The first `limit` maps (0: all): int32 in memory, or a lazy shard split
    (`token_shards.TokenShardSplit`, int32 on fetch)."""
    if isinstance(tokens, np.ndarray):
        return tokens[: limit or None].astype(np.int32)
    return tokens.limit(limit)


class TokenData:
    def __init__(self, d: dict, batch_size: int, eval_batch_size: int, seed: int = 0,
                 train_limit: int = 0, test_limit: int = 0, tokenizer_workdir: str = ""):
        self.scales, self.grid = scales_and_grid(d)
        self.seed = seed
        self.train_tokens = _head(d["train_tokens"], train_limit)
        self.train_labels = d["train_labels"][: train_limit or None].astype(np.int32)
        self.test_tokens = _head(d["test_tokens"], test_limit)
        self.test_labels = d["test_labels"][: test_limit or None].astype(np.int32)
        self.test_limit = test_limit
        ncls = int(max(self.train_labels.max(initial=-1), self.test_labels.max(initial=-1)) + 1)
        stored = str(d["tokenizer_workdir"]) if "tokenizer_workdir" in d else ""
        self.spec = DataSpec((self.train_tokens.shape[1],), int(d["codebook_size"]), ncls,
                             "tokens", grid=self.grid, scales=self.scales,
                             tokenizer=os.path.expanduser(tokenizer_workdir or stored))
        self.eval_batch_size = eval_batch_size
        self.train_batch = RandomAccessBatcher(
            len(self.train_tokens), batch_size, seed,
            lambda idx, step: {keys.TOKENS: self._train_tokens(idx, step),
                               keys.LABEL: self.train_labels[idx]})

    def _train_tokens(self, idx: np.ndarray, step: int) -> np.ndarray:
        if isinstance(self.train_tokens, np.ndarray):
            return self.train_tokens[idx]
        # a shard store: one stored augmentation per example, from (seed, step, index)
        return self.train_tokens.train_take(idx, step, self.seed)

    def eval_batches(self) -> Iterator[dict]:
        return sequential_batches(
            len(self.test_tokens), self.eval_batch_size,
            lambda idx: {keys.TOKENS: self.test_tokens[idx], keys.LABEL: self.test_labels[idx]})

    def tokenizer_config(self):
        """The tokenizer run's config (its config.json)."""
        return load_config(self.spec.tokenizer, ConfigError,
                           "the tokenizer's workdir (data.tokenizer)")

    def test_images(self) -> np.ndarray:
        """uint8 [N, H, W, C]: the test images the test tokens were made from (same order,
        same `test_limit`), loaded through the tokenizer run's data config."""
        cfg = self.tokenizer_config().data
        cfg.test_limit = 0  # tokenize_dataset.py tokenizes whole splits
        images = image_test_split(cfg).images
        if self.test_limit:
            images = images[: self.test_limit]
        if len(images) != len(self.test_tokens):
            raise DataError(f"the tokenizer's test split has {len(images)} images but the token "
                            f"file has {len(self.test_tokens)} maps (tokenized with a limit?)")
        return np.asarray(images)


def image_test_split(cfg):
    """The test `ImageSet` of an image data section (data.kind 'image' or 'photo_patches'),
    e.g. the one a tokenizer was trained on."""
    kind = cfg.kind if "kind" in cfg else "image"
    if kind == "photo_patches":
        return load_patch_split(typed(PatchDataSettings, cfg, "data"), "test")
    if kind != "image":
        raise ConfigError(f"data.kind={kind!r} has no test images")
    return load_image_set(cfg, "test")


def build_token_data(cfg, seed: int) -> TokenData:
    """data.kind='tokens': `cfg` is `config.data` (or its `TokenDataSettings`)."""
    s = cfg if isinstance(cfg, TokenDataSettings) else typed(TokenDataSettings, cfg, "data")
    if s.path and is_shard_store(s.path):
        d = load_token_shards(s.path)
    else:
        d = load_token_file(s.path)
    return TokenData(d, s.batch_size, s.eval_batch_size or s.batch_size,
                     seed, s.train_limit, s.test_limit, s.tokenizer)


@dataclasses.dataclass(frozen=True)
class TokenSpecSettings:
    """`config.data` of data.kind='token_spec': the token maps of a model whose training data
    is not here (a converted released checkpoint, `argen_jax.pretrained`). It gives the spec
    (and a batch of zero maps for shapes) only: sampling works, training and test-set NLL need
    a token file (data.kind='tokens')."""

    kind: str = "token_spec"  # registry: which data builder (data/builders.py)
    token_shape: tuple[int, ...] = (16, 16)  # the (finest) token map h, w
    scales: tuple[int, ...] = ()  # VAR's side lengths p_s, coarse to fine (): one map
    codebook_size: int = 16384  # codes of the tokenizer
    num_classes: int = 1000  # classes of the model (0: unconditional)
    tokenizer: str = ""  # the tokenizer run's workdir
    batch_size: int = 8  # rows of the zero batch that fixes the shapes
    eval_batch_size: int = 0  # (0: batch_size)

    def __post_init__(self):
        if self.kind != "token_spec":
            raise ConfigError(f"data.kind={self.kind!r}: these are the settings of "
                              "'token_spec'")
        if len(self.token_shape) != 2 or min(self.token_shape) < 1:
            raise ConfigError(f"data.token_shape must be (h, w) > 0, got {self.token_shape}")
        if self.scales and self.scales[-1] != self.token_shape[0]:
            raise ConfigError(f"data.scales {self.scales} must end at the map side "
                              f"{self.token_shape[0]}")
        if self.codebook_size < 1 or self.num_classes < 0:
            raise ConfigError("data.codebook_size must be >= 1 and data.num_classes >= 0, got "
                              f"{self.codebook_size}, {self.num_classes}")
        if self.batch_size <= 0 or self.eval_batch_size < 0:
            raise ConfigError(f"data.batch_size={self.batch_size} must be positive and "
                              f"data.eval_batch_size={self.eval_batch_size} >= 0")


class TokenSpecData:
    """data.kind='token_spec' (see `TokenSpecSettings`)."""

    def __init__(self, s: TokenSpecSettings):
        scales = tuple(int(p) for p in s.scales) or None
        grid = tuple(int(v) for v in s.token_shape)
        length = sum(p * p for p in scales) if scales else grid[0] * grid[1]
        self.spec = DataSpec((length,), int(s.codebook_size), int(s.num_classes), "tokens",
                             grid=grid, scales=scales, tokenizer=os.path.expanduser(s.tokenizer))
        self.batch_size = s.batch_size
        self.eval_batch_size = s.eval_batch_size or s.batch_size

    def train_batch(self, step: int) -> dict:
        """Zero token maps (they fix shapes; a converted model is not trained on them)."""
        n = self.batch_size
        return {keys.TOKENS: np.zeros((n, self.spec.shape[0]), np.int32),
                keys.LABEL: (np.arange(n) % max(self.spec.num_classes, 1)).astype(np.int32),
                keys.MASK: np.ones(n, np.float32)}

    def eval_batches(self) -> Iterator[dict]:
        raise DataError("this run was converted from released weights and has no test token "
                        "maps (data.kind='token_spec'): score its samples with `python -m "
                        "argen_jax.pretrained evaluate`, or give a token file "
                        "(data.kind='tokens') for test-set NLL")


def build_token_spec_data(cfg, seed: int) -> TokenSpecData:
    """data.kind='token_spec': `cfg` is `config.data`."""
    return TokenSpecData(typed(TokenSpecSettings, cfg, "data"))
