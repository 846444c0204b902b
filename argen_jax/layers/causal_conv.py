"""Dilated causal 1-D convolution, in a full-sequence form and a one-step form with a queue.

    y[b, t] = sum_k  x[b, t - (K - 1 - k) * d] @ W_k  + bias        (zero for times < 0)

Tap k = K-1 is the current input, tap 0 the oldest; nothing after t is ever read (left
padding only). Like `shifted_conv.ShiftedConv2D`'s 'taps' implementation, the full form
concatenates the K shifted copies and does one matmul (XLA's CPU matmul is much faster than
its convolution).

The step form is the fast-generation state of WaveNet (Paine et al. 2016): the layer keeps
the last (K-1)*d inputs in a queue [B, (K-1)*d, C] that is explicit state (it is carried by
the sampling loop's `cache`). The queue is a ring buffer indexed by the absolute time t: slot
`s` holds the newest input at a time congruent to s mod (K-1)*d. One step reads K-1 slots and
writes one, so a sample costs O(C * F) per layer whatever the dilation, and the queues start
as zeros, which is exactly the full form's zero left padding.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from argen_jax.parallel import axes


def receptive_field(kernel_size: int, dilations, in_kernel: int = 1) -> int:
    """Samples an output sees through an `in_kernel` input conv and a stack of `kernel_size`
    convs with the given dilations: (in_kernel - 1) + (kernel_size - 1) * sum(dilations) + 1."""
    return (in_kernel - 1) + (kernel_size - 1) * int(sum(dilations)) + 1


def queue_length(kernel_size: int, dilation: int) -> int:
    return (kernel_size - 1) * dilation


class CausalConv1D(nn.Module):
    """[B, T, C] -> [B, T, features]; `step` does one time step against a queue."""

    features: int
    kernel_size: int = 2
    dilation: int = 1
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")

    def _params(self, cin: int):
        k, f = self.kernel_size, self.features

        def init(key, shape, dtype):  # fan-in over all taps
            return self.kernel_init(key, (k * cin, f), dtype).reshape(shape)

        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(init, (axes.TAPS, axes.CONV_IN, axes.CONV_OUT)),
            (k, cin, f), self.param_dtype)
        bias = None
        if self.use_bias:
            bias = self.param(
                "bias", nn.with_logical_partitioning(nn.initializers.zeros, (axes.CONV_OUT,)),
                (f,), self.param_dtype)
        return kernel.astype(self.dtype), bias

    def _finish(self, patches, kernel, bias):
        y = patches @ kernel.reshape(-1, kernel.shape[-1])
        return y if bias is None else y + bias.astype(self.dtype)

    @nn.compact
    def __call__(self, x: jax.Array, queue: jax.Array | None = None,
                 t: jax.Array | None = None, *, step: bool = False):
        """Full form (step=False): x [B, T, C] -> y [B, T, F]; output t sees inputs
        t - (K-1)*d, ..., t only.

        Step form (step=True): x [B, C] is the input at absolute time t, queue
        [B, (K-1)*d, C] the ring buffer of earlier inputs (None when K == 1).
        Returns (y_t [B, F], updated queue). Both forms share the same parameters."""
        if self.kernel_size < 1 or self.dilation < 1:
            raise ValueError(f"CausalConv1D: kernel_size={self.kernel_size} and "
                             f"dilation={self.dilation} must be >= 1")
        kernel, bias = self._params(x.shape[-1])
        x = x.astype(self.dtype)
        k, d = self.kernel_size, self.dilation
        length = queue_length(k, d)
        if step:
            return self._step(x, queue, t, kernel, bias, length)
        n = x.shape[1]
        xp = jnp.pad(x, ((0, 0), (length, 0), (0, 0)))  # [B, (K-1)*d + T, C]
        cols = [xp[:, i * d : i * d + n] for i in range(k)]
        return self._finish(jnp.concatenate(cols, axis=-1), kernel, bias)  # [B, T, F]

    def _step(self, x_t, queue, t, kernel, bias, length):
        if length == 0:
            return self._finish(x_t, kernel, bias), queue
        if queue is None or t is None:
            raise ValueError("CausalConv1D step form needs its queue and the time t")
        cols = []
        for m in range(self.kernel_size - 1, 0, -1):  # tap K-1-m reads time t - m*d
            slot = jnp.mod(t - m * self.dilation, length)
            cols.append(jax.lax.dynamic_index_in_dim(queue, slot, axis=1, keepdims=False))
        cols.append(x_t)
        y = self._finish(jnp.concatenate(cols, axis=-1), kernel, bias)  # [B, F]
        queue = jax.lax.dynamic_update_index_in_dim(
            queue, x_t.astype(queue.dtype), jnp.mod(t, length), axis=1)
        return y, queue

    def init_queue(self, batch: int, channels: int, dtype=jnp.float32) -> jax.Array | None:
        """The zero queue for `channels` inputs (None when the kernel has a single tap)."""
        return zero_queue(batch, channels, self.kernel_size, self.dilation, dtype)


def zero_queue(batch: int, channels: int, kernel_size: int, dilation: int,
               dtype=jnp.float32) -> jax.Array | None:
    """[B, (K-1)*d, C] zeros: the step form's state before time 0 (None when K == 1)."""
    length = queue_length(kernel_size, dilation)
    return jnp.zeros((batch, length, channels), dtype) if length else None
