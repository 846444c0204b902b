"""The divergence guard: a run that goes bad stops before it saves over good checkpoints.

Two kinds of going bad: a non-finite loss or non-finite parameters (checked on the state about
to be saved, after the step's update), and a finite blow-up, a logged loss more than
`blowup_factor` times above the median of the recent logged losses (in distance from that
median, relative to its size) for `blowup_patience` log rows in a row. Either raises
DivergenceError naming the step and the newest checkpoint; Checkpointer's rotation keeps the
best evaluated one besides the newest, so a good state is always left to go back to.
"""
from __future__ import annotations

import collections

import numpy as np

from argen_jax.errors import DivergenceError

HISTORY = 20  # logged losses the running median is taken over
MIN_HISTORY = 5  # logged losses seen before a blow-up can be called


class DivergenceGuard:
    def __init__(self, lr: float, grad_clip: float, blowup_factor: float = 10.0,
                 blowup_patience: int = 3, history=()):
        self.lr, self.grad_clip = lr, grad_clip
        self.factor, self.patience = blowup_factor, blowup_patience
        self.history = collections.deque((float(x) for x in history if np.isfinite(x)),
                                         maxlen=HISTORY)
        self.strikes = 0

    def _fail(self, what: str, newest) -> None:
        raise DivergenceError(
            f"training diverged: {what} (lr {self.lr}, grad_clip {self.grad_clip}). Nothing "
            "was saved from it; the newest checkpoint is "
            + (f"step {newest}" if newest is not None else "none")
            + ". Lower train.lr or set train.grad_clip, then run again.")

    def check_finite(self, loss: float, step: int, newest, params_finite: bool = True) -> None:
        """`loss` is from before the step's update; `params_finite` checks the state after it
        (an update that overflows at a save step would otherwise be saved)."""
        if np.isfinite(loss) and params_finite:
            return
        self._fail(f"loss is {loss} at step {step}" if not np.isfinite(loss) else
                   f"the parameters after step {step} are not finite (loss before it "
                   f"{loss:.4g})", newest)

    def observe(self, loss: float, step: int, newest) -> None:
        """A logged (finite) loss: a blow-up for `patience` rows in a row raises."""
        if self.factor > 0 and len(self.history) >= MIN_HISTORY:
            med = float(np.median(self.history))
            if loss - med > self.factor * max(abs(med), 1e-8):
                self.strikes += 1
                if self.strikes >= self.patience:
                    self._fail(f"the loss blew up: {loss:.4g} at step {step}, against a median "
                               f"of {med:.4g} over the last {len(self.history)} logged steps, "
                               f"{self.strikes} log rows in a row", newest)
                return  # a spike does not enter the median
        self.strikes = 0
        self.history.append(float(loss))
