"""End to end through the shared loop: tiny train/eval/sample, exact resume, mesh equivalence,
and the errors a user sees for bad input."""
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from argen_jax.errors import CheckpointError, ConfigError, DataError
from argen_jax.run import run
from argen_jax.train.experiment import Experiment
from argen_jax.train.loop import train
from argen_jax.train.metrics import read_metrics
from experiments.pixelcnn.mnist import get_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
    c = get_config("tiny")
    c.data.name = "digits"  # 8x8 real digits: fast
    c.data.batch_size = 16
    c.data.eval_batch_size = 64
    c.data.test_limit = 64
    c.model.features = 6
    c.model.num_layers = 1
    c.model.in_kernel = 3
    c.model.out_hidden = 6
    c.train.num_steps = 8
    c.train.log_every = 2
    c.train.save_every = 4
    c.train.ema_decay = 0.9
    c.train.tensorboard = False
    c.train.quiet = True
    c.train.sample_at_end = False
    c.mesh.num_devices = 1  # compile for one device; the mesh test below uses all 8
    c.sample.num = 4
    c.sample.batch_size = 4
    for k, v in overrides.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return c


def test_train_eval_sample(tmp_path):
    wd = str(tmp_path)
    last = run(tiny_config(**{"train.sample_at_end": True}), wd, "train")
    assert np.isfinite(last["eval/bpd"]) and last["eval/bpd"] > 0
    assert os.path.exists(os.path.join(wd, "samples", "step_0000008.png"))
    assert os.path.isdir(os.path.join(wd, "checkpoints", "8"))
    rows = read_metrics(wd)
    assert {"train/loss", "train/bpd", "eval/nll", "eval/bpd"} <= set().union(*rows)
    train_rows = [r for r in rows if "train/loss" in r]
    assert all(r["train/steps_per_sec"] > 0 for r in train_rows)
    # throughput in examples and model TFLOP/s (XLA's count of PixelCNN's step); no MFU on CPU
    assert all(r["train/examples_per_sec"] > 0 and r["train/model_tflops_per_sec"] > 0
               and "train/mfu" not in r for r in train_rows)
    grid = open(os.path.join(wd, "samples", "step_0000008.png"), "rb").read()
    for _ in range(2):  # evaluating again updates one mode='eval' row, never duplicates it
        again = run(tiny_config(), wd, "eval")  # restores the checkpoint, same numbers
        assert again["eval/bpd"] == pytest.approx(last["eval/bpd"], rel=1e-6)
    modes = [r.get("mode") for r in read_metrics(wd) if "eval/bpd" in r]
    assert modes == [None, "eval"]  # the training run's row, then the --mode=eval row
    paths = run(tiny_config(), wd, "sample")
    again = run(tiny_config(), wd, "sample")  # beside the training grid and the first one
    assert [os.path.basename(p) for p in paths + again] == [
        "step_0000008_sample_seed0.png", "step_0000008_sample_seed0_2.png"]
    # --mode=sample (inference.open_run: no optimizer, no data) draws the training run's grid
    assert open(paths[0], "rb").read() == grid
    assert open(os.path.join(wd, "samples", "step_0000008.png"), "rb").read() == grid


def test_resume_after_interruption_is_exact(tmp_path):
    straight = train(tiny_config(), str(tmp_path / "a"))
    cut = str(tmp_path / "b")
    partial = train(tiny_config(), cut, stop_after_steps=3)  # "killed" after step 3
    assert "eval/bpd" not in partial
    resumed = train(tiny_config(), cut)
    assert resumed["eval/bpd"] == straight["eval/bpd"]
    assert resumed["train/loss"] == straight["train/loss"]
    steps = [r["step"] for r in read_metrics(cut) if "train/loss" in r]
    assert steps == [2, 4, 6, 8]  # nothing lost, nothing logged twice


