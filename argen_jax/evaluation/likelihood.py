"""Likelihood bookkeeping: nats per example and bits per dimension from summed metrics."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def summarize(sums: dict) -> dict:
    """Metric sums (see models.base) -> means. nll: nats per example; bpd: bits per dim."""
    out = {}
    n = float(sums.get("num_examples", 0.0))
    d = float(sums.get("num_dims", 0.0))
    for k, v in sums.items():
        if k in ("num_examples", "num_dims"):
            continue
        v = float(np.asarray(v))
        if k == "nll_sum":
            if n > 0:
                out["nll"] = v / n
            if d > 0:
                out["bpd"] = v / (d * math.log(2.0))
        elif k.endswith("_sum") and n > 0:
            out[k[: -len("_sum")]] = v / n
        else:
            out[k] = v
    return out


def nll_loss_and_sums(nll: jax.Array, mask: jax.Array, dims: float) -> tuple[jax.Array, dict]:
    """Per-example NLL [B] (nats over `dims` dimensions each), batch mask [B] ->
    (loss = masked mean nats per dimension, the metric sums of the Family contract)."""
    nll_sum = jnp.sum(nll * mask)
    n = jnp.sum(mask)
    loss = nll_sum / jnp.maximum(n, 1.0) / dims
    return loss, {"nll_sum": nll_sum, "num_dims": n * dims, "num_examples": n}
