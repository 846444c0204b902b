"""Image GPT ('igpt'): the shared `models/transformer.Decoder` over the raster of an image's
sub-pixels, after one class token; sampled with the KV cache."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from argen_jax import config_lib
from argen_jax.errors import ConfigError
from argen_jax.evaluation.likelihood import nll_loss_and_sums
from argen_jax.heads.categorical import categorical_nll
from argen_jax.models.base import Family
from argen_jax.models.flops import TRAIN_MULTIPLIER, decoder_forward_flops
from argen_jax.models.labels import ClassLabels, LabelSettings
from argen_jax.models.transformer import (
    ORDER_RNG,
    DecoderSettings,
    OrderedDecoding,
    sample_decoder,
)


@dataclasses.dataclass(frozen=True)
class IGPTSettings(DecoderSettings, LabelSettings):
    """`config.model` of 'igpt' (experiments/igpt/mnist.py): the Decoder fields and the
    label conditioning (`LabelSettings`), with IGPT's defaults."""

    rope: str = "1d"  # '1d' over positions, '2d' over (row, col) of the sub-pixel grid, 'none'
    conditional: bool = False  # class token = the label (else the null class: a start token)
    label_dropout: float = 0.0  # training: label -> null class with this probability (CFG)

    def __post_init__(self):
        DecoderSettings.__post_init__(self)
        LabelSettings.__post_init__(self)
        config_lib.check_choice(self, "rope", ("1d", "2d", "none"))


class IGPTFamily(OrderedDecoding, Family):
    """Image GPT: a decoder over the raster of an image's sub-pixels (784 tokens for MNIST),
    after one class token (the null class when unconditional). Sampled with the KV cache."""

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.settings = m = config_lib.typed(IGPTSettings, config.model, "model",
                                             ignore=("name",))
        if spec.kind != "image" or len(spec.shape) != 3:
            raise ConfigError(f"igpt needs image data [H, W, C], got {spec.kind} {spec.shape}")
        h, w, c = spec.shape
        self.num_tokens = h * w * c
        self.classes = ClassLabels.of(m, spec.num_classes)
        self.conditional = self.classes.conditional
        self.num_classes = self.classes.num_classes
        self.model = m.decoder(spec.levels, self.num_classes, self.num_tokens, rope=m.rope,
                               grid=(h, w * c), num_prefix=1,
                               position_embed=self.num_tokens if m.position_embed else 0)
        self.init_order(m, (h, w * c), config, self.sampling.speculative)

    def _inputs(self, batch, labels, rng=None, train=False, step=None):
        """([B, T]: the class token, then the tokens in the batch's order shifted right by
        one; the targets [B, T]; the decoder's positions or None)."""
        x = batch["image"].reshape(batch["image"].shape[0], -1).astype(jnp.int32)  # [B, T]
        x, pos = self.ordered_inputs(x, rng, train, step)
        return jnp.concatenate([self.model.class_prompt(labels), x[:, :-1]], axis=1), x, pos

    def _labels(self, batch, rng=None, train: bool = False):
        labels = batch["label"] if self.conditional else None
        return self.classes.train(labels, batch["image"].shape[0], rng, train)

    def init(self, rng, batch):
        ids, _, pos = self._inputs(batch, self._labels(batch))
        return self.model.init(rng, ids, positions=pos)

    def loss(self, params, batch, rng, train, step=None):
        drop_rng, label_rng = jax.random.split(rng)
        ids, targets, pos = self._inputs(batch, self._labels(batch, label_rng, train),
                                         jax.random.fold_in(rng, ORDER_RNG), train, step)
        logits, _ = self.model.apply({"params": params}, ids, train=train, positions=pos,
                                     rngs={"dropout": drop_rng})
        nll = categorical_nll(logits, targets).sum(-1)  # [B] nats
        return nll_loss_and_sums(nll, batch["mask"], float(self.num_tokens))

    def sample(self, params, keys, labels=None, order=None):
        b = keys.shape[0]
        labels, null = self.classes.for_sampling(labels, b, self.sampling.guided)
        tokens = sample_decoder(self.model, params, keys, labels, null, self.num_tokens,
                                self.sampling, order=self.sample_order(order))
        return tokens.reshape(b, *self.spec.shape)

    def train_flops_per_example(self) -> float:  # models.base.CountsFlops
        return TRAIN_MULTIPLIER * decoder_forward_flops(self.model, self.num_tokens)

    def tokens_per_example(self) -> int:
        return self.num_tokens