def test_resume_drops_rows_logged_after_the_checkpoint(tmp_path):
    from argen_jax.train.metrics import MetricWriter

    w = MetricWriter(str(tmp_path), tensorboard=False)
    for s in (2, 4, 6):
        w.write(s, {"train/loss": float(s)})
    w.truncate_after(4)
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [2, 4]


def test_a_partial_last_metrics_line_is_dropped_and_a_damaged_one_named(tmp_path):
    from argen_jax.train.metrics import MetricWriter

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2, "train/loss": 1.0}\n{"step": 4, "tra')  # killed mid-write
    w = MetricWriter(str(tmp_path), tensorboard=False)
    w.truncate_after(2)
    w.write(4, {"train/loss": 0.5})
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [2, 4]
    path.write_text('{"step": 2}\nnot json\n{"step": 4}\n')
    with pytest.raises(DataError, match="metrics.jsonl line 2"):
        read_metrics(str(tmp_path))


def test_settings_reject_bad_values_and_unknown_keys(tmp_path):
    for key, value, match in [("train.max_to_keep", 0, "max_to_keep must be >= 1"),
                              ("train.lr", -1.0, "lr must be >= 0"),
                              ("mesh.model", 0, "mesh.model must be >= 1"),
                              ("train.schedule", "step", "train.schedule")]:
        with pytest.raises(ConfigError, match=match):
            Experiment(tiny_config(**{key: value}))
    cfg = tiny_config()
    with cfg.unlocked():
        cfg.train.nosuch = 1
    with pytest.raises(ConfigError, match="unknown key.*train.nosuch"):
        Experiment(cfg)


def test_a_refused_run_leaves_the_workdir_as_it_was(tmp_path):
    wd = str(tmp_path)
    train(tiny_config(), wd, stop_after_steps=4)
    config_json = (tmp_path / "config.json").read_text()
    with pytest.raises(CheckpointError, match=r"holds a run of gated_pixelcnn \(data digits\) "
                       r"with other settings \(model\.features=6 there, 8 here\)"):
        train(tiny_config(**{"model.features": 8}), wd)  # another model's checkpoint
    with pytest.raises(CheckpointError, match=r"holds a run of gated_pixelcnn \(data digits\) "
                       r"\(its config.json\) and this config is pixelcnn \(data digits\)"):
        train(tiny_config(**{"model.name": "pixelcnn"}), wd)  # another family
    with pytest.raises(ConfigError, match="below the step of the newest checkpoint"):
        train(tiny_config(**{"train.num_steps": 2}), wd)
    assert (tmp_path / "config.json").read_text() == config_json


def test_eval_on_a_read_only_workdir_stops_before_the_work(tmp_path):
    from unittest import mock

    wd = str(tmp_path)
    train(tiny_config(), wd, stop_after_steps=4)
    read_only = OSError(30, "Read-only file system")
    with mock.patch("tempfile.TemporaryFile", side_effect=read_only), \
            mock.patch("argen_jax.train.loop.evaluate") as evaluate:
        with pytest.raises(ConfigError, match="is not writable"):
            run(tiny_config(), wd, "eval")
    evaluate.assert_not_called()


def test_one_training_per_workdir(tmp_path):
    from argen_jax.errors import WorkdirBusyError
    from argen_jax.io.run_dir import lock_workdir

    held = lock_workdir(str(tmp_path))
    try:
        with pytest.raises(WorkdirBusyError, match="another training run"):
            train(tiny_config(), str(tmp_path))
    finally:
        held.release()
    lock_workdir(str(tmp_path)).release()  # free again
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        train(tiny_config(), str(tmp_path / "file"))


def test_eight_device_step_equals_one_device_step():
    assert jax.device_count() == 8
    cfg = dict(**{"train.ema_decay": 0.0})
    e8 = Experiment(tiny_config(**cfg, **{"mesh.num_devices": 0}))
    e1 = Experiment(tiny_config(**cfg))
    assert e8.mesh.shape["data"] == 8 and e1.mesh.size == 1
    s8, s1 = e8.init_state(), e1.init_state()
    batch = e8.data.train_batch(0)
    s8, m8 = e8.train_step(s8, e8.device_batch(batch))
    s1, m1 = e1.train_step(s1, e1.device_batch(batch))
    assert len(jax.tree.leaves(s8.params)[0].sharding.device_set) == 8
    np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s8.params), jax.tree.leaves(s1.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_ema_warms_up_then_uses_the_configured_decay():
    e = Experiment(tiny_config(**{"train.ema_decay": 0.999}))
    zero, one = {"w": jax.numpy.zeros(())}, {"w": jax.numpy.ones(())}
    first = e.update_ema(zero, one, jax.numpy.asarray(0))["w"]
    late = e.update_ema(zero, one, jax.numpy.asarray(100000))["w"]
    np.testing.assert_allclose(first, 0.9, rtol=1e-6)  # decay_0 = 1/10
    np.testing.assert_allclose(late, 0.001, rtol=1e-3)  # decay = 0.999


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="model.name"):
        run(tiny_config(**{"model.name": "pixelrnn"}), str(tmp_path), "train")
    with pytest.raises(ConfigError, match="divisible"):
        run(tiny_config(**{"data.batch_size": 12, "mesh.num_devices": 0}), str(tmp_path),
            "train")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        run(tiny_config(), str(tmp_path / "empty"), "eval")


