"""Kill a training run mid-way (SIGKILL, as a crashed or preempted job), run the same
command again, and compare its final metrics with an uninterrupted run of the same seed.

    python -m experiments.benchmarks.checks.resume_check \
        [--config=experiments/pixelcnn/mnist.py:tiny]

Prints one JSON line: the step the kill landed after, the checkpoint it resumed from, and
both runs' final metrics (they must be identical).
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from absl import flags

from experiments.benchmarks import common

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), *[os.pardir] * 3))

_CONFIG = flags.DEFINE_string("config", "experiments/pixelcnn/mnist.py:tiny",
                              "Experiment config file:arg, passed to launch/main.py as is.")
_KILL_AFTER = flags.DEFINE_integer("kill_after_checkpoint", 50,
                                   "SIGKILL once this step's checkpoint is committed.")


def launch(config, workdir, extra):
    cmd = [sys.executable, os.path.join(ROOT, "launch", "main.py"), f"--config={config}",
           f"--workdir={workdir}", "--config.train.quiet=True", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def final_metrics(workdir):
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    last_step = max(r["step"] for r in rows)
    out = {}
    for r in rows:
        if r["step"] == last_step:
            out.update(r)
    # wall-clock throughput (steps, examples, tokens, TFLOP/s, MFU): differs between runs
    return {k: v for k, v in out.items() if not (k.endswith("_per_sec") or k == "train/mfu")}


def main(argv):
    del argv
    config = _CONFIG.value
    extra = ["--config.train.sample_at_end=False"]
    tmp = tempfile.mkdtemp(prefix="resume_check_")
    a, b = os.path.join(tmp, "straight"), os.path.join(tmp, "killed")
    ref = launch(config, a, extra)
    run = launch(config, b, extra)
    ckdir = os.path.join(b, "checkpoints", str(_KILL_AFTER.value))
    while not os.path.exists(os.path.join(ckdir, "state", "commit_success.txt")):
        if run.poll() is not None:
            sys.exit("run finished before it could be killed: raise the step count")
        time.sleep(0.2)
    run.send_signal(signal.SIGKILL)
    run.wait()
    killed_at = max(int(d) for d in os.listdir(os.path.join(b, "checkpoints")) if d.isdigit())
    logged = max(r["step"] for r in map(json.loads, open(os.path.join(b, "metrics.jsonl"))))
    again = launch(config, b, extra)
    again.wait()
    ref.wait()
    fa, fb = final_metrics(a), final_metrics(b)
    common.emit({
        "check": "resume_after_sigkill", "newest_checkpoint_at_kill": killed_at,
        "last_logged_step_at_kill": logged,
        "identical_final_metrics": fa == fb, "uninterrupted": fa, "resumed": fb,
        "workdirs": [a, b],
    })
    sys.exit(0 if fa == fb else 1)


if __name__ == "__main__":
    common.run(main)
