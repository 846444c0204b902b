"""inference.open_run: a run opened for sampling without an optimizer or its data draws what
the training run's Experiment draws."""
from unittest import mock

import chex
import jax
import numpy as np
import pytest

from argen_jax.errors import CheckpointError
from argen_jax.inference import open_run
from argen_jax.io.run_dir import load_run_config
from argen_jax.train.loop import restore_experiment, train
from tests.test_train import tiny_config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("run"))
    train(tiny_config(), wd, stop_after_steps=4)
    return wd


def test_open_run_samples_what_the_experiment_samples(workdir):
    exp, state = restore_experiment(tiny_config(), workdir)
    want = exp.sample(exp.eval_params(state), 5, seed=3, start_index=2, batch_size=4)
    with mock.patch("argen_jax.data.builders.build_data",
                    side_effect=AssertionError("open_run built the data")), \
            mock.patch("argen_jax.train.optim.make_optimizer",
                       side_effect=AssertionError("open_run built an optimizer")):
        run = open_run(workdir)  # config.json, data_spec.json, EMA params of step 4
    assert run.step == 4 and run.spec == exp.data.spec
    chex.assert_trees_all_equal(jax.device_get(run.params),
                                jax.device_get(exp.eval_params(state)))
    np.testing.assert_array_equal(run.sample(5, seed=3, start_index=2, batch_size=4), want)
    # overrides of config.sample reach the typed settings
    assert open_run(workdir, sample={"temperature": 0.5}).sample_settings.temperature == 0.5


def test_open_run_errors_are_one_line(workdir, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        cfg = load_run_config(workdir)
        open_run(str(tmp_path), cfg)
    other = load_run_config(workdir)
    other.model.features = 9
    with pytest.raises(CheckpointError, match="does not match"):
        open_run(workdir, other)
