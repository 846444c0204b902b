"""Gated PixelCNN (or PixelCNN) on binarized MNIST: test NLL in nats, steps and wall time.

Train: real MNIST (idx folder), dynamically binarized (a fresh Bernoulli(x/255) draw per
step). Test: the 10,000 MNIST test images binarized once with a fixed seed
(data.binarize_seed). Anchors (nats): PixelCNN 81.30, Gated PixelCNN re-implemented 81.50.

    python -m experiments.benchmarks.quality.pixelcnn_binarized_mnist --steps=2000 \
        --workdir=runs/gpcnn_bmnist [--data=../shared/data/mnist] [--model=pixelcnn]

Prints one JSON line. Re-running with the same workdir and more --steps continues training
(a longer cosine schedule is a different run: use a fresh workdir to compare fairly).
"""
from absl import flags

from argen_jax.train.loop import train
from experiments.benchmarks import common
from experiments.pixelcnn.mnist import get_config

flags.DEFINE_integer("steps", 2000, "Training steps.")
flags.DEFINE_string("workdir", "runs/gpcnn_bmnist", "Workdir (resumes if it has checkpoints).")
flags.DEFINE_string("data", "../shared/data/mnist", "MNIST idx folder.")
flags.DEFINE_string("model", "gated_pixelcnn", "gated_pixelcnn or pixelcnn.")
flags.DEFINE_integer("batch_size", 64, "Global batch size.")
flags.DEFINE_integer("features", 64, "Hidden channels.")
flags.DEFINE_integer("layers", 10, "Hidden layers.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    c = get_config("idx" + (",pixelcnn" if FLAGS.model == "pixelcnn" else ""))
    c.data.path = FLAGS.data
    c.data.batch_size = FLAGS.batch_size
    c.model.features = FLAGS.features
    c.model.out_hidden = FLAGS.features
    c.model.num_layers = FLAGS.layers
    c.train.num_steps = FLAGS.steps
    c.train.eval_every = 0  # only at the end (a full 10k-image pass is not free on CPU)
    c.train.save_every = 250
    with common.Stopwatch() as training:
        last = train(c, FLAGS.workdir)
    common.emit({
        "benchmark": "binarized_mnist_nll", "model": FLAGS.model, "steps": FLAGS.steps,
        "batch_size": FLAGS.batch_size, "features": FLAGS.features, "layers": FLAGS.layers,
        "test_nll_nats": round(last["eval/nll"], 3), "test_bpd": round(last["eval/bpd"], 5),
        "wall_time_s": round(training.seconds, 1),
        "anchors_nats": {"PixelCNN": 81.30, "Gated PixelCNN (re-impl.)": 81.50},
    })


if __name__ == "__main__":
    common.run(main)
