"""Re-runs the break-ins of issue #20 (bad values, damaged files, preemption, two runs on one
workdir, ...) against a checkout of this repository and writes one JSON row per break-in:

    python experiments/tools/break_ins.py ROOT OUT.json [MNIST_IDX_FOLDER]

ROOT is the checkout to test (run from this repository's venv; PYTHONPATH points at ROOT, so an
older checkout's code is what runs); MNIST_IDX_FOLDER (default ../shared/data/mnist) is copied
and damaged for the idx rows. Scratch files go to /tmp/brk_<basename of ROOT>. Takes ~10 min.
"""
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT, OUT = sys.argv[1], sys.argv[2]
PY = sys.executable
MNIST = sys.argv[3] if len(sys.argv) > 3 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data", "mnist")
T = "/tmp/brk_" + os.path.basename(ROOT)
shutil.rmtree(T, ignore_errors=True)
os.makedirs(T)
ENV = {**os.environ, "PYTHONPATH": ROOT}
BASE = ["--config=experiments/pixelcnn/mnist.py:tiny", "--config.data.name=digits",
        "--config.train.quiet=True", "--config.train.tensorboard=False",
        "--config.train.sample_at_end=False"]
rows = []


def main_py(wd, *flags, wait=True):
    cmd = [PY, "launch/main.py", f"--workdir={wd}", *BASE, *flags]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def summary(p):
    err = p.stderr.strip().splitlines()
    last = err[-1] if err else ""
    return {"rc": p.returncode, "tracebacks": p.stderr.count("Traceback"),
            "asyncio": p.stderr.count("Event loop is closed"), "last": last[:220]}


def row(item, cmd, **res):
    rows.append({"item": item, "cmd": cmd, **res})
    print(json.dumps(rows[-1]), flush=True)


def snapshot(wd):
    out = {}
    for r, _, fs in os.walk(wd):
        for f in fs:
            p = os.path.join(r, f)
            out[p] = os.path.getmtime(p)
    return out


def good_run(name, *flags):
    wd = f"{T}/{name}"
    main_py(wd, "--config.train.num_steps=8", "--config.train.save_every=4",
            "--config.train.eval_every=4", *flags)
    return wd


# 1-2 max_to_keep
for v in ("0", "-1"):
    wd = good_run(f"mtk{v}")
    p = main_py(wd, "--config.train.num_steps=12", f"--config.train.max_to_keep={v}")
    row(f"max_to_keep={v} on a trained workdir", f"--config.train.max_to_keep={v}",
        **summary(p), checkpoints=sorted(os.listdir(f"{wd}/checkpoints")))

# 3 lr=1e6 continuing a good run
wd = good_run("lr1e6", "--config.train.log_every=1")
p = main_py(wd, "--config.train.num_steps=60", "--config.train.lr=1e6",
            "--config.train.save_every=2", "--config.train.eval_every=2",
            "--config.train.log_every=1", "--config.train.max_to_keep=1")
rows_m = [json.loads(x) for x in open(f"{wd}/metrics.jsonl") if x.strip()]
bpd = {r["step"]: r["eval/bpd"] for r in rows_m if "eval/bpd" in r}
left = sorted(int(s) for s in os.listdir(f"{wd}/checkpoints") if s.isdigit())
row("continue a good run with lr=1e6 (max_to_keep=1)", "--config.train.lr=1e6",
    **summary(p), checkpoints=left, eval_bpd_of_kept={s: round(bpd.get(s, float('nan')), 3)
                                                       for s in left})

# 4-5 refused run leaves config.json
for name, flag in (("features", "--config.model.features=9"),
                   ("numsteps", "--config.train.num_steps=4")):
    wd = good_run(f"cfg_{name}")
    before = open(f"{wd}/config.json").read()
    p = main_py(wd, flag)
    row(f"refused run ({flag}) and config.json", flag, **summary(p),
        config_json_unchanged=open(f"{wd}/config.json").read() == before)

# 7 two trainings at once
wd = f"{T}/two"
a = main_py(wd, "--config.train.num_steps=300", wait=False)
time.sleep(12)
b = main_py(wd, "--config.train.num_steps=300")
a.send_signal(signal.SIGTERM)
a.communicate(timeout=300)
row("two trainings on one workdir", "same command twice", **summary(b))

# 11 SIGTERM exit code
wd = f"{T}/term"
a = main_py(wd, "--config.train.num_steps=100000", "--config.train.log_every=1", wait=False)
while not os.path.exists(f"{wd}/metrics.jsonl"):
    time.sleep(0.3)
