"""experiments/benchmarks/memory/memory_plan.py: the train step of a config compiled ahead of time
for fake devices (no token file, no tokenizer, nothing allocated), per-device bytes."""
import json
import subprocess
import sys

from experiments.benchmarks import common, shape_only

SPEC = "experiments/llamagen/imagenet.py:tiny"


def tiny_plan(mesh: str, **model) -> dict:
    return shape_only.plan_memory(common.load_config(SPEC), SPEC, devices=4, mesh=mesh, grid=4,
                            vocab=256, batch=8, **model)


def test_fsdp_splits_the_state_over_devices():
    """Same model and batch on 4 devices: FSDP shards the state (parameters, average and
    moments along the width) so each device holds less of it than under data parallelism."""
    dp = tiny_plan("data=4")
    fsdp = tiny_plan("fsdp=4", scan=True, remat="full")
    assert dp["mesh"] == {"data": 4, "fsdp": 1, "model": 1}
    assert fsdp["mesh"] == {"data": 1, "fsdp": 4, "model": 1}
    assert fsdp["scan_layers"] and fsdp["remat"] == "full"
    assert dp["params"] == fsdp["params"] > 0
    assert dp["argument_gb"] >= 2 * 4 * dp["params"] / 1e9  # the whole state (params and
    #   at least Adam's moments, float32) on every device
    assert fsdp["argument_gb"] < 0.75 * dp["argument_gb"]
    for row in (dp, fsdp):
        assert row["total_gb"] > 0 and row["temp_gb"] > 0 and row["compile_s"] > 0
        total = row["argument_gb"] + row["output_gb"] + row["temp_gb"] - row["alias_gb"]
        assert abs(row["total_gb"] - total) < 1e-9


def test_command_line_prints_one_json_line_for_var():
    out = subprocess.run(
        [sys.executable, "-m", "experiments.benchmarks.memory.memory_plan",
         "--config=experiments/var/imagenet.py:tiny", "--devices=2", "--mesh=fsdp=2",
         "--batch=2", "--vocab=64"],
        capture_output=True, text=True, check=True, timeout=300)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert row["devices"] == 2 and row["mesh"]["fsdp"] == 2 and row["total_gb"] > 0
