"""The training loop shared by every model family, and the eval / sample modes.

train: resume from the newest checkpoint in `workdir` (or start), then step; every
`log_every` steps write the step's train metrics, every `eval_every` evaluate the test set
(exact NLL in nats and bits/dim), every `sample_every` write a sample grid, every
`save_every` checkpoint. SIGTERM (preemption) or SIGINT (Ctrl-C) saves a checkpoint, stops
and raises `errors.Preempted` (launch/main.py exits with status 75); running the same command
resumes. Same seed => the same final metrics as an uninterrupted run.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable

import jax
import numpy as np
from absl import logging
from tqdm import tqdm

from argen_jax.errors import CheckpointError, ConfigError, Preempted, UserError
from argen_jax.evaluation.images import save_image_grid
from argen_jax.evaluation.likelihood import summarize
from argen_jax.inference import open_run
from argen_jax.io.checkpoint import Checkpointer, OtherModelError
from argen_jax.io.run_dir import load_config, lock_workdir, save_config, save_spec
from argen_jax.models.base import WritesSamples, has_sampler
from argen_jax.sampling.settings import SamplingSettings
from argen_jax.train.experiment import Experiment
from argen_jax.train.guard import HISTORY, DivergenceGuard
from argen_jax.train.metrics import MetricWriter, read_metrics
from argen_jax.train.mfu import Throughput
from argen_jax.train.sample_metrics import evaluate_samples


class Preemption:
    """Turns SIGTERM (preemption) and SIGINT (Ctrl-C) into a flag the loop checks between
    steps: it saves and stops. A second signal stops at once, without saving."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self.signal_name = ""
        self._previous: dict = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            with contextlib.suppress(ValueError):  # not in the main thread: no handler
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.requested:  # a second signal: stop now, without saving
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        logging.warning("%s received: saving a checkpoint and stopping (%s again stops at once "
                        "without saving).", name, "Ctrl-C" if signum == signal.SIGINT else name)
        self.requested, self.signal_name = True, name

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            if previous is not None:
                signal.signal(sig, previous)
        self._previous = {}


def _model_names(config) -> str:
    """'<model.name> (data <data.name or data.kind>)': how a run's config names its model."""
    model, data = config.get("model") or {}, config.get("data") or {}
    source = data.get("name") or data.get("kind")
    return f"{model.get('name', '?')}" + (f" (data {source})" if source else "")


def _other_model(saved, config) -> str:
    """What differs between the workdir's config and this one: the model names, else the
    model settings that differ."""
    there, here = _model_names(saved), _model_names(config)
    if there != here:
        return f"a run of {there} (its config.json) and this config is {here}"
    a, b = (dict((c.get("model") or {}).items()) for c in (saved, config))
    diff = [f"model.{k}={a.get(k)!r} there, {b.get(k)!r} here" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not (isinstance(a.get(k), (list, tuple)) and
                                              tuple(a[k]) == tuple(b.get(k) or ()))]
    return f"a run of {there} with other settings ({'; '.join(diff[:4]) or 'optimizer'})"


def restore_newest(exp: Experiment, ckpt: Checkpointer, set_aside: bool):
    """`ckpt.restore_newest_good`, with another model's checkpoint named by both configs."""
    try:
        return ckpt.restore_newest_good(exp.abstract_state, set_aside=set_aside)
    except OtherModelError as e:
        workdir = os.path.dirname(ckpt.directory)
        try:
            saved = load_config(workdir)
        except UserError:
            raise e from None
        raise OtherModelError(f"{workdir} holds {_other_model(saved, exp.config)}: use another "
                              f"workdir for a different model ({e})") from None


def restore_or_init(exp: Experiment, ckpt: Checkpointer):
    """The newest readable checkpoint (damaged newer ones are set aside, with a warning), or
    a fresh state when there is none."""
    if ckpt.latest_step() is None:
        return exp.init_state(), None
    state, meta, step = restore_newest(exp, ckpt, set_aside=True)
    logging.info("Resumed from %s/%d", ckpt.directory, step)
    return state, meta


def evaluate(exp: Experiment, params) -> dict:
    """Exact test-set NLL: sums over every test example, then one division."""
    totals: dict = collections.defaultdict(np.float64)
    for batch in exp.eval_batches():
        sums = jax.device_get(exp.eval_step(params, batch))
        for k, v in sums.items():
            totals[k] += np.float64(v)
    return {f"eval/{k}": v for k, v in summarize(totals).items()}


