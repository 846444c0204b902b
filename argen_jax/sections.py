"""The config sections experiment files share (mesh and sharding, train, the photo-patch data,
sample-quality evaluation), written once so they cannot drift apart. Top floor (design rule
1): it imports the settings of the layers it describes; `config_lib` stays a leaf."""
from __future__ import annotations

import ml_collections

from argen_jax.config_lib import section
from argen_jax.data.patches import PatchDataSettings
from argen_jax.evaluation.sample_eval import EvalSettings
from argen_jax.parallel.mesh import MeshSettings, ShardingSettings
from argen_jax.train.settings import TrainSettings


def parallel_config(model: int = 1, rules=None) -> tuple[ml_collections.ConfigDict,
                                                          ml_collections.ConfigDict]:
    """The `mesh` and `sharding` sections: (config.mesh, config.sharding)."""
    return section(MeshSettings, model=model), section(ShardingSettings, rules=rules)


def train_section(**overrides) -> ml_collections.ConfigDict:
    """The `train` section (`train/settings.TrainSettings`) with only what differs from it."""
    return section(TrainSettings, **overrides)


def photo_patches_data(batch_size: int, eval_batch_size: int, train_limit: int = 0,
                       test_limit: int = 0) -> ml_collections.ConfigDict:
    """The `data` section for 32x32 RGB patches of the offline photos
    (`data/patches.PatchDataSettings`): the fixed split by source photo, shared by every
    model. train_per_photo=1500 spreads at most 1500 train patches over each photo: without it
    retina and hubble_deep_field (mostly black) give 61% of the train patches."""
    return section(PatchDataSettings, train_stride=16, train_per_photo=1500,
                   batch_size=batch_size, eval_batch_size=eval_batch_size,
                   train_limit=train_limit, test_limit=test_limit)


def sample_eval_config(num_samples: int, sample_batch_size: int, feature_batch_size: int = 200,
                       feature_net: str = "") -> ml_collections.ConfigDict:
    """The `eval` section: sample quality in --mode=eval (`evaluation/sample_eval.EvalSettings`)."""
    return section(EvalSettings, num_samples=num_samples, sample_batch_size=sample_batch_size,
                   feature_batch_size=feature_batch_size, feature_net=feature_net)
