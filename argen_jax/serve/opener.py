"""Opening a run for serving: `inference.open_run` (family and evaluation parameters, nothing
of training) with a converted run's sampling preset, on this process's first device."""
from __future__ import annotations

import jax

from argen_jax.inference import open_run as open_inference_run
from argen_jax.io.run_dir import load_run_config
from argen_jax.parallel.mesh import create_mesh
from argen_jax.pretrained.evaluate import preset_fields


def open_run(workdir: str, **sample_overrides):
    """(family, params) of the run in `workdir` (trained or converted): `config.sample` is a
    converted run's preset with `sample_overrides` on top, as `python -m argen_jax.pretrained
    sample` samples; the EMA parameters when the run keeps them, else the parameters."""
    config = load_run_config(workdir)
    _, fields = preset_fields(config, "", **sample_overrides)
    run = open_inference_run(workdir, config, sample=fields,
                             mesh=create_mesh(devices=jax.local_devices()[:1]))
    return run.family, run.params
