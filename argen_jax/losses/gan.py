"""PatchGAN hinge losses (pix2pix / taming / LlamaGen) as one sum of two players' objectives.

One gradient of `g_adv + d_loss` is exactly (dG, dD): the generator's term sees the
discriminator behind stop_gradient, the discriminator's term sees the reconstructions behind
stop_gradient. The losses are zero before the step at which the GAN switches on.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn


def hinge_losses(disc_apply: Callable, dparams, x: jax.Array, x_rec: jax.Array):
    """Per-example hinge losses ([B] generator adversarial, [B] discriminator) of the patch
    logits `disc_apply({'params': dparams}, images) -> [B, h, w]`."""
    b = x.shape[0]
    fake_g = disc_apply({"params": jax.lax.stop_gradient(dparams)}, x_rec)
    logits = disc_apply({"params": dparams}, jnp.concatenate([x, jax.lax.stop_gradient(x_rec)], 0))
    real, fake = logits[:b], logits[b:]
    red = (1, 2)
    g_adv = -jnp.mean(fake_g, red)
    d_loss = jnp.mean(nn.relu(1.0 - real), red) + jnp.mean(nn.relu(1.0 + fake), red)
    return g_adv, d_loss


def gated_hinge_losses(disc_apply: Callable, dparams, x: jax.Array, x_rec: jax.Array,
                       step: jax.Array, start: int):
    """`hinge_losses`, zero before `start` (a traced `step`; the discriminator is not run
    then). Returns (g_adv [B], d_loss [B], active: 1.0 from `start` on, else 0.0)."""
    b = x.shape[0]

    def on(_):
        return hinge_losses(disc_apply, dparams, x, x_rec)

    def off(_):
        return jnp.zeros((b,)), jnp.zeros((b,))

    active = (step >= start).astype(jnp.float32)
    g_adv, d_loss = jax.lax.cond(step >= start, on, off, None)
    return g_adv, d_loss, active