def write_samples(family, settings: SamplingSettings, draw: Callable[..., np.ndarray],
                  workdir: str, step: int, tag: str = "") -> list[str]:
    """`settings.num` samples of `draw(num, seed, batch_size)` (an `Experiment.sample` bound to
    its parameters, or `Run.sample`) into WORKDIR/samples/step_<step>*. tag (--mode=sample):
    the files are step_<step>_<tag>[_<n>]*, beside the training run's, never over any earlier
    file."""
    if not has_sampler(family):
        raise ConfigError(f"model {type(family).__name__} has no sampler")
    num = settings.num
    if num == 0:  # sample.num=0: no sample files
        return []
    t0 = time.time()
    classes = settings.grid_classes(family.spec.num_classes)  # one grid column per class
    labels = None
    if classes:
        labels = np.asarray(classes)[np.arange(num) % len(classes)]
        logging.info("Sampling classes %s (sample.classes; sample.num=%d)",
                     ",".join(map(str, classes)), num)
    samples = draw(num, seed=settings.seed, batch_size=settings.samples_per_call, labels=labels)
    stem = os.path.join(workdir, "samples", f"step_{step:07d}")
    if tag:
        stem = _unused_stem(f"{stem}_{tag}")
    paths = (save_samples(family, samples, stem, columns=len(classes) or None)
             if jax.process_index() == 0 else [])
    logging.info("Wrote %d samples in %.1fs: %s", num, time.time() - t0, paths)
    return paths


def _unused_stem(stem: str) -> str:
    """`stem`, or `stem_2`, `stem_3`, ...: the first that no existing file starts with."""
    folder, base = os.path.split(stem)
    names = os.listdir(folder) if os.path.isdir(folder) else []
    n, out = 1, base
    while any(name == out or name.startswith((out + ".", out + "_")) for name in names):
        n += 1
        out = f"{base}_{n}"
    return os.path.join(folder, out)


def save_samples(family, samples: np.ndarray, path_stem: str,
                 columns: int | None = None) -> list[str]:
    """The family's own sample files (`WritesSamples`), else an image grid PNG (`columns`:
    one per class shown; None: a square grid)."""
    if isinstance(family, WritesSamples):
        return family.save_samples(samples, path_stem, columns)
    path = path_stem + ".png"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_image_grid(samples, path, levels=family.spec.levels, ncol=columns)
    return [path]


def train(config, workdir: str, stop_after_steps: int | None = None) -> dict:
    """Train (resuming if `workdir` has checkpoints). `stop_after_steps` stops this run early
    after that many steps, as a preemption would (used by resume tests)."""
    exp = Experiment(config)
    tcfg = exp.train_settings
    num_steps = tcfg.num_steps
    lock = lock_workdir(workdir)  # one training per workdir at a time
    ckpt = Checkpointer(workdir, tcfg.max_to_keep, tcfg.keep_best)
    writer = bar = None
    try:  # whatever ends the run (done, an error, divergence), leave nothing running
        state, _ = restore_or_init(exp, ckpt)  # a checkpoint of another model stops here
        start = int(jax.device_get(state.step))
        if start > num_steps:
            raise ConfigError(f"train.num_steps={num_steps} is below the step of the newest "
                              f"checkpoint in {workdir} ({start}): raise it to continue the "
                              f"run, or use another workdir")
        # only a run that will go ahead describes the workdir (a refused one leaves it as it was)
        save_config(config, workdir)
        save_spec(exp.data.spec, workdir)
        writer = MetricWriter(workdir, tcfg.tensorboard)
        writer.truncate_after(start)
        guard = DivergenceGuard(tcfg.lr, tcfg.grad_clip, tcfg.blowup_factor,
                                tcfg.blowup_patience, history=[
                                    r["train/loss"] for r in read_metrics(workdir)
                                    if "train/loss" in r][-HISTORY:])
        logging.info("Model %s: %.3fM parameters; mesh %s; steps %d -> %d", config.model.name,
                     exp.num_params() / 1e6, dict(exp.mesh.shape), start, num_steps)
        throughput = Throughput.of(exp, tcfg.peak_tflops)
        logging.info("%.4g model TFLOPs per step", throughput.flops_per_step / 1e12)
        every = lambda n, s: bool(n) and s % n == 0  # noqa: E731
        last: dict = {}
        bar = tqdm(total=num_steps, initial=start, desc="train", unit="step",
                   disable=jax.process_index() != 0 or tcfg.quiet, mininterval=2.0)
        with Preemption() as preempt:
            step = start
            in_flight = None
            clock = (time.perf_counter(), start)  # throughput since the last log row
            while step < num_steps:
                try:
                    batch = exp.train_batch(step)
                except Exception as e:  # a damaged file, a vanished folder: keep what was done
                    _save_before_data_error(exp, ckpt, state, step, start, e)
                    raise
                if in_flight is not None:  # bound async dispatch to ~2 steps, so a SIGTERM
                    in_flight.block_until_ready()  # save never waits on a long queue
                state, metrics = exp.train_step(state, batch)
                in_flight = metrics["loss"]
                step += 1
                bar.update(1)
                final = step == num_steps
                stop = preempt.requested or (stop_after_steps and step - start >= stop_after_steps)
                log_now = every(tcfg.log_every, step) or final
                checkpoint_now = every(tcfg.save_every, step) or final or stop
                if log_now or checkpoint_now:
                    finite = exp.state_is_finite(state) if checkpoint_now else True
                    loss = float(jax.device_get(metrics["loss"]))
                    guard.check_finite(loss, step, ckpt.latest_step(), finite)
                    if log_now:
                        guard.observe(loss, step, ckpt.latest_step())
                if log_now:
                    m = {f"train/{k}": v for k, v in summarize(jax.device_get(metrics)).items()}
                    # wall-clock throughput since the previous log row (that interval also
                    # holds any compilation, evaluation and checkpointing)
                    now = time.perf_counter()  # device_get above waited for this step
                    m["train/steps_per_sec"] = (step - clock[1]) / max(now - clock[0], 1e-9)
                    m.update(throughput.metrics(m["train/steps_per_sec"]))
                    clock = (now, step)
                    writer.write(step, m)
                    last.update(m)
                    bar.set_postfix(loss=f"{m['train/loss']:.4f}")
                if checkpoint_now and guard.strikes and not (final or stop):
                    logging.warning("step %d: no checkpoint while the loss is far above its "
                                    "median (%d log rows in a row)", step, guard.strikes)
                    checkpoint_now = False
                if checkpoint_now:  # before evaluation / sampling: a crash there loses no steps
                    ckpt.save(step, state, {"step": step, "data_position": step})
                if every(tcfg.eval_every, step) or final:
                    m = evaluate(exp, exp.eval_params(state))
                    if checkpoint_now:
                        ckpt.record_eval(step, m)  # the best evaluated one is kept
                    writer.write(step, m)
                    last.update(m)
                    logging.info("step %d: %s", step, json.dumps(
                        {k: round(float(v), 5) for k, v in m.items()}))
                sample_now = every(tcfg.sample_every, step) or (final and tcfg.sample_at_end)
                if sample_now and has_sampler(exp.family):
                    write_samples(exp.family, exp.sample_settings,
                                  functools.partial(exp.sample, exp.eval_params(state)),
                                  workdir, step)
                if stop:
                    logging.info("Stopping at step %d (%s); run again to resume.", step,
                                 preempt.signal_name or "stop_after_steps")
                    break
        preempted = preempt.requested and step < num_steps
    finally:
        if bar is not None:
            bar.close()
        ckpt.close()  # waits for a checkpoint still being written
        if writer is not None:
            writer.close()
        exp.close()  # stops the input pipeline's worker processes
        lock.release()
    if preempted:  # after the cleanup above: the checkpoint is on disk
        raise Preempted(step, workdir, preempt.signal_name)
    return last