def test_corrupt_checkpoint_is_reported_and_kept(tmp_path):
    wd = str(tmp_path)
    train(tiny_config(), wd, stop_after_steps=4)
    d = os.path.join(wd, "checkpoints", "4", "state")
    for root, _, files in os.walk(d):
        for f in files:
            if f != "_METADATA" and "commit" not in f:
                with open(os.path.join(root, f), "wb") as fh:
                    fh.write(b"\0" * 7)
    with pytest.raises(CheckpointError, match="checkpoints/4"):
        train(tiny_config(), wd)
    assert os.path.isdir(os.path.join(wd, "checkpoints", "4"))  # nothing deleted


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capfd):
    """Damage of several kinds to the newest checkpoint: training resumes from the previous
    one and moves the damaged one aside (nothing deleted); eval uses the previous one."""
    import glob
    import shutil

    wd = str(tmp_path / "run")
    train(tiny_config(), wd)  # checkpoints 4 and 8
    good = str(tmp_path / "good")
    shutil.copytree(wd, good)

    def garble(step_dir):
        for f in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True):
            with open(f, "wb") as fh:
                fh.write(b"\0" * 7)

    def truncate(step_dir):
        for f in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True):
            with open(f, "r+b") as fh:
                fh.truncate(os.path.getsize(f) // 2)

    def manifests(step_dir):
        return glob.glob(os.path.join(step_dir, "state", "**", "manifest.ocdbt"), recursive=True)

    damages = {
        "garbled arrays": garble,
        "truncated arrays": truncate,
        "no manifest": lambda d: [os.remove(f) for f in manifests(d)],
        "no state metadata": lambda d: os.remove(os.path.join(d, "state", "_METADATA")),
        "no state folder": lambda d: shutil.rmtree(os.path.join(d, "state")),
        "garbled meta": lambda d: open(os.path.join(d, "meta", "metadata"), "w").write("{x"),
        "no meta folder": lambda d: shutil.rmtree(os.path.join(d, "meta")),
    }
    for kind, damage in damages.items():
        shutil.rmtree(wd)
        shutil.copytree(good, wd)
        damage(os.path.join(wd, "checkpoints", "8"))
        m = run(tiny_config(), wd, "eval")  # the newest readable one: step 4
        assert np.isfinite(m["eval/nll"]), kind
        assert os.path.isdir(os.path.join(wd, "checkpoints", "8")), kind  # eval moves nothing
        train(tiny_config(**{"train.num_steps": 12}), wd)
        from argen_jax.io.checkpoint import Checkpointer

        ckpt = Checkpointer(wd)
        assert ckpt.all_steps() == [4, 8, 12], kind  # 8 trained again from 4, then 12
        ckpt.close()
        aside = glob.glob(os.path.join(wd, "damaged_checkpoints", "8-*"))
        assert len(aside) == 1, kind
    # TensorStore's reads still in flight when Orbax gives up used to print hundreds of
    # "RuntimeError: Event loop is closed" tracebacks
    assert "Event loop is closed" not in capfd.readouterr().err


def test_checkpoint_from_another_model_is_reported(tmp_path):
    wd = str(tmp_path)
    train(tiny_config(), wd, stop_after_steps=2)
    with pytest.raises(CheckpointError, match="does not match|shapes"):
        train(tiny_config(**{"model.features": 9}), wd)


def test_launcher_rejects_unknown_config_key(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "launch", "main.py"),
           "--config=" + os.path.join(ROOT, "experiments/pixelcnn/mnist.py") + ":tiny",
           f"--workdir={tmp_path}", "--config.train.num_stepz=3"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode != 0
    assert "--config.train.num_stepz: config.train has no key 'num_stepz'" in out.stderr
    assert "num_steps" in out.stderr  # the section's keys are listed
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_sigterm_saves_and_exits_75_then_the_same_command_resumes(tmp_path, signame):
    """A scheduler can tell preemption from completion: SIGTERM -> checkpoint, exit 75
    (launch/slurm.sbatch requeues on it); the same command then finishes with exit 0.
    Ctrl-C (SIGINT) is the same stop: no KeyboardInterrupt traceback, nothing lost."""
    import signal
    import time

    sig = getattr(signal, signame)
    wd = str(tmp_path / "w")
    cmd = [sys.executable, os.path.join(ROOT, "launch", "main.py"),
           "--config=" + os.path.join(ROOT, "experiments/pixelcnn/mnist.py") + ":tiny",
           f"--workdir={wd}", "--config.data.name=digits", "--config.train.num_steps=100000",
           "--config.train.log_every=1", "--config.train.save_every=0",
           "--config.train.sample_at_end=False", "--config.data.test_limit=16",
           "--config.train.tensorboard=False", "--config.train.quiet=True"]
    # a child started from a non-interactive shell may inherit SIGINT ignored (then Python
    # installs no handler and the test would prove nothing): give it the default, as a
    # terminal does
    env = {**os.environ, "PYTHONPATH": ROOT}  # this checkout's argen_jax, not an installed one
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env,
                            preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    metrics = os.path.join(wd, "metrics.jsonl")
    deadline = time.time() + 120
    while not (os.path.exists(metrics) and os.path.getsize(metrics)) and time.time() < deadline:
        time.sleep(0.2)  # training has started
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 75, out[-2000:]
    assert f"stopped by {signame} at step" in out and "Traceback" not in out
    step = int(out.split(f"stopped by {signame} at step ")[1].split()[0])
    assert os.path.isdir(os.path.join(wd, "checkpoints", str(step)))
    if sig == signal.SIGINT:  # the resume below is the same for both
        return
    done = subprocess.run([*cmd[:-7], f"--config.train.num_steps={step + 2}", *cmd[-6:]],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Resumed from {os.path.join(wd, 'checkpoints')}/{step}" in done.stderr


def test_a_second_signal_stops_at_once(monkeypatch):
    """Preemption: the first SIGINT / SIGTERM sets the flag; a second one restores the default
    handler and re-sends itself (here intercepted), i.e. the process stops without saving."""
    import signal

    from argen_jax.train.loop import Preemption

    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append(sig))
    before = signal.getsignal(signal.SIGINT)
    with Preemption() as p:
        handler = signal.getsignal(signal.SIGINT)
        assert handler == signal.getsignal(signal.SIGTERM) == p._handle
        handler(signal.SIGINT, None)
        assert p.requested and p.signal_name == "SIGINT" and not sent
        handler(signal.SIGINT, None)
        assert sent == [signal.SIGINT] and signal.getsignal(signal.SIGINT) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) == before  # restored on exit


