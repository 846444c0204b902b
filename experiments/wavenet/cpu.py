"""WaveNet on the espeak-ng speech corpus, sized for a 2-core CPU (~30 min of training).

Same arguments as paper.py (tiny, nolocal, noglobal). 8 kHz audio, 18 layers (dilations
1..256 twice, receptive field 1024 samples = 128 ms), 10 ms log-mel frames.

    python experiments/wavenet/prepare_speech.py --out=/tmp/wavenet/speech
    python launch/main.py --config=experiments/wavenet/cpu.py --workdir=/tmp/wavenet/cpu
"""
import ml_collections

from argen_jax.layers.causal_conv import receptive_field
from experiments.wavenet import paper


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = paper.get_config(arg)
    if "tiny" in paper.parse(arg):
        return c
    m, d, t, s = c.model, c.data, c.train, c.sample
    m.residual_channels = 32  # width of the residual stream
    m.dilation_channels = 32  # width of each half of the gate
    m.skip_channels = 128  # width of the skip sum
    m.out_hidden = 128  # hidden width of the output head
    m.max_dilation = 256  # dilations 1..256 ...
    m.repeats = 2  # ... twice: receptive field 1024 samples
    m.speaker_dim = 16  # speaker embedding width
    m.cond_channels = 32  # width of the upsampled local conditioning
    d.sample_rate = 8000  # telephone-band speech keeps the CPU budget
    d.hop = 80  # 10 ms frames
    d.n_fft = 320  # 40 ms window
    d.n_mels = 40  # mel bands
    d.crop_length = 2400  # 0.3 s crops
    d.batch_size = 8
    d.eval_length = 8000  # 1 s eval chunks
    d.eval_batch_size = 8
    rf = receptive_field(m.kernel_size, [2**i for i in range(9)] * m.repeats, m.in_kernel)
    d.eval_context = -(-(rf - 1) // d.hop) * d.hop  # full history for every scored sample
    t.num_steps = 2000
    t.lr = 2e-3  # peak learning rate
    t.warmup_steps = 100
    t.ema_decay = 0.998  # Polyak averaging for eval / sampling
    t.log_every = 50
    t.eval_every = 500
    t.save_every = 250
    t.tensorboard = False
    s.num = 8  # one per speaker
    s.batch_size = 8
    s.length = 16000  # 2 s at 8 kHz
    return c