def _save_before_data_error(exp, ckpt, state, step: int, start: int, error: Exception):
    """Reading the batch of `step` failed: checkpoint the state of the `step` steps done (if
    not saved yet and finite), so the same command resumes there once the data is fixed."""
    if step == start or ckpt.latest_step() == step or not exp.state_is_finite(state):
        return
    ckpt.save(step, state, {"step": step, "data_position": step})
    hint = (f"step {step} was saved; fix or remove the file (or set data.skip_damaged=True "
            "where the data supports it) and run the same command to resume")
    logging.warning("reading the batch of step %d failed: %s", step, hint)
    if isinstance(error, UserError) and error.args:  # the launcher's one line says it too
        error.args = (f"{error.args[0]} ({hint})", *error.args[1:])


def restore_experiment(config, workdir: str) -> tuple[Experiment, object]:
    """(the Experiment of `config`, the newest readable TrainState of `workdir`): what
    --mode=eval needs (test data, the eval step). Sampling alone opens the run with
    `inference.open_run` instead (no optimizer, no data)."""
    exp = Experiment(config)
    ckpt = Checkpointer(workdir)
    try:
        if ckpt.latest_step() is None:
            raise CheckpointError(f"no checkpoint in {ckpt.directory}: train first (mode=train)")
        state, _, _ = restore_newest(exp, ckpt, set_aside=False)
    finally:
        ckpt.close()
    _check_writable(workdir)  # before the work, not after it
    return exp, state


def _check_writable(workdir: str) -> None:
    """eval and sample write metrics / samples into the workdir: say so now if they can't."""
    if jax.process_index() != 0:
        return
    try:
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as e:
        raise ConfigError(f"workdir {workdir!r} is not writable ({e.strerror}): eval and "
                          f"sample write their metrics and samples there") from None


def eval_only(config, workdir: str) -> dict:
    exp, state = restore_experiment(config, workdir)
    step = int(jax.device_get(state.step))
    m = evaluate(exp, exp.eval_params(state))
    if exp.eval_settings.sample_metrics:

        m.update(evaluate_samples(exp, exp.eval_params(state), workdir, step))
    writer = MetricWriter(workdir, tensorboard=False)
    writer.write(step, m, mode="eval")  # replaces an earlier --mode=eval row of this step
    writer.close()
    logging.info("eval at step %d: %s", step, m)
    return m


def sample_only(config, workdir: str) -> list[str]:
    run = open_run(workdir, config)
    _check_writable(workdir)  # before the work, not after it
    return write_samples(run.family, run.sample_settings, run.sample, workdir, run.step,
                         tag=f"sample_seed{run.sample_settings.seed}")
