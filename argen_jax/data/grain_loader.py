"""Batches of a random-access source on grain: worker processes, prefetch, per-process slices.

The batch of training step k is a pure function of (seed, k) (design rule 5), whatever the
worker count, thread count or number of JAX processes:

- epoch e = k // steps_per_epoch reads the permutation `default_rng([seed, e]).permutation(N)`
  (the same rule as `pipeline.RandomAccessBatcher`), in consecutive global batches of
  `batch_size`, dropping the remainder of each epoch;
- example j of the global batch of step k (j in [0, batch_size)) is transformed with the seed
  `example_seed(seed, k, j)`, so its random crop / flip does not depend on which process or
  worker builds it;
- process p of P reads only rows [p * B / P, (p + 1) * B / P) of the global batch (`batch(k)`
  returns that slice); the training loop assembles the global array with
  `jax.make_array_from_process_local_data`.

grain does the parallel work: each element of a `grain.MapDataset` over step numbers is one
process-local batch, built in `worker_count` processes (`mp_prefetch`; 0 = in this process)
with `num_threads` threads each, `prefetch` batches ahead. `batch(k)` consumes a running
iterator while steps are consecutive and starts a new one (from step k) otherwise, e.g. after
a resume or a jump. Worker processes are spawned: the source and the transform must pickle
(plain objects holding paths and numbers, module-level classes).

A source is anything with `__len__` and `__getitem__(i)`; a transform is a callable
`(example, seed: int) -> dict of numpy arrays` (same shapes for every example). Batches are
dicts of numpy arrays with a leading batch axis plus `mask` float32 [B] (1 = real example).
"""
from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import signal
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from argen_jax.errors import ConfigError, DataError

Transform = Callable[[Any, int], dict]
_NO_END = 1 << 62  # training steps are unbounded: the step dataset is this long


def example_seed(seed: int, step: int, index: int) -> int:
    """The seed of example `index` of the global batch of `step` (a 64-bit int)."""
    return int(np.random.SeedSequence([seed, 2, step, index]).generate_state(1, np.uint64)[0])


def epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
    """The order of the source in `epoch` (as `pipeline.RandomAccessBatcher`)."""
    return np.random.default_rng([seed, epoch]).permutation(size)


def stack_examples(examples: list[dict]) -> dict:
    """[{key: array}] -> {key: array [n, ...]}."""
    if not examples:
        return {}
    keys = examples[0].keys()
    return {k: np.stack([np.asarray(e[k]) for e in examples]) for k in keys}


