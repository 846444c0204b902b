"""LlamaGen c2i on Fashion-MNIST token maps: 28x28 images -> 8x8 tokens of a 512-code VQ
tokenizer -> class token + 64 next-token predictions with 2-D RoPE; CFG sampling; bits per
token on the test maps; FD / precision / recall of decoded samples (`--mode=eval
--config.eval.sample_metrics=True`).

Make the token file first (a trained tokenizer workdir, experiments/tokenizer/small.py):
    python -m experiments.tokenizer.tokenize_dataset --workdir=/tmp/tok/fm_single \
        --out=/tmp/tok/fashion_mnist_tokens_single.npz

Arguments (comma-separated, `fashion_mnist.py:cpu`):
  tiny               seconds-long smoke run (a 2-block model, 40 steps) for tests
  cpu                the ~15-minute, 2-core CPU run of the LlamaGen report
  B, L, XL, XXL, 3B  LlamaGen's published model shapes (models/llamagen.py SIZES; for
                     accelerators: with 16384 codes they are the ImageNet models' sizes)
  tp                 tensor parallelism: mesh model=2 (heads and MLP width split)
"""
import ml_collections

from argen_jax.config_lib import parse_args, section
from argen_jax.data.tokens import TokenDataSettings
from argen_jax.models.llamagen import SIZES, LlamaGenSettings
from argen_jax.sampling.settings import SamplingSettings
from argen_jax.sections import parallel_config, sample_eval_config, train_section


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", "cpu", "tp", *SIZES})
    tiny, cpu = "tiny" in args, "cpu" in args
    sizes = sorted(args & set(SIZES))
    if len(sizes) > 1:
        raise ValueError(f"pick one model size, got {sizes}")
    big = bool(sizes)
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, the per-step rngs and data shuffling

    # argen_jax/models/llamagen.py LlamaGenSettings: every field, its default and its meaning
    c.model = section(LlamaGenSettings, name="llamagen",
                      size=sizes[0] if sizes else "",
                      width=32 if tiny else 128 if cpu else 192,
                      depth=2 if tiny else 4 if cpu else 6,
                      num_heads=2 if tiny else 4 if cpu else 6,
                      multiple_of=32,  # LlamaGen's 256 is for its large widths
                      dropout=0.0 if tiny or cpu else 0.1,  # LlamaGen: 0.1
                      dtype="float32" if tiny or cpu else "bfloat16")

    c.data = section(TokenDataSettings,
        path="/tmp/tok/fashion_mnist_tokens_single.npz",
        batch_size=16 if tiny else 64 if cpu else 256, eval_batch_size=64 if tiny else 500,
        test_limit=64 if tiny else 0)

    c.train = train_section(
        num_steps=40 if tiny else 400 if cpu else 20000,
        lr=3e-3 if tiny else 1e-3 if cpu else 3e-4 if big else 1e-3)
    #   (LlamaGen: 1e-4 at batch 256 for ImageNet)
    c.train.schedule = "cosine"  # cosine | constant | linear, after linear warm-up
    c.train.warmup_steps = 5 if tiny else 40 if cpu else 500
    c.train.end_lr_fraction = 0.05  # final lr = lr * this
    c.train.weight_decay = 0.05  # AdamW decoupled weight decay (LlamaGen: 0.05)
    c.train.decay = "matrices"  # LlamaGen decays only parameters of >= 2 dims
    c.train.b1 = 0.9  # Adam beta1 (LlamaGen: 0.9)
    c.train.b2 = 0.95  # Adam beta2 (LlamaGen: 0.95)
    c.train.grad_clip = 1.0  # global-norm clipping (LlamaGen: 1.0)
    c.train.ema_decay = 0.0 if tiny else 0.999  # EMA of the weights for eval / sampling
    c.train.log_every = 10 if tiny else 50
    c.train.eval_every = 0 if tiny else 200 if cpu else 2000  # 0: only at the end
    c.train.sample_every = 0  # 0: only at the end
    c.train.sample_at_end = True  # write a per-class sample grid after the last step
    c.train.save_every = 20 if tiny else 100 if cpu else 1000
    c.train.max_to_keep = 3
    c.train.tensorboard = not tiny
    c.train.quiet = False  # no progress bar

    # argen_jax/sampling/settings.py SamplingSettings (CFG off; LlamaGen B: cfg_scale 2.0);
    # sample k has class k % 10: a grid with one column per class
    c.sample = section(SamplingSettings, num=20 if tiny else 100, batch_size=20 if tiny else 100)

    c.eval = sample_eval_config(num_samples=20 if tiny else 2000,
                                sample_batch_size=20 if tiny else 250,
                                feature_net="/tmp/featnet/fashion_mnist.npz")

    rules = [["batch", ["data", "fsdp"]], ["heads", "model"], ["kv_heads", "model"],
             ["mlp", "model"], ["embed", "fsdp"]]  # fsdp: parameters split on their width
    c.mesh, c.sharding = parallel_config(model=2 if "tp" in args else 1, rules=rules)
    return c