a.send_signal(signal.SIGTERM)
_, err = a.communicate(timeout=300)
row("SIGTERM during training", "kill -TERM", rc=a.returncode, last=err.strip()[-200:])

# 12 eval duplicates, sample overwrites
wd = good_run("modes", "--config.train.sample_at_end=True")
grid = f"{wd}/samples/step_0000008.png"
mtime = os.path.getmtime(grid)
for _ in range(2):
    main_py(wd, "--mode=eval")
evals = sum(1 for x in open(f"{wd}/metrics.jsonl") if '"eval/bpd"' in x)
p = main_py(wd, "--mode=sample")
row("--mode=eval twice, then --mode=sample", "--mode=eval; --mode=eval; --mode=sample",
    eval_rows_at_step_8=evals, training_grid_overwritten=os.path.getmtime(grid) != mtime,
    samples=sorted(os.listdir(f"{wd}/samples")))

# 9 one-line errors
for flag in ("--config.data.batch_size=0", "--config.data.batch_size=-4",
             "--config.model.features=0", "--config.mesh.model=0",
             "--config.model.dtype=float8", "--config.train.nosuch=1",
             "--config.train.lr=-1", "--config.model.kernel=0", "--config.model.num_layers=0"):
    wd = f"{T}/flag{len(rows)}"
    p = main_py(wd, "--config.train.num_steps=2", flag)
    row(f"bad value {flag}", flag, **summary(p), workdir_written=os.path.exists(wd))

# idx gz damage
for kind in ("truncated", "not gzip"):
    d = f"{T}/idx_{kind.replace(' ', '')}"
    shutil.copytree(MNIST, d)
    f = f"{d}/t10k-images-idx3-ubyte.gz"
    if kind == "truncated":
        data = open(f, "rb").read()
        open(f, "wb").write(data[: len(data) // 2])
    else:
        open(f, "wb").write(gzip.decompress(open(f, "rb").read())[:5000])
    p = subprocess.run([PY, "launch/main.py", f"--workdir={T}/w_{kind[:3]}",
                        "--config=experiments/pixelcnn/mnist.py:idx", f"--config.data.path={d}",
                        "--config.train.num_steps=1", "--config.train.quiet=True"],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    row(f"{kind} .gz idx file", f"--config.data.path=<idx folder with a {kind} file>",
        **summary(p))

# WAV cut to 30 bytes
wav = f"{T}/cut.wav"
code = ("import numpy as np; from argen_jax.data import audio; "
        f"p = audio.write_wav('{wav}', np.zeros(800, np.float32), 8000); "
        "open(p, 'r+b').truncate(30); audio.read_wav(p)")
p = subprocess.run([PY, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True)
row("WAV cut to 30 bytes", "audio.read_wav(cut.wav)", **summary(p))

# workdir is a file / read-only workdir / metrics.jsonl partial line
open(f"{T}/afile", "w").write("x")
p = main_py(f"{T}/afile", "--config.train.num_steps=2")
row("workdir is a file", "--workdir=<a file>", **summary(p))
wd = good_run("ro")
os.chmod(wd, 0o555)
for mode in ("eval", "sample"):
    t0 = time.time()
    p = main_py(wd, f"--mode={mode}")
    row(f"read-only workdir, --mode={mode}", f"--mode={mode}", **summary(p),
        seconds=round(time.time() - t0, 1))
os.chmod(wd, 0o755)
wd = good_run("partial")
with open(f"{wd}/metrics.jsonl", "a") as f:
    f.write('{"step": 9, "train/lo')
p = main_py(wd, "--config.train.num_steps=12")
row("metrics.jsonl with a partial last line", "resume", **summary(p))

# token files
code = ("import numpy as np; from argen_jax.data.tokens import build_token_data; "
        "import ml_collections as m; "
        f"p = '{T}/tok.npz'; r = np.random.default_rng(0); "
        "np.savez(p, train_tokens=r.random((20, 16)) * 4, train_labels=-np.ones(20, np.int32), "
        "test_tokens=r.integers(0, 4, (8, 16)), test_labels=np.zeros(8, np.int32), "
        "token_shape=np.asarray([4, 4]), codebook_size=np.int32(16), scales=np.asarray([4]), "
        "multiscale=np.bool_(False)); "
        "d = build_token_data(m.ConfigDict(dict(kind='tokens', path=p, batch_size=4)), 0); "
        "print('accepted', d.train_tokens.dtype, d.train_labels.min())")
p = subprocess.run([PY, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True)
row("float tokens + negative labels in a token file", "build_token_data(tok.npz)",
    **summary(p), stdout=p.stdout.strip()[-120:])

json.dump(rows, open(OUT, "w"), indent=1)
