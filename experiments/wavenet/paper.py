"""WaveNet on speech, paper-sized (van den Oord et al. 2016) for GPU / TPU.

Arguments (comma-separated, `paper.py:tiny,nolocal`):
  tiny      a seconds-long CPU run (4 layers, 8 channels) for tests and smoke runs, on
            synthetic voices made in memory (data.path=builtin:tones: nothing to prepare)
  nolocal   no local conditioning (log-mel frames): the model babbles
  noglobal  no global conditioning (speaker id)

Data: a folder of WAVs, PATH/{train,test}/<speaker>/*.wav; make one offline with
`python experiments/wavenet/prepare_speech.py --out=/tmp/wavenet/speech` (espeak-ng voices).
"""
import ml_collections

from argen_jax.config_lib import parse_args, section
from argen_jax.data.audio import BUILTIN_TONES, AudioDataSettings
from argen_jax.layers.causal_conv import receptive_field
from argen_jax.models.wavenet import WaveNetSettings, stack_dilations
from argen_jax.sampling.settings import SamplingSettings
from argen_jax.sections import parallel_config, train_section

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
    d = {"path": BUILTIN_TONES if tiny else "/tmp/wavenet/speech", **(TINY_DATA if tiny else data)}
    # Eval chunks carry this much real history (scored 0), a multiple of hop >= the RF - 1.
    rf = receptive_field(m.kernel_size, stack_dilations(m.max_dilation, m.repeats), m.in_kernel)
    c.data = section(AudioDataSettings, **d)
    c.data.eval_context = -(-(rf - 1) // c.data.hop) * c.data.hop

    c.train = train_section(
        num_steps=20 if tiny else 200_000, lr=3e-3 if tiny else 1e-3,
        warmup_steps=5 if tiny else 1000, end_lr_fraction=0.05, grad_clip=1.0,
        ema_decay=0.0 if tiny else 0.9995, log_every=10 if tiny else 200,
        eval_every=0 if tiny else 10_000, save_every=10 if tiny else 5000, tensorboard=not tiny)

    c.sample = section(SamplingSettings,
        num=2 if tiny else 8, batch_size=2 if tiny else 8, length=200 if tiny else 32000)

    c.mesh, c.sharding = parallel_config()
    return c
