"""VAR (next-scale prediction) on the multi-scale Fashion-MNIST tokens (scales 1,2,3,4,6,8;
130 tokens, 512 codes), class-conditional with CFG.

Data: /tmp/tok/fashion_mnist_tokens_multiscale.npz, written by
experiments/tokenizer/tokenize_dataset.py from the tokenizer run /tmp/tok/fm_multiscale
(whose quantizer VAR copies into params['tokenizer'] and whose decoder draws the images).

Arguments (comma-separated, `fashion_mnist.py:cpu`):
  tiny      a seconds-long smoke run (depth 2, width 64, few steps) for tests
  cpu       the CPU run on a shared 2-core machine (depth 4, width 128 instead of VAR's
            64 x depth = 256: a train step of the 256-wide model took ~13 s there; 600
            steps of batch 32; test NLL and FD on the first 2,000 test maps / images)
  d16 | d20 | d24 | d30   VAR's published ImageNet shapes (width 64 x depth, heads = depth);
            on these tokens only the vocabulary and scales differ from the paper
"""
import ml_collections

from argen_jax.config_lib import parse_args, section
from argen_jax.data.tokens import TokenDataSettings
from argen_jax.models.var import VARSettings
from argen_jax.sampling.settings import SamplingSettings
from argen_jax.sections import parallel_config, sample_eval_config, train_section

DEPTHS = {"d16": 16, "d20": 20, "d24": 24, "d30": 30}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", "cpu", *DEPTHS})
    tiny, cpu = "tiny" in args, "cpu" in args
    depth = next((DEPTHS[a] for a in args if a in DEPTHS), 2 if tiny else 4 if cpu else 16)
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, the per-step rngs and data shuffling

    # argen_jax/models/var.py VARSettings: every field, its default and its meaning
    c.model = section(VARSettings, name="var", depth=depth,
                      width=64 if tiny else 128 if cpu else 0,  # 0: 64 * depth (VAR)
                      num_heads=2 if tiny else 0)  # 0: = depth (VAR)

    c.data = section(TokenDataSettings,
        path="/tmp/tok/fashion_mnist_tokens_multiscale.npz",
        batch_size=16 if tiny else 32 if cpu else 64, eval_batch_size=64 if tiny else 500,
        test_limit=128 if tiny else 2000 if cpu else 0)

    c.train = train_section(
        num_steps=20 if tiny else 600 if cpu else 50000, lr=2e-3 if tiny or cpu else 4e-4,
        warmup_steps=2 if tiny else 50 if cpu else 1000, end_lr_fraction=0.05, b2=0.95,
        weight_decay=0.05, decay="matrices", grad_clip=2.0,
        log_every=10 if tiny else 25 if cpu else 50,
        eval_every=0 if tiny or cpu else 1000, save_every=0 if tiny else 100 if cpu else 500,
        max_to_keep=2, tensorboard=not tiny, quiet=tiny)

    # argen_jax/sampling/settings.py SamplingSettings; a grid with one column per class.
    # VAR ImageNet: top_k 900 of 4096, top_p 0.96, cfg=2 (our cfg_scale 3.0) ramped linearly
    # over the scales (VARFamily's default schedule, written here as every key is)
    c.sample = section(SamplingSettings, num=20 if tiny else 100, batch_size=20 if tiny else 100,
                       cfg_scale=3.0, cfg_schedule="linear")

    c.eval = sample_eval_config(num_samples=40 if tiny else 2000 if cpu else 10000,
                                sample_batch_size=40 if tiny else 250, feature_batch_size=500,
                                feature_net="/tmp/featnet/fashion_mnist.npz")

    # vocab stays replicated by default; heads / MLP split over the model axis when model > 1
    rules = [["batch", ["data", "fsdp"]], ["heads", "model"], ["kv_heads", "model"],
             ["mlp", "model"], ["embed", "fsdp"]]  # fsdp: parameters split on their width
    c.mesh, c.sharding = parallel_config(rules=rules)
    return c
