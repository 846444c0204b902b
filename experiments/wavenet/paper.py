"""WaveNet on speech, paper-sized (van den Oord et al. 2016) for GPU / TPU.

Arguments (comma-separated, `paper.py:tiny,nolocal`):
  tiny      a seconds-long CPU run (4 layers, 8 channels) for tests and smoke runs
  nolocal   no local conditioning (log-mel frames): the model babbles
  noglobal  no global conditioning (speaker id)

Data: a folder of WAVs, PATH/{train,test}/<speaker>/*.wav; make one offline with
`python experiments/wavenet/prepare_speech.py --out=/tmp/wavenet/speech` (espeak-ng voices).
"""
import ml_collections

from argen_jax.config_lib import parallel_config, parse_args
from argen_jax.layers.causal_conv import receptive_field

KNOWN = {"tiny", "nolocal", "noglobal"}


def parse(arg):
    return parse_args(arg, KNOWN)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse(arg)
    tiny = "tiny" in args
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, the per-step rngs and the data crops

    c.model = ml_collections.ConfigDict()
    c.model.name = "wavenet"  # registry name
    c.model.head = "softmax"  # output head: 'softmax' (256 mu-law codes) | 'logistic_mixture'
    c.model.num_mixtures = 10  # components of the 'logistic_mixture' head (PixelCNN++'s)
    c.model.residual_channels = 8 if tiny else 64  # width of the residual stream
    c.model.dilation_channels = 8 if tiny else 64  # width of each half of the gate
    c.model.skip_channels = 16 if tiny else 256  # width of the skip sum
    c.model.out_hidden = 16 if tiny else 256  # hidden width of the ReLU-1x1-ReLU-1x1 output
    c.model.kernel_size = 2  # taps of every dilated conv
    c.model.in_kernel = 2  # taps of the causal input conv
    c.model.max_dilation = 8 if tiny else 512  # dilations 1, 2, ..., max_dilation ...
    c.model.repeats = 1 if tiny else 3  # ... repeated this many times
    c.model.global_conditioning = "noglobal" not in args  # speaker embedding on every gate
    c.model.speaker_dim = 4 if tiny else 32  # speaker embedding width
    c.model.local_conditioning = "nolocal" not in args  # upsampled log-mel on every gate
    c.model.cond_channels = 8 if tiny else 128  # width of the upsampled local conditioning
    c.model.cond_kernel = 3  # frames seen by the (non-causal) conv over the features
    c.model.upsample = "transposed"  # 'transposed' (learned, stride = hop) or 'repeat'
    c.model.dtype = "float32"  # compute dtype; 'bfloat16' for mixed precision (params f32)

    c.data = ml_collections.ConfigDict()
    c.data.kind = "audio"  # registry: folder-of-WAV builder (argen_jax/data/audio.py)
    c.data.path = "/tmp/wavenet/speech"  # PATH/{train,test}/<speaker>/*.wav
    c.data.sample_rate = 8000 if tiny else 16000  # every file is resampled to this rate
    c.data.hop = 40 if tiny else 200  # samples per log-mel frame (12.5 ms at 16 kHz)
    c.data.n_fft = 160 if tiny else 800  # log-mel analysis window (Hann)
    c.data.n_mels = 8 if tiny else 80  # mel bands (local conditioning features)
    c.data.crop_length = 400 if tiny else 8000  # training crop in samples (multiple of hop)
    c.data.batch_size = 8 if tiny else 16  # global batch of crops (tests: 8 fake devices)
    c.data.eval_length = 400 if tiny else 16000  # eval chunk (multiple of hop)
    c.data.eval_batch_size = 8 if tiny else 16
    c.data.train_limit = 0  # use only the first N train utterances, round-robin (0 = all)
    c.data.test_limit = 0  # use only the first N test utterances (0 = all)
    # Eval chunks carry this much real history (scored 0), a multiple of hop >= the RF - 1.
    rf = receptive_field(c.model.kernel_size,
                         [2**i for i in range(c.model.max_dilation.bit_length())]
                         * c.model.repeats, c.model.in_kernel)
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
