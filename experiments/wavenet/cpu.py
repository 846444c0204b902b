"""WaveNet on the espeak-ng speech corpus, sized for a shared 2-core CPU (~1 h of training).

Same arguments as paper.py (tiny, nolocal, noglobal). 8 kHz audio, 10 layers (dilations
1..512, receptive field 1025 samples = 128 ms), 10 ms log-mel frames. A train step (batch
8 x 1600 samples) took ~3.3 s on a 2-core machine shared with other jobs.

    python experiments/wavenet/prepare_speech.py --out=/tmp/wavenet/speech
    python launch/main.py --config=experiments/wavenet/cpu.py --workdir=/tmp/wavenet/cpu
"""
import ml_collections

from argen_jax.config_lib import load_sibling
from argen_jax.layers.causal_conv import receptive_field

paper = load_sibling(__file__, "paper")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = paper.get_config(arg)
    if "tiny" in paper.parse(arg):
        return c
    m, d, t, s = c.model, c.data, c.train, c.sample
    m.residual_channels = 32  # width of the residual stream
    m.dilation_channels = 32  # width of each half of the gate
    m.skip_channels = 64  # width of the skip sum
    m.out_hidden = 128  # hidden width of the output head
    m.max_dilation = 512  # dilations 1..512 ...
    m.repeats = 1  # ... once: receptive field 1025 samples
    m.speaker_dim = 16  # speaker embedding width
    m.cond_channels = 32  # width of the upsampled local conditioning
    d.sample_rate = 8000  # telephone-band speech keeps the CPU budget
    d.hop = 80  # 10 ms frames
    d.n_fft = 320  # 40 ms window
    d.n_mels = 40  # mel bands
    d.crop_length = 1600  # 0.2 s crops
    d.batch_size = 8
    d.eval_length = 8000  # 1 s eval chunks
    d.eval_batch_size = 8
    d.test_limit = 24  # 3 held-out sentences per speaker (72 s of speech) keep eval cheap
    rf = receptive_field(m.kernel_size, [2**i for i in range(10)] * m.repeats, m.in_kernel)
    d.eval_context = -(-(rf - 1) // d.hop) * d.hop  # full history for every scored sample
    t.num_steps = 600
    t.lr = 2e-3  # peak learning rate
    t.warmup_steps = 50
    t.ema_decay = 0.99  # Polyak averaging for eval / sampling (short run: short horizon)
    t.log_every = 25
    t.eval_every = 0  # only at the end
    t.save_every = 50
    t.tensorboard = False
    s.num = 8  # one per speaker
    s.batch_size = 8
    s.length = 8000  # 1 s at 8 kHz
    return c
