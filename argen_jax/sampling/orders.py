"""Generation orders of the token decoders (Image GPT, LlamaGen): which image position the
t-th token of the chain rule is.

An order is a permutation `order` [N] of the N = H * W positions of the (row-major) token
grid: step t of the sequence predicts the token at image position order[t]. The data stay in
image (raster) layout everywhere; the order is applied at the sequence boundary:

    loss      the sequence is take_along_axis(tokens, order): the same NLL summed over all
              positions, so bits/dim are exact and comparable across orders
    sampler   step t reads the previous token at order[t-1] and writes its draw at order[t]
              of the image-layout buffer (`sampling.tokens.token_steps(order=...)`), so the
              sampler's `seq` (and the codec's) is the image whatever the order
    codec     the symbols of step t are the tokens at order[t]

Fixed orders (`FIXED_ORDERS`): raster, snake (boustrophedon rows), diagonal (anti-diagonals
r + c = k, each top to bottom), hilbert (the Hilbert curve of the enclosing 2^k square,
positions outside the grid skipped) and zorder (Morton: interleaved bits of row and column).

'random' (sigma-GPT, Pannatier et al. 2024; RAR, Yu et al. 2024) draws a fresh permutation
per example in training; the model is told where each token is and which position comes
next (target-aware position embeddings: `Decoder.position_embed`, fed `positions`), so it
samples and scores in any order. RAR's annealing (`anneal_start`, `anneal_end`: fractions of
`train.num_steps`) trains each example in a random order with probability r(step) = 1 until
anneal_start, falling linearly to 0 at anneal_end (raster after it). Evaluation, the codec and
sampling use `eval_order` (a fixed order) for such models.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from argen_jax import config_lib
from argen_jax.errors import ConfigError

FIXED_ORDERS = ("raster", "snake", "diagonal", "hilbert", "zorder")
ORDERS = FIXED_ORDERS + ("random",)


def _hilbert_d(n: int, r: int, c: int) -> int:
    """Index of cell (r, c) along the Hilbert curve of an n x n square (n a power of 2)."""
    d, s = 0, n // 2
    x, y = c, r
    while s > 0:
        rx = 1 if x & s else 0
        ry = 1 if y & s else 0
        d += s * s * ((3 * rx) ^ ry)
        if ry == 0:  # rotate the quadrant
            if rx == 1:
                x, y = s - 1 - x, s - 1 - y
            x, y = y, x
        s //= 2
    return d


def _morton(r: int, c: int) -> int:
    code = 0
    for b in range(16):
        code |= ((c >> b) & 1) << (2 * b) | ((r >> b) & 1) << (2 * b + 1)
    return code


def fixed_order(name: str, h: int, w: int) -> np.ndarray:
    """The permutation int32 [h * w] of a fixed order: order[t] = row-major position of step t."""
    rows, cols = np.divmod(np.arange(h * w), w)
    if name == "raster":
        return np.arange(h * w, dtype=np.int32)
    if name == "snake":
        key = rows * w + np.where(rows % 2 == 1, w - 1 - cols, cols)
    elif name == "diagonal":
        key = (rows + cols) * h + rows
    elif name == "hilbert":
        n = 1 << max(int(np.ceil(np.log2(max(h, w, 1)))), 0)
        key = np.array([_hilbert_d(n, int(r), int(c)) for r, c in zip(rows, cols, strict=True)])
    elif name == "zorder":
        key = np.array([_morton(int(r), int(c)) for r, c in zip(rows, cols, strict=True)])
    else:
        raise ConfigError(f"order must be one of {FIXED_ORDERS} (fixed), got {name!r}")
    return np.argsort(key, kind="stable").astype(np.int32)


def inverse(order) -> np.ndarray | jax.Array:
    """The inverse permutation (rank of each position): inverse(order)[order[t]] = t."""
    if isinstance(order, np.ndarray):
        inv = np.empty_like(order)
        inv[..., :] = np.argsort(order, axis=-1)
        return inv
    return jnp.argsort(order, axis=-1).astype(jnp.int32)


def permute(tokens: jax.Array, order: jax.Array) -> jax.Array:
    """tokens [B, N] in image layout -> [B, N] in sequence order (order [N] or [B, N])."""
    order = jnp.broadcast_to(jnp.asarray(order), tokens.shape)
    return jnp.take_along_axis(tokens, order, axis=1)


def unpermute(seq: jax.Array, order: jax.Array) -> jax.Array:
    """The inverse of `permute`: [B, N] in sequence order -> image layout."""
    order = jnp.broadcast_to(jnp.asarray(order), seq.shape)
    return jnp.take_along_axis(seq, jnp.argsort(order, axis=1), axis=1)


def random_orders(rng: jax.Array, batch: int, n: int) -> jax.Array:
    """int32 [batch, n]: one uniformly random permutation per example."""
    return jnp.argsort(jax.random.uniform(rng, (batch, n)), axis=1).astype(jnp.int32)


def sequence_positions(order: jax.Array, num_prefix: int) -> tuple[jax.Array, jax.Array]:
    """The position ids of a decoder's input sequence (num_prefix class tokens, then the
    tokens at order[0 .. N-2]) for `Decoder.position_embed`: (content [B, P+N-1] = the image
    position each input token holds, target [B, P+N-1] = the position its output predicts),
    N (one past the last position) where there is none (class tokens' content, the first
    P-1 class tokens' target)."""
    order = jnp.asarray(order, jnp.int32)
    if order.ndim == 1:
        order = order[None]
    b, n = order.shape
    none = jnp.full((b, num_prefix), n, jnp.int32)
    content = jnp.concatenate([none, order[:, :-1]], axis=1)
    target = jnp.concatenate([none[:, 1:], order], axis=1)
    return content, target


@dataclasses.dataclass(frozen=True)
class OrderSettings:
    """The generation-order fields of a token decoder's `config.model` (IGPT, LlamaGen)."""

    order: str = "raster"  # training order: raster | snake | diagonal | hilbert | zorder |
    #   random (a fresh permutation per example; needs position_embed)
    position_embed: bool = False  # learned embeddings of each input token's position and of
    #   the position it predicts (target-aware, sigma-GPT / RAR); any order then samples
    anneal_start: float = 0.0  # RAR annealing (order='random' only; anneal_end > 0 turns it
    anneal_end: float = 0.0  # on): random orders until anneal_start * num_steps, then the
    #   share of random examples falls linearly to 0 at anneal_end * num_steps (then raster)
    eval_order: str = ""  # order of evaluation, the codec and sampling ('' : `order`, and
    #   raster for order='random')

    def __post_init__(self):
        config_lib.check_choice(self, "order", ORDERS)
        if self.eval_order:
            config_lib.check_choice(self, "eval_order", FIXED_ORDERS)
        if self.order == "random" and not self.position_embed:
            raise ConfigError("model.order='random' needs model.position_embed=True (the "
                              "model must be told which position comes next)")
        if self.eval_order and self.eval_order != self.order and not self.position_embed:
            raise ConfigError(f"model.eval_order={self.eval_order!r} differs from the training "
                              f"order {self.order!r}: set model.position_embed=True")
        if not 0.0 <= self.anneal_start <= self.anneal_end <= 1.0:
            raise ConfigError(f"need 0 <= model.anneal_start <= model.anneal_end <= 1, got "
                              f"{self.anneal_start}, {self.anneal_end}")
        if self.anneal_end > 0 and self.order != "random":
            raise ConfigError("model.anneal_start / anneal_end anneal random orders: set "
                              "model.order='random'")

    @property
    def fixed_eval_order(self) -> str:
        return self.eval_order or ("raster" if self.order == "random" else self.order)

    @property
    def ordered(self) -> bool:
        """Whether anything differs from the plain raster decoder."""
        return self.order != "raster" or self.position_embed or self.fixed_eval_order != "raster"


def random_share(step, num_steps: int, start: float, end: float) -> jax.Array:
    """RAR's r(step): the probability of a random order (1 before start, linear to 0 at end)."""
    if end <= 0:
        return jnp.asarray(1.0)
    s = jnp.asarray(step, jnp.float32) / max(num_steps, 1)
    if end == start:
        return jnp.where(s < start, 1.0, 0.0)
    return jnp.clip((end - s) / (end - start), 0.0, 1.0)


class GridOrder:
    """A decoder family's order over its h x w grid of N tokens (`OrderSettings`)."""

    def __init__(self, settings: OrderSettings, grid: tuple[int, int], num_steps: int):
        self.settings = settings
        self.grid = tuple(grid)
        self.n = grid[0] * grid[1]
        self.num_steps = num_steps  # train.num_steps (RAR's schedule)
        self.eval = fixed_order(settings.fixed_eval_order, *grid)

    def train_orders(self, rng, batch: int, step) -> jax.Array:
        """int32 [batch, N]: the orders of a training batch at `step`."""
        s = self.settings
        if s.order != "random":
            return jnp.broadcast_to(jnp.asarray(fixed_order(s.order, *self.grid)),
                                    (batch, self.n))
        r_perm, r_pick = jax.random.split(rng)
        rand = random_orders(r_perm, batch, self.n)
        if s.anneal_end <= 0 or step is None:
            return rand
        share = random_share(step, self.num_steps, s.anneal_start, s.anneal_end)
        pick = jax.random.uniform(r_pick, (batch, 1)) < share
        return jnp.where(pick, rand, jnp.arange(self.n, dtype=jnp.int32)[None])

    def orders(self, rng, batch: int, train: bool, step=None) -> jax.Array:
        """The orders of a loss call: training's, or `eval` broadcast."""
        if train:
            return self.train_orders(rng, batch, step)
        return jnp.broadcast_to(jnp.asarray(self.eval), (batch, self.n))
