"""experiments/benchmarks as a suite (docs/design.md rule 24): every script follows the
rules, the shared timer counts its calls, and a script's --config / --size / --out work end
to end."""
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from experiments.benchmarks import common

KINDS = ("speed", "memory", "quality", "checks")
SHARED = ("__init__.py", "common.py", "shape_only.py", "reference_filters.py",
          "classic_codecs.py")


# scripts that import the modules of another repository (VAR's / LlamaGen's own trainers)
OTHER_REPOS = ("experiments/benchmarks/checks/var_train_parity.py",)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_every_benchmark_is_a_python_m_script_of_the_suite():
    scripts = [p for p in glob.glob("experiments/benchmarks/*/*.py")
               if os.path.basename(p) != "__init__.py"]
    assert len(scripts) >= 21
    for path in scripts:
        text = _read(path)
        assert path.split("/")[2] in KINDS, path
        assert text.rstrip().endswith('if __name__ == "__main__":\n    common.run(main)'), path
        for banned in ("sys.path", "argparse", "noqa: E402", "perf_counter", "time.time(",
                       "xla_env.apply"):
            if banned == "sys.path" and path in OTHER_REPOS:
                continue
            assert banned not in text, (path, banned)
        assert "python experiments/" not in text, path  # usage lines say python -m
    # the top level holds only shared modules, and they define no flag on import
    assert sorted(os.listdir("experiments/benchmarks")) == sorted(
        [*KINDS, *SHARED, "accelerator_suite.sh", *(
            ["__pycache__"] if os.path.isdir("experiments/benchmarks/__pycache__") else [])])
    for name in SHARED:
        text = _read(os.path.join("experiments/benchmarks", name))
        assert not re.search(r"^\w* ?=? ?flags\.DEFINE", text, re.M), name


def test_no_sys_path_preamble_left_in_experiments():
    for path in glob.glob("experiments/**/*.py", recursive=True):
        text = _read(path)
        assert "noqa: E402" not in text, path
        # config_snapshot loads another checkout's configs; var_train_parity imports the
        # modules of VAR's / LlamaGen's own repositories (--var_repo, --llamagen_repo)
        if path not in ("experiments/tools/config_snapshot.py", *OTHER_REPOS):
            assert "sys.path.insert" not in text, path


def test_times_runs_warmup_then_repeats_each_waited_for():
    calls = []
    out = common.times(lambda x: calls.append(x) or x, 3, repeats=4, warmup=2)
    assert len(out) == 4 and all(t >= 0 for t in out)
    assert calls == [3] * 6
    calls.clear()
    assert common.best_time(lambda: calls.append(1)) >= 0  # no flags: 1 warm-up, 1 timed
    assert len(calls) == 2
    assert common.median_time(lambda: 0, repeats=3, warmup=0) >= 0


@pytest.mark.slow
def test_size_keeps_config_overrides_and_out_appends_the_row(tmp_path):
    out = tmp_path / "rows.jsonl"
    run = subprocess.run(
        [sys.executable, "-m", "experiments.benchmarks.speed.train_throughput",
         "--config=experiments/llamagen/imagenet.py:B", "--size=tiny",
         "--config.model.dtype=bfloat16", "--batch=8", "--vocab=64", "--grid=2",
         "--repeats=1", "--warmup=0", f"--out={out}"],
        capture_output=True, text=True, check=True, timeout=300)
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert row["config"] == "experiments/llamagen/imagenet.py:tiny"
    assert row["dtype"] == "bfloat16" and row["batch"] == 8 and row["step_s"] > 0
    assert out.read_text() == lines[0] + "\n"
