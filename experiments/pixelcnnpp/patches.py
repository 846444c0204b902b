"""PixelCNN++ on 32x32 RGB patches of real photos that ship with scikit-image, scikit-learn and
matplotlib (offline): train patches from nine photos (at most 1,500 per photo), test patches
from two other photos (skimage's astronaut and coffee).
The RGB mixture uses the paper's linear channel coupling (10 parameters per component).

Arguments (comma-separated, `patches.py:cpu`):
  tiny  minimal model, few steps, a few hundred patches
  cpu   a small model and 2,500 steps (~35 min on an idle 2-core CPU)
  (none) the accelerator setting: 96 filters, 4 blocks per resolution, dropout 0.5, 15.8M
        parameters, 100k steps (one H100: ~20 steps/s, so ~85 min)
"""
import ml_collections

from argen_jax.config_lib import load_sibling, parse_args
from argen_jax.sections import photo_patches_data

_base = load_sibling(__file__, "base")
base_config, run_length = _base.base_config, _base.run_length


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", "cpu"})
    tiny, cpu = "tiny" in args, "cpu" in args
    model = {} if tiny else {"features": 48 if cpu else 96, "num_resnet": 1 if cpu else 4,
                             "dropout": 0.0 if cpu else 0.5}
    c = base_config(tiny, **model)
    if not tiny:
        run_length(c, cpu, cpu_warmup=100, cpu_steps=2500)
        # Diverged (NaN): 48 filters at lr 2e-3 without clipping near step 550 (CPU); 96
        # filters at lr 1e-3 near step 1700 without and near step 900 with clipping (H100).
        # Stable: 48 at 1e-3 (2,500 steps), 96 at 5e-4 (4,500 steps), both clipped at 1.0.
        c.train.lr, c.train.grad_clip = (1e-3 if cpu else 5e-4), 1.0

    c.data = photo_patches_data(
        batch_size=4 if tiny else (16 if cpu else 64),
        eval_batch_size=16 if tiny else 118,  # 472 test patches = 4 x 118
        train_limit=256 if tiny else 0, test_limit=16 if tiny else 0)
    return c
