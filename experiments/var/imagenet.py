"""VAR (next-scale prediction, Tian et al. 2024) class-conditional on ImageNet 256: the
multi-scale codes (scales 1,2,3,4,5,6,8,10,13,16; 680 tokens; 4,096 codes) of the VQVAE of
`experiments/tokenizer/imagenet.py:var`, tokenized by tokenize_dataset.py.

VAR's recipe (its README and utils/arg_util.py): AdamW betas (0.9, 0.95), weight decay 0.05,
clip 2.0, lr = 1e-4 * batch / 256 (d24, d30: 8e-5 * batch / 256), warm-up for epochs / 50,
then linear decay to wpe * lr; class dropout 0.1; width 64 x depth, heads = depth:
  d16  batch 768,  200 epochs, wpe 0.1          d24  batch 768,  350 epochs, wpe 0.01
  d20  batch 768,  250 epochs, wpe 0.1          d30  batch 1024, 350 epochs, wpe 0.01
Sampling: top-k 900, top-p 0.96, CFG ramped linearly over the scales.

    python -m experiments.tokenizer.tokenize_dataset --workdir=/tmp/tok/imagenet_var \
        --out=/tmp/tok/imagenet_var_tokens.npz
    python launch/main.py --config=experiments/var/imagenet.py:d20 --workdir=W \
        --config.data.path=/tmp/tok/imagenet_var_tokens.npz

Arguments (comma-separated): d16 (default) | d20 | d24 | d30, or
  tiny   a minute-long CPU run (depth 2, width 64) on the token file of the tokenizer's
         `:tiny,var` run (/tmp/tok/imagenet_tiny_var_tokens.npz)
The resolution is the tokenizer's (its scales set the token maps).
"""
import ml_collections

from argen_jax.config_lib import parse_args, section
from argen_jax.data.tokens import TokenDataSettings
from argen_jax.evaluation.sample_eval import EvalSettings
from argen_jax.models.var import VARSettings
from argen_jax.sampling.settings import SamplingSettings
from argen_jax.sections import parallel_config, train_section

IMAGENET_TRAIN = 1_281_167
# depth -> (global batch, epochs, base lr per 256 images, final lr fraction): VAR's README
RECIPES = {"d16": (768, 200, 1e-4, 0.1), "d20": (768, 250, 1e-4, 0.1),
           "d24": (768, 350, 8e-5, 0.01), "d30": (1024, 350, 8e-5, 0.01)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", *RECIPES})
    tiny = "tiny" in args
    depths = sorted(args & set(RECIPES))
    if len(depths) > 1:
        raise ValueError(f"pick one depth, got {depths}")
    name = depths[0] if depths else "d16"
    batch, epochs, base_lr, end_frac = RECIPES[name]
    steps_per_epoch = IMAGENET_TRAIN // batch
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, the per-step rngs and data shuffling

    # argen_jax/models/var.py VARSettings: every field, its default and its meaning
    if tiny:
        c.model = section(VARSettings, name="var", depth=2, width=64, num_heads=2)
    else:
        c.model = section(VARSettings, name="var", depth=int(name[1:]), dtype="bfloat16")

    c.data = section(TokenDataSettings,
                     path="/tmp/tok/imagenet_tiny_var_tokens.npz" if tiny
                     else "/tmp/tok/imagenet_var_tokens.npz",
                     batch_size=8 if tiny else batch, eval_batch_size=8 if tiny else 500)

    c.train = train_section(
        num_steps=20 if tiny else epochs * steps_per_epoch,
        lr=2e-3 if tiny else base_lr * batch / 256, schedule="linear",
        warmup_steps=2 if tiny else epochs * steps_per_epoch // 50,
        end_lr_fraction=end_frac, b2=0.95, weight_decay=0.0 if tiny else 0.05,
        decay="matrices",  # VAR also exempts its position / level embeddings
        grad_clip=2.0, log_every=5 if tiny else 100, eval_every=0 if tiny else 10_000,
        save_every=0 if tiny else 5000, tensorboard=not tiny, quiet=tiny)

    # argen_jax/sampling/settings.py SamplingSettings; sample k has class k % classes
    c.sample = section(SamplingSettings, num=6 if tiny else 100, batch_size=6 if tiny else 100,
                       top_k=0 if tiny else 900, top_p=1.0 if tiny else 0.96,
                       cfg_scale=1.0 if tiny else 3.0, cfg_schedule="linear")

    # --mode=eval --config.eval.sample_metrics=True: FID / IS of 50k samples (ADM's protocol)
    c.eval = section(EvalSettings, features="inception",
                     inception_weights="~/weights/pt_inception.npz",
                     num_samples=12 if tiny else 50_000, sample_batch_size=12 if tiny else 250)

    rules = [["batch", ["data", "fsdp"]], ["heads", "model"], ["kv_heads", "model"],
             ["mlp", "model"], ["embed", "fsdp"]]  # fsdp: parameters split on their width
    c.mesh, c.sharding = parallel_config(rules=rules)
    return c
