"""Timing for benchmark scripts: compile once, then the best of N blocked runs."""
import time

import jax


def best_time(fn, *args, repeats: int = 1) -> float:
    """Seconds of the fastest of `repeats` calls of fn(*args), after one compile/warm-up call;
    every call is waited for with `jax.block_until_ready`."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best