@dataclasses.dataclass
class _BatchFn:
    """step -> the process-local batch (the function grain maps over step numbers)."""

    source: Any
    transform: Transform
    batch_size: int  # global
    seed: int
    process_index: int
    process_count: int
    shuffle: bool

    def __post_init__(self):
        self.size = len(self.source)
        self.local_batch_size = self.batch_size // self.process_count
        self.steps_per_epoch = self.size // self.batch_size if self.shuffle else 0
        self._perm_epoch, self._perm = -1, None

    def __getstate__(self):  # the cached permutation is not shipped to worker processes
        state = dict(self.__dict__)
        state["_perm_epoch"], state["_perm"] = -1, None
        return state

    def __setstate__(self, state):
        """Unpickled in a worker process: Ctrl-C (sent to the whole process group) is the
        training process's to handle (it saves, then closes the workers); a worker that died
        of it first would turn the stop into a crash."""
        self.__dict__.update(state)
        if multiprocessing.parent_process() is None:  # a copy in the training process itself
            return
        with contextlib.suppress(ValueError):  # not the worker's main thread: leave it
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def global_indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(source indices [B], mask [B]) of the global batch of `step`."""
        step = int(step)
        if self.shuffle:
            epoch, k = divmod(step, self.steps_per_epoch)
            if epoch != self._perm_epoch:
                self._perm = epoch_permutation(self.seed, epoch, self.size)
                self._perm_epoch = epoch
            idx = self._perm[k * self.batch_size:(k + 1) * self.batch_size]
            return idx, np.ones((self.batch_size,), np.float32)
        idx = np.arange(step * self.batch_size, min((step + 1) * self.batch_size, self.size))
        n = len(idx)
        if n == 0:
            raise DataError(f"batch {step} is past the end of the {self.size} examples")
        mask = np.zeros((self.batch_size,), np.float32)
        mask[:n] = 1.0
        return np.concatenate([idx, np.full(self.batch_size - n, idx[-1])]), mask

    def local_rows(self) -> slice:
        start = self.process_index * self.local_batch_size
        return slice(start, start + self.local_batch_size)

    def __call__(self, step: int) -> dict:
        idx, mask = self.global_indices(step)
        rows = self.local_rows()
        examples = [self.transform(self.source[int(i)], example_seed(self.seed, int(step), j))
                    for j, i in zip(range(rows.start, rows.stop), idx[rows], strict=True)]
        batch = stack_examples(examples)
        batch["mask"] = mask[rows]
        return batch


def _mark_flags_parsed() -> None:
    """grain's worker processes read absl flags; outside `absl.app.run` nothing parsed them."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class GrainLoader:
    """Process-local batches of `transform(source[i], seed)` by step.

    shuffle=True (training): `batch(step)` for any step >= 0, epochs reshuffled, the last
    partial batch of each epoch dropped. shuffle=False (evaluation): every example once in
    order, `num_batches` batches, the last one padded (repeating the last example) with mask
    0; iterate the loader or call `batch(k)` for k < num_batches.

    batch_size: the global batch (all processes together); it must divide by process_count.
    worker_count: grain worker processes (0: build batches in this process).
    num_threads: threads building batches in each process (0: 1 when prefetching).
    prefetch: batches read ahead (per worker with workers); 0 with worker_count 0 builds each
    batch when asked, in the calling thread.
    """

    def __init__(self, source, transform: Transform, batch_size: int, seed: int = 0, *,
                 process_index: int = 0, process_count: int = 1, worker_count: int = 0,
                 num_threads: int = 0, prefetch: int = 2, shuffle: bool = True):
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ConfigError(f"process_index {process_index} must be in [0, process_count="
                              f"{process_count})")
        if batch_size < 1 or batch_size % process_count:
            raise ConfigError(f"batch_size {batch_size} must be a positive multiple of the "
                              f"process count {process_count}")
        if min(worker_count, num_threads, prefetch) < 0:
            raise ConfigError(f"worker_count {worker_count}, num_threads {num_threads} and "
                              f"prefetch {prefetch} must be >= 0")
        if seed < 0:
            raise ConfigError(f"seed must be >= 0, got {seed}")
        size = len(source)
        if size == 0:
            raise DataError("the data source is empty")
        if shuffle and batch_size > size:
            raise DataError(f"batch_size {batch_size} exceeds the {size} training examples")
        self._fn = _BatchFn(source, transform, batch_size, seed, process_index, process_count,
                            shuffle)
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.process_index, self.process_count = process_index, process_count
        self.local_batch_size = batch_size // process_count
        self.steps_per_epoch = self._fn.steps_per_epoch
        self.num_batches = -(-size // batch_size) if not shuffle else None
        self.worker_count, self.num_threads, self.prefetch = worker_count, num_threads, prefetch
        self._it, self._next = None, None

    # ------------------------------------------------------------------ pure functions
    def global_indices(self, step: int) -> np.ndarray:
        """Source indices of the global batch of `step` (padding repeats the last one)."""
        return self._fn.global_indices(step)[0]

    def local_indices(self, step: int) -> np.ndarray:
        """Source indices this process reads at `step`."""
        return self.global_indices(step)[self._fn.local_rows()]

    def build_batch(self, step: int) -> dict:
        """The process-local batch of `step`, built here (what every other path returns)."""
        self._check_step(step)
        return self._fn(step)

    # ------------------------------------------------------------------ grain pipeline
    @property
    def _direct(self) -> bool:
        return self.worker_count == 0 and self.prefetch == 0 and self.num_threads == 0

    def _end(self) -> int:
        return _NO_END if self.shuffle else self.num_batches

    def _check_step(self, step: int) -> None:
        if step < 0 or step >= self._end():
            raise DataError(f"step {step} is outside [0, {self._end()})")

    def _start(self, step: int) -> None:
        import grain

        self.close()
        ds = grain.MapDataset.range(int(step), self._end()).map(self._fn)
        threads = self.num_threads or (1 if self.prefetch else 0)
        ds = ds.to_iter_dataset(grain.ReadOptions(  # a buffer below the threads idles them
            num_threads=threads, prefetch_buffer_size=max(self.prefetch, threads)))
        if self.worker_count:
            _mark_flags_parsed()
            ds = ds.mp_prefetch(grain.MultiprocessingOptions(
                num_workers=self.worker_count, per_worker_buffer_size=max(self.prefetch, 1)))
        self._it, self._next = iter(ds), int(step)

    def batch(self, step: int) -> dict:
        """The process-local batch of `step` (consecutive steps stream from the pipeline)."""
        step = int(step)
        self._check_step(step)
        if self._direct:
            return self._fn(step)
        if self._it is None or step != self._next:
            self._start(step)
        out = next(self._it)
        self._next += 1
        return out

    __call__ = batch

    def __iter__(self) -> Iterator[dict]:
        """Sequential loaders: all `num_batches` batches; training loaders: from step 0 on."""
        try:
            for step in range(self._end()):
                yield self.batch(step)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the running iterator (and its worker processes)."""
        it, self._it, self._next = self._it, None, None
        if it is not None and hasattr(it, "close"):
            it.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
