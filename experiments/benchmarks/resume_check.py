"""Kill a training run mid-way (SIGKILL, as a crashed or preempted job), run the same
command again, and compare its final metrics with an uninterrupted run of the same seed.

    python experiments/benchmarks/resume_check.py [--config=experiments/pixelcnn/mnist.py:tiny]

Prints one JSON line: the step the kill landed after, the checkpoint it resumed from, and
both runs' final metrics (they must be identical).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
    out.pop("train/steps_per_sec", None)  # wall-clock throughput: differs between runs
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="experiments/pixelcnn/mnist.py:tiny")
    p.add_argument("--kill_after_checkpoint", type=int, default=50)
    args = p.parse_args()
    extra = ["--config.train.sample_at_end=False"]
    tmp = tempfile.mkdtemp(prefix="resume_check_")
    a, b = os.path.join(tmp, "straight"), os.path.join(tmp, "killed")
    ref = launch(args.config, a, extra)
    run = launch(args.config, b, extra)
    ckdir = os.path.join(b, "checkpoints", str(args.kill_after_checkpoint))
    while not os.path.exists(os.path.join(ckdir, "state", "commit_success.txt")):
        if run.poll() is not None:
            sys.exit("run finished before it could be killed: raise the step count")
        time.sleep(0.2)
    run.send_signal(signal.SIGKILL)
    run.wait()
    killed_at = max(int(d) for d in os.listdir(os.path.join(b, "checkpoints")) if d.isdigit())
    logged = max(r["step"] for r in map(json.loads, open(os.path.join(b, "metrics.jsonl"))))
    again = launch(args.config, b, extra)
    again.wait()
    ref.wait()
    fa, fb = final_metrics(a), final_metrics(b)
    print(json.dumps({
        "check": "resume_after_sigkill", "newest_checkpoint_at_kill": killed_at,
        "last_logged_step_at_kill": logged,
        "identical_final_metrics": fa == fb, "uninterrupted": fa, "resumed": fb,
        "workdirs": [a, b],
    }))
    sys.exit(0 if fa == fb else 1)


if __name__ == "__main__":
    main()
