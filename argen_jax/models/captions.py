"""Caption conditioning of the text-to-image token models (LlamaGen t2i), in one place (the
caption counterpart of `labels.py`).

A caption is T5 features [N, D] with a mask. `argen_jax/text` returns them right-padded, as
Hugging Face does; LlamaGen's t2i GPT reads them *left*-padded (the valid features at the end
of the caption positions, zeros before, the mask flipped), in training (`dataset/t2i.py`
writes the trimmed features at the end) and in sampling (`sample_t2i.py` rolls them), so the
last caption position, which predicts the first image token, is always a real token.
Caption dropout (training: the whole caption -> the learned null caption, for CFG) is a [B]
boolean handed to `Decoder(caption_drop=)`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def left_pad(emb: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Right-padded emb [B, N, D] + mask [B, N] -> left-padded (valid rows last, padding
    zeroed), as LlamaGen's sample_t2i.py (roll by the padding, times the mask)."""
    n = emb.shape[1]
    count = jnp.sum(mask.astype(jnp.int32), axis=1)  # [B]
    src = (jnp.arange(n)[None, :] - (n - count)[:, None]) % n  # [B, N]: row read at each slot
    new_mask = (jnp.arange(n)[None, :] >= (n - count)[:, None]).astype(mask.dtype)
    out = jnp.take_along_axis(emb, src[:, :, None], axis=1) * new_mask[:, :, None]
    return out.astype(emb.dtype), new_mask


def key_valid(caption_mask: jax.Array, length: int) -> jax.Array:
    """[B, P] caption mask -> [B, length] key validity of a full pass over the caption and
    the image tokens (train_t2i.py's attention mask: causal, caption columns masked)."""
    b, p = caption_mask.shape
    return jnp.concatenate([caption_mask.astype(bool), jnp.ones((b, length - p), bool)], 1)


def drop_captions(rng: jax.Array, batch: int, rate: float) -> jax.Array:
    """[B] bool: rows whose caption becomes the null caption (rate = caption dropout)."""
    return jax.random.bernoulli(rng, rate, (batch,))
