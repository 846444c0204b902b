"""WaveNet on speech, paper-sized (van den Oord et al. 2016) for GPU / TPU.

Arguments (comma-separated, `paper.py:tiny,nolocal`):
  tiny      a seconds-long CPU run (4 layers, 8 channels) for tests and smoke runs
  nolocal   no local conditioning (log-mel frames): the model babbles
  noglobal  no global conditioning (speaker id)

Data: a folder of WAVs, PATH/{train,test}/<speaker>/*.wav; make one offline with
`python experiments/wavenet/prepare_speech.py --out=/tmp/wavenet/speech` (espeak-ng voices).
"""
import ml_collections

from argen_jax.config_lib import parallel_config, parse_args, section
from argen_jax.data.audio import AudioDataSettings
from argen_jax.layers.causal_conv import receptive_field
from argen_jax.models.wavenet import WaveNetSettings, stack_dilations

KNOWN = {"tiny", "nolocal", "noglobal"}

# What differs from the settings' defaults (WaveNetSettings in argen_jax/models/wavenet.py,
# AudioDataSettings in argen_jax/data/audio.py), for the paper-sized and the tiny model.
PAPER_MODEL = {"speaker_dim": 32, "cond_channels": 128}
PAPER_DATA = {"n_fft": 800, "eval_length": 16000, "eval_batch_size": 16}  # 16 kHz, 12.5 ms
TINY_MODEL = {"residual_channels": 8, "dilation_channels": 8, "skip_channels": 16,
              "out_hidden": 16, "max_dilation": 8, "repeats": 1, "speaker_dim": 4,
              "cond_channels": 8}
TINY_DATA = {"sample_rate": 8000, "hop": 40, "n_fft": 160, "n_mels": 8, "crop_length": 400,
             "batch_size": 8, "eval_length": 400, "eval_batch_size": 8}


def parse(arg):
    return parse_args(arg, KNOWN)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return make_config(parse(arg), PAPER_MODEL, PAPER_DATA)


def make_config(args: set[str], model: dict, data: dict) -> ml_collections.ConfigDict:
    """The config of `args`; `model`, `data`: the non-tiny sizes (cpu.py passes its own)."""
    tiny = "tiny" in args
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, the per-step rngs and the data crops

    c.model = section(WaveNetSettings, name="wavenet", **(TINY_MODEL if tiny else model),
                      global_conditioning="noglobal" not in args,
                      local_conditioning="nolocal" not in args)

    m = c.model
    d = {"path": "/tmp/wavenet/speech", **(TINY_DATA if tiny else data)}
    # Eval chunks carry this much real history (scored 0), a multiple of hop >= the RF - 1.
    rf = receptive_field(m.kernel_size, stack_dilations(m.max_dilation, m.repeats), m.in_kernel)
    c.data = section(AudioDataSettings, **d)
    c.data.eval_context = -(-(rf - 1) // c.data.hop) * c.data.hop

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 20 if tiny else 200_000
    c.train.lr = 3e-3 if tiny else 1e-3  # peak learning rate
    c.train.schedule = "cosine"  # cosine | constant | linear, after linear warm-up
    c.train.warmup_steps = 5 if tiny else 1000
    c.train.end_lr_fraction = 0.05  # final lr = lr * this
    c.train.weight_decay = 0.0  # AdamW decoupled weight decay
    c.train.grad_clip = 1.0  # global-norm clipping (0 = off)
    c.train.ema_decay = 0.0 if tiny else 0.9995  # Polyak averaging for eval/sampling (0 = off)
    c.train.log_every = 10 if tiny else 200
    c.train.eval_every = 0 if tiny else 10_000  # 0: only at the end
    c.train.sample_every = 0  # 0: only at the end
    c.train.save_every = 10 if tiny else 5000
    c.train.max_to_keep = 3
    c.train.tensorboard = not tiny
    c.train.quiet = False  # no progress bar

    c.sample = ml_collections.ConfigDict()
    c.sample.num = 2 if tiny else 8  # sample k uses speaker k % num_speakers
    c.sample.batch_size = 2 if tiny else 8
    c.sample.length = 200 if tiny else 32000  # samples generated (fast generation)
    c.sample.seed = 0  # sample k uses fold_in(PRNGKey(seed), k)

    c.mesh, c.sharding = parallel_config()
    return c