def test_run_config_round_trip_and_clear_errors(tmp_path):
    from argen_jax.io.run_dir import load_config, save_config

    c = ml_collections.ConfigDict({"model": {"name": "pixelcnn", "features": 8}, "seed": 3})
    save_config(c, str(tmp_path / "run"))
    assert load_config(str(tmp_path / "run")).to_dict() == c.to_dict()
    with pytest.raises(ConfigError, match="config.json' not found: is .* a run directory"):
        load_config(str(tmp_path / "missing"))
    with pytest.raises(CheckpointError, match="a tokenizer workdir"):
        load_config(str(tmp_path / "missing"), CheckpointError, "a tokenizer workdir")
    (tmp_path / "run" / "config.json").write_text('{"model": {"name": ')  # truncated write
    with pytest.raises(ConfigError, match="not a readable run config"):
        load_config(str(tmp_path / "run"))


def test_divergence_stops_before_saving_nan_over_good_checkpoints(tmp_path):
    """A run that turns NaN raises DivergenceError naming the step and the newest good
    checkpoint; no checkpoint is written from the NaN state."""
    from argen_jax.errors import DivergenceError
    from argen_jax.io.checkpoint import Checkpointer

    wd = str(tmp_path)
    train(tiny_config(), wd)  # good checkpoints at steps 4 and 8
    bad = tiny_config(**{"train.num_steps": 16, "train.lr": 1e30})  # same optimizer chain
    with pytest.raises(DivergenceError, match=r"diverged: loss is nan.*newest checkpoint is "
                                              r"step 8\. Lower train.lr"):
        train(bad, wd)
    ckpt = Checkpointer(wd)
    assert ckpt.latest_step() == 8
    ckpt.close()


