"""The training state: everything a resume needs, as one pytree."""
from __future__ import annotations

from typing import Any

import jax
from flax import struct


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: number of optimizer steps taken
    params: Any
    opt_state: Any
    ema_params: Any  # Polyak average of params (== params when ema_decay is 0)
    rng: jax.Array  # base key; step k uses fold_in(rng, k)
