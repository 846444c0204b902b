"""Heads over one channel of codes (WaveNet's mu-law audio): an output width, a likelihood and
a draw for the sampling loop behind one interface, picked by name (`HEADS`, `model.head`).
`settings` is the run's `sampling.settings.SamplingSettings`."""
from __future__ import annotations

import jax

from argen_jax.heads import logistic_mixture
from argen_jax.heads.categorical import categorical_nll


class CategoricalHead:
    """`levels`-way softmax over mu-law codes: outputs are logits [..., levels]."""

    def __init__(self, levels: int = 256):
        self.levels = levels
        self.num_outputs = levels

    def nll(self, out: jax.Array, codes: jax.Array) -> jax.Array:
        """out [..., P], codes [...] -> nats [...]."""
        return categorical_nll(out, codes)

    def draw_fn(self, settings):
        """A `draw_fn(keys [B, 2], out [B, P], t) -> codes [B]` for the sampling loop:
        temperature, top_k and top_p of `settings`."""
        return settings.draw_fn()


class LogisticMixtureHead:
    """Discretised logistic mixture (heads/logistic_mixture.py, PixelCNN++'s head) over the
    `levels` mu-law bins in [-1, 1]: outputs are K mixture parameters [..., 3K]."""

    def __init__(self, levels: int = 256, num_mixtures: int = 10):
        self.levels, self.num_mixtures = levels, num_mixtures
        self.num_outputs = logistic_mixture.num_params(num_mixtures, 1)

    def nll(self, out: jax.Array, codes: jax.Array) -> jax.Array:
        return logistic_mixture.nll(out, codes, self.levels, 1)

    def draw_fn(self, settings):
        """Draws at `settings.temperature` (a mixture has no top_k / top_p filter)."""
        temperature = settings.temperature_only("the logistic mixture head")
        return logistic_mixture.mixture_draw(self.levels, 1, temperature)


# name -> head class, one interface: num_outputs, nll(out, codes), draw_fn(settings).
HEADS = {"softmax": CategoricalHead, "logistic_mixture": LogisticMixtureHead}