def test_an_update_that_overflows_at_a_save_step_is_not_saved(tmp_path):
    """The loss of a step is computed before its update: an update that makes the parameters
    inf at a save step must still stop the run before the save."""
    from argen_jax.errors import DivergenceError
    from argen_jax.io.checkpoint import Checkpointer

    wd = str(tmp_path)
    bad = tiny_config(**{"train.lr": 1e39, "train.warmup_steps": 0, "train.save_every": 1,
                         "train.log_every": 100, "train.grad_clip": 0.0})
    with pytest.raises(DivergenceError, match=r"parameters after step 1 are not finite"):
        train(bad, wd)
    ckpt = Checkpointer(wd)
    assert ckpt.latest_step() is None
    ckpt.close()


def test_guard_calls_a_finite_blowup_after_patience_rows():
    from argen_jax.errors import DivergenceError
    from argen_jax.train.guard import DivergenceGuard

    g = DivergenceGuard(1e6, 0.0, blowup_factor=10.0, blowup_patience=3)
    for step, loss in enumerate([2.0, 1.5, 1.2, 1.1, 1.0, 0.9]):
        g.observe(loss, step, None)
    g.observe(50.0, 6, None)  # two spikes, then a normal row: no divergence
    g.observe(80.0, 7, None)
    g.observe(0.9, 8, None)
    assert g.strikes == 0 and max(g.history) == 2.0  # spikes never enter the median
    g.observe(5e3, 9, 8)
    g.observe(2e4, 10, 8)
    with pytest.raises(DivergenceError, match=r"blew up: 1e\+06 at step 11.*3 log rows in a "
                                              r"row.*newest checkpoint is step 8"):
        g.observe(1e6, 11, 8)
    g = DivergenceGuard(1.0, 0.0, blowup_factor=0.0)  # off
    for step, loss in enumerate([1.0] * 6 + [1e9] * 5):
        g.observe(loss, step, None)


