"""Train the small-scale feature network (argen_jax.evaluation.feature_net) and save it.

    python -m experiments.evaluation.train_feature_net --data=/work/shared/data/mnist \
        --binarize --out=/tmp/featnet/mnist_binarized.npz

Trains on the first `--train_limit` training images (the rest of the training split stays
unseen, a held-out real set for "floor" figures), reports test accuracy on the test split
(binarized with the data pipeline's fixed seed, as models' test sets are) and writes one
.npz. Distances measured with it are `fd_smallnet` etc., never FID.
"""
import hashlib
import os

import numpy as np
from absl import app, flags

from argen_jax.data.images import load_idx_folder
from argen_jax.data.pipeline import binarize_fixed
from argen_jax.evaluation import feature_net

_DATA = flags.DEFINE_string("data", "../shared/data/mnist", "MNIST-format idx folder.")
_OUT = flags.DEFINE_string("out", "/tmp/featnet/mnist_binarized.npz", "Where to save.")
_BINARIZE = flags.DEFINE_bool("binarize", True, "Train / test on binarized images (levels 2).")
_STEPS = flags.DEFINE_integer("steps", 1500, "Training steps (batch 128).")
_TRAIN_LIMIT = flags.DEFINE_integer("train_limit", 50000, "Train on the first N images.")
_BINARIZE_SEED = flags.DEFINE_integer("binarize_seed", 1234, "Seed of the fixed test draw.")
_SEED = flags.DEFINE_integer("seed", 0, "Init / batch seed.")


def main(argv):
    del argv
    train = load_idx_folder(os.path.expanduser(_DATA.value), "train").take(_TRAIN_LIMIT.value)
    test = load_idx_folder(os.path.expanduser(_DATA.value), "test")
    levels = 2 if _BINARIZE.value else 256
    model, params = feature_net.train(train.images, train.labels, levels, _BINARIZE.value,
                                      num_steps=_STEPS.value, seed=_SEED.value,
                                      num_classes=train.num_classes)
    test_x = (binarize_fixed(test.images, _BINARIZE_SEED.value) if _BINARIZE.value
              else test.images)
    acc = feature_net.accuracy(model, params, feature_net.to_unit(test_x, levels), test.labels)
    leaves = [np.asarray(v).tobytes() for v in feature_net.traverse_util.flatten_dict(
        params).values()]
    fingerprint = hashlib.sha1(b"".join(leaves)).hexdigest()[:12]
    meta = {"levels": levels, "image_shape": list(train.images.shape[1:]),
            "num_classes": train.num_classes, "data": os.path.abspath(_DATA.value),
            "train_limit": _TRAIN_LIMIT.value, "steps": _STEPS.value,
            "test_accuracy": acc, "fingerprint": fingerprint}
    feature_net.save(_OUT.value, params, meta)
    print(f"test accuracy {acc:.4f}; saved {_OUT.value} ({fingerprint})")


if __name__ == "__main__":
    app.run(main)
