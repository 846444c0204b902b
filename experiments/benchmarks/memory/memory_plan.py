"""A memory plan without the hardware: the train step of a config compiled ahead of time for
N fake CPU devices (nothing allocated) and its per-device bytes from XLA's
`compiled.memory_analysis()`, as one JSON line.

    python -m experiments.benchmarks.memory.memory_plan \
        --config=experiments/llamagen/imagenet.py:3B --devices=8 --mesh=fsdp=8 \
        [--remat=full] [--batch=256] [--scan] [--attention_impl=xla]

`--devices` sets `--xla_force_host_platform_device_count` before JAX starts; `--mesh` sets
`config.mesh` (axes data / fsdp / model; data=-1 takes the rest). The state is
`jax.eval_shape`d and the step lowered with `jax.ShapeDtypeStruct` inputs carrying the
experiment's shardings (`Experiment.lower_train_step`), so a 3B model plans on a laptop.
Token configs need no token file or tokenizer (`shape_only.py`: zero batches of ImageNet-256
shapes). Reported per device, in GB (1e9 bytes): arguments (state + batch), outputs, temporaries
(activations kept for the backward pass, gradients, optimizer temporaries), aliased (outputs
written in place of the donated state) and total = arguments + outputs + temporaries - aliased;
plus `lower_s` / `compile_s` (seconds), e.g. to compare scanned and unrolled layers. CPU
compilation makes its own fusion and scheduling choices: an accelerator's figures differ
somewhat (usually less temporary memory), so read these as a plan, not a measurement.
"""
from __future__ import annotations

import os

import jax
from absl import flags

from experiments.benchmarks import common, shape_only

_CONFIG = common.config_flag(None, "Config file:arg, e.g. experiments/llamagen/imagenet.py:XXL.")
_DEVICES = flags.DEFINE_integer("devices", 8, "Fake CPU devices.")
_MESH = flags.DEFINE_string("mesh", "", "e.g. fsdp=8 or data=2,fsdp=4,model=1.")
shape_only.model_flags()
flags.mark_flag_as_required("config")


def main(argv):
    del argv
    # before JAX's first computation: the plan compiles for that many fake CPU devices
    xla_flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = (f"{xla_flags} --xla_force_host_platform_device_count="
                               f"{_DEVICES.value}").strip()
    jax.config.update("jax_platforms", "cpu")
    common.emit(shape_only.plan_memory(
        _CONFIG.value, common.config_spec(_CONFIG), _DEVICES.value, _MESH.value,
        **shape_only.shape_overrides(), **shape_only.model_overrides()))


if __name__ == "__main__":
    common.run(main)