def test_a_finite_blowup_stops_and_the_best_checkpoint_survives_rotation(tmp_path):
    """Continuing a good run with lr=1e6 (the loss blows up but stays finite): the guard
    stops it, and however many checkpoints were written meanwhile, the best evaluated one is
    still there (max_to_keep=1)."""
    import json

    from argen_jax.errors import DivergenceError
    from argen_jax.io.checkpoint import Checkpointer

    wd = str(tmp_path)
    good = {"train.max_to_keep": 1, "train.eval_every": 4, "train.log_every": 1}
    train(tiny_config(**good), wd)  # evaluated + saved at 4 and 8
    best = json.load(open(os.path.join(wd, "checkpoints", "best.json")))
    assert best["metric"] == "eval/bpd" and best["step"] in (4, 8)
    bad = tiny_config(**good, **{"train.num_steps": 40, "train.lr": 1e6,
                                 "train.save_every": 1})  # the same optimizer chain
    with pytest.raises(DivergenceError, match="blew up"):
        train(bad, wd)
    ckpt = Checkpointer(wd)
    steps = ckpt.all_steps()
    # the best, and at most step 9: its loss (computed before its update) was still normal;
    # nothing was saved once the logged loss showed the blow-up
    assert best["step"] in steps and max(steps) <= 9, steps
    ckpt.close()


def test_a_data_error_mid_run_saves_the_finished_steps(tmp_path, monkeypatch):
    """A damaged file met at step 6 (save_every=4): the 6 finished steps are checkpointed
    before the error stops the run, and its message says so."""
    from argen_jax.io.checkpoint import Checkpointer

    real = Experiment.train_batch

    def failing(self, step):
        if step == 6:
            raise DataError("damaged image /data/x.jpg: cannot identify image file")
        return real(self, step)

    monkeypatch.setattr(Experiment, "train_batch", failing)
    with pytest.raises(DataError, match=r"x\.jpg.*step 6 was saved.*skip_damaged"):
        train(tiny_config(), str(tmp_path))
    ckpt = Checkpointer(str(tmp_path))
    assert ckpt.all_steps() == [4, 6]
    ckpt.close()


def _launch(*args, timeout=120):
    cmd = [sys.executable, os.path.join(ROOT, "launch", "main.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ROOT})


def test_launcher_one_line_errors_said_once(tmp_path):
    out = _launch("--config=experiments/pixelcnn/mnsit.py:tiny", f"--workdir={tmp_path}")
    assert out.returncode == 2
    assert out.stderr == "error: no such config file: experiments/pixelcnn/mnsit.py\n"
    out = _launch("--config=experiments/pixelcnn/mnist.py:tiny,idx",
                  "--config.data.path=/nonexistent/mnist", f"--workdir={tmp_path}")
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.count("/nonexistent/mnist") == 1  # not a log line, then `error:`
    assert out.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Unable to initialize backend" not in out.stderr


def test_overrides_apply_to_the_runs_config_json(tmp_path):
    """--mode=sample on a workdir without --config: `--config.sample.seed=3` overrides
    WORKDIR/config.json (it was 'Unknown command line flag'); a wrong key names the keys."""
    wd = str(tmp_path)
    train(tiny_config(**{"train.num_steps": 2}), wd)
    out = _launch(f"--workdir={wd}", "--mode=sample", "--config.sample.num=2",
                  "--config.sample.seed=3")
    assert out.returncode == 0, out.stderr[-2000:]
    assert os.path.exists(os.path.join(wd, "samples", "step_0000002_sample_seed3.png"))
    for noise in ("Metadata file does not exist", "is read only", "save_interval_steps=0"):
        assert noise not in out.stderr
    bad = _launch(f"--workdir={wd}", "--mode=sample", "--config.sample.nmu=2")
    assert bad.returncode == 2
    assert "--config.sample.nmu: config.sample has no key 'nmu'" in bad.stderr
    bad = _launch(f"--workdir={wd}", "--mode=sample", "--config.sample.num=two")
    assert bad.returncode == 2 and "not of the type (int)" in bad.stderr
