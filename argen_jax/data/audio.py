"""Audio data: a folder of WAV files -> mu-law codes, speaker ids and log-mel features.

Folder layout (`data.path`):

    PATH/train/<speaker>/*.wav
    PATH/test/<speaker>/*.wav          (held-out sentences and/or speakers)

Speakers are the sorted subfolder names of `train` (plus any that appear only in `test`,
appended after them), so speaker ids are stable. Every file is read as mono, resampled to
`data.sample_rate` (polyphase, scipy), mu-law quantised to 256 codes and padded with the
silence code to a whole number of feature frames. Log-mel features are computed from the
*dequantised* codes (what the model sees), one frame per `hop` samples: frame f is centred on
samples [f*hop, (f+1)*hop), so frame f is the local conditioning of those samples.

Batches (dicts of numpy arrays, leading batch axis; keys from `data/batch.py`):
    audio  uint8   [B, T]          mu-law codes
    valid  float32 [B, T]          1 where the code is real audio that counts in the NLL
    mel    float32 [B, T/hop, M]   normalised log-mel features of the same samples
    label  int32   [B]             speaker id
    mask   float32 [B]             1 for real examples (the shared convention)

`data.path=builtin:tones` needs no files: TONE_SPEAKERS synthetic "speakers" (harmonic
voices of different pitch and timbre singing pitch-gliding syllables between pauses,
`synthetic_tones`), made in memory at the configured rate, the same on every machine; the
`:tiny` WaveNet configs train on it.

Training: random crops of `crop_length` samples starting on a frame boundary, a pure function
of (seed, step). Evaluation: every test utterance cut into consecutive `eval_length` chunks;
each chunk carries `eval_context` earlier samples (silence before the start) with valid = 0,
so every sample is scored with a full receptive field of real history.
"""
from __future__ import annotations

import dataclasses
import glob
import math
import os
import struct
from collections.abc import Iterator
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from argen_jax.config_lib import typed
from argen_jax.data import batch as keys
from argen_jax.data.batch import check_batching
from argen_jax.data.pipeline import DataSpec, RandomAccessBatcher, sequential_batches
from argen_jax.errors import ConfigError, DataError
from argen_jax.heads import mulaw

LOG_EPS = 1e-5  # floor inside the log of the mel power
FEATURE_SHIFT, FEATURE_SCALE = 4.0, 4.0  # feature = (log(mel + eps) + shift) / scale


# --------------------------------------------------------------------------- signal utils
def read_wav(path: str) -> tuple[np.ndarray, int]:
    """-> (float32 mono samples in [-1, 1], sample rate)."""
    from scipy.io import wavfile

    try:
        rate, data = wavfile.read(path)
    except FileNotFoundError:
        raise DataError(f"WAV file {path!r} does not exist") from None
    except (ValueError, OSError, EOFError, struct.error) as e:  # struct: a cut-off header
        raise DataError(f"cannot read WAV file {path!r} (damaged or truncated?): "
                        f"{e or type(e).__name__}") from None
    if data.dtype.kind == "i":
        x = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    elif data.dtype.kind == "u":  # 8-bit WAV is unsigned
        x = (data.astype(np.float32) - 128.0) / 128.0
    else:
        x = data.astype(np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    return np.clip(x, -1.0, 1.0), int(rate)


def write_wav(path: str, audio: np.ndarray, sample_rate: int) -> str:
    """float audio in [-1, 1] [T] -> 16-bit PCM WAV."""
    from scipy.io import wavfile

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pcm = np.round(np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767).astype(np.int16)
    wavfile.write(path, int(sample_rate), pcm)
    return path


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased) by the rational ratio rate_out / rate_in."""
    if rate_in == rate_out:
        return x.astype(np.float32)
    from scipy.signal import resample_poly

    r = Fraction(rate_out, rate_in).limit_denominator(1000)
    return resample_poly(x, r.numerator, r.denominator).astype(np.float32)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """[n_fft//2 + 1, n_mels] triangular filters evenly spaced on the HTK mel scale, each
    normalised to unit area (so loudness does not depend on the filter width)."""
    fmax = fmax or sample_rate / 2
    to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    to_hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / np.maximum(mid - lo, 1e-6)
    down = (hi - freqs[None]) / np.maximum(hi - mid, 1e-6)
    fb = np.maximum(0.0, np.minimum(up, down))  # [M, F]
    fb /= np.maximum(fb.sum(axis=1, keepdims=True), 1e-9)
    return fb.T.astype(np.float32)


def log_mel(audio: np.ndarray, sample_rate: int, hop: int, n_fft: int,
            n_mels: int) -> np.ndarray:
    """Audio [N] (N a multiple of hop) -> log mel power [N / hop, n_mels]; frame f is a
    Hann window of n_fft samples centred on the middle of samples [f*hop, (f+1)*hop)."""
    audio = np.asarray(audio, np.float32)
    if audio.shape[-1] % hop:
        raise DataError(f"log_mel: audio length {audio.shape[-1]} is not a multiple of "
                        f"hop={hop}")
    frames = audio.shape[-1] // hop
    left = n_fft // 2 - hop // 2
    xp = np.pad(audio, (max(left, 0), n_fft))
    idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None]
    spec = np.abs(np.fft.rfft(xp[idx] * np.hanning(n_fft).astype(np.float32), axis=-1)) ** 2
    mel = spec @ mel_filterbank(sample_rate, n_fft, n_mels)
    return np.log(mel + LOG_EPS).astype(np.float32)


def to_features(logmel: np.ndarray) -> np.ndarray:
    """Log-mel -> the model's conditioning features (a fixed affine map to roughly [-2, 2])."""
    return ((logmel + FEATURE_SHIFT) / FEATURE_SCALE).astype(np.float32)


# --------------------------------------------------------------------------- settings
@dataclasses.dataclass(frozen=True)
class AudioDataSettings:
    """`config.data` of data.kind='audio'."""

    kind: str = "audio"  # registry: which data builder (data/builders.py)
    path: str = ""  # PATH/{train,test}/<speaker>/*.wav (experiments/wavenet/prepare_speech.py),
    # or 'builtin:tones' (synthetic voices made in memory: no files)
    sample_rate: int = 16000  # every file is resampled to this rate
    hop: int = 200  # samples per log-mel frame (12.5 ms at 16 kHz)
    n_fft: int = 0  # log-mel analysis window (Hann; 0: 4 * hop)
    n_mels: int = 80  # mel bands (the local conditioning features)
    crop_length: int = 8000  # training crop in samples (a multiple of hop)
    batch_size: int = 16  # global batch of crops (split over the data mesh axis)
    eval_length: int = 0  # eval chunk in samples (a multiple of hop; 0: crop_length)
    eval_batch_size: int = 0  # global eval batch (0: batch_size)
    eval_context: int = 0  # real history (scored 0) carried by every eval chunk, a multiple
    # of hop: >= the receptive field - 1 scores every sample with a full history
    train_limit: int = 0  # use only the first N train utterances, round-robin (0 = all)
    test_limit: int = 0  # use only the first N test utterances, round-robin (0 = all)

    def __post_init__(self):
        if self.kind != "audio":
            raise ConfigError(f"data.kind={self.kind!r}: these are the settings of 'audio'")
        self.format()  # validates sample_rate, hop, n_fft, n_mels
        check_batching(self)

    def format(self) -> AudioFormat:
        return AudioFormat(self.sample_rate, self.hop, self.n_fft or 4 * self.hop, self.n_mels)


# --------------------------------------------------------------------------- data sets
@dataclasses.dataclass
class AudioSet:
    """Utterances held in memory. codes[i] uint8 [N_i] (N_i a multiple of hop), feats[i]
    float32 [N_i / hop, M], speakers[i] int."""

    codes: list
    feats: list
    speakers: np.ndarray
    names: list

    def __len__(self):
        return len(self.codes)


@dataclasses.dataclass(frozen=True)
class AudioFormat:
    sample_rate: int = 16000
    hop: int = 160  # samples per feature frame
    n_fft: int = 512
    n_mels: int = 40

    def __post_init__(self):
        if self.sample_rate <= 0 or self.hop <= 0 or self.n_fft < self.hop or self.n_mels <= 0:
            raise ConfigError(f"audio format needs sample_rate > 0, hop > 0, n_fft >= hop, "
                              f"n_mels > 0: {self}")

    @classmethod
    def from_spec(cls, spec: DataSpec) -> AudioFormat:
        """The format an audio `DataSpec` records (data.kind='audio')."""
        return cls(spec.sample_rate, spec.hop, spec.n_fft, spec.n_mels)

    def features(self, codes: np.ndarray) -> np.ndarray:
        """mu-law codes [N] -> conditioning features [N / hop, n_mels]."""
        audio = mulaw.dequantize(np.asarray(codes, np.int32))
        return to_features(log_mel(audio, self.sample_rate, self.hop, self.n_fft, self.n_mels))

    def silence_features(self) -> np.ndarray:
        return self.features(np.full((self.hop,), mulaw.silence_code(), np.uint8))[0]


def encode_utterance(audio: np.ndarray, fmt: AudioFormat) -> tuple[np.ndarray, np.ndarray]:
    """Float audio at fmt.sample_rate -> (codes uint8 padded to whole frames, features)."""
    n = max(1, math.ceil(len(audio) / fmt.hop)) * fmt.hop
    audio = np.pad(audio, (0, n - len(audio)))
    codes = mulaw.quantize(audio).astype(np.uint8)
    return codes, fmt.features(codes)


BUILTIN_TONES = "builtin:tones"  # data.path of the synthetic set below (no files)
TONE_SPEAKERS = (("low", 110.0, 0.55), ("mid", 165.0, 0.7), ("high", 240.0, 0.8),
                 ("bright", 330.0, 0.95))  # (name, mean pitch Hz, brightness: harmonic decay)
TONE_UTTERANCES = {"train": 12, "test": 3}  # per speaker, about a second each


def synthetic_tones(split: str, fmt: AudioFormat, limit: int = 0) -> AudioSet:
    """`data.path=builtin:tones`: per speaker, utterances of 4-8 syllables (a harmonic tone,
    pitch gliding around the speaker's pitch, a formant-like spectral tilt, attack / decay)
    separated by short pauses, plus a little noise. Deterministic per (split, speaker, k)."""
    rate = fmt.sample_rate
    codes, feats, spk, names = [], [], [], []
    split_id = {"train": 0, "test": 1}[split]
    for sid, (name, f0, bright) in enumerate(TONE_SPEAKERS):
        for k in range(TONE_UTTERANCES[split]):
            rng = np.random.default_rng([7, split_id, sid, k])
            pieces = []
            for _ in range(int(rng.integers(4, 9))):
                n = int(rng.uniform(0.08, 0.2) * rate)
                t = np.arange(n) / rate
                start, end = f0 * rng.uniform(0.8, 1.25, 2)
                phase = 2 * np.pi * np.cumsum(np.linspace(start, end, n)) / rate
                harmonics = np.arange(1, 9)
                amps = bright ** harmonics * rng.uniform(0.6, 1.0, len(harmonics))
                amps = amps[harmonics * max(start, end) < rate / 2]  # below Nyquist
                tone = (amps[:, None] * np.sin(np.outer(harmonics[:len(amps)], phase))).sum(0)
                env = np.minimum(1.0, t / 0.01) * np.exp(-t * rng.uniform(2.0, 8.0))
                pieces += [0.5 * tone / max(amps.sum(), 1e-6) * env,
                           np.zeros(int(rng.uniform(0.02, 0.08) * rate))]
            x = np.concatenate(pieces)
            x += rng.normal(0.0, 0.003, len(x))
            c, m = encode_utterance(np.clip(x, -1.0, 1.0).astype(np.float32), fmt)
            codes.append(c)
            feats.append(m)
            spk.append(sid)
            names.append(f"{BUILTIN_TONES}/{split}/{name}/{k:02d}")
    order = _limit_order(spk, limit)
    return AudioSet([codes[i] for i in order], [feats[i] for i in order],
                    np.asarray([spk[i] for i in order], np.int32), [names[i] for i in order])


def _limit_order(spk: list[int], limit: int) -> np.ndarray:
    """Indices kept by a `limit`: every speaker represented (the first utterances of each,
    round-robin); all when limit is 0."""
    order = np.arange(len(spk))
    if limit:
        seen: dict[int, int] = {}
        ranks = []
        for s in spk:
            ranks.append(seen.get(s, 0))
            seen[s] = ranks[-1] + 1
        order = np.sort(np.argsort(np.asarray(ranks), kind="stable")[:limit])
    return order


def list_speakers(path: str) -> list[str]:
    names = []
    for split in ("train", "test"):
        d = os.path.join(path, split)
        if os.path.isdir(d):
            names += sorted(n for n in os.listdir(d)
                            if os.path.isdir(os.path.join(d, n)) and n not in names)
    return names


def load_audio_folder(path: str, split: str, fmt: AudioFormat, speakers: list[str],
                      limit: int = 0) -> AudioSet:
    if path == BUILTIN_TONES:
        return synthetic_tones(split, fmt, limit)
    root = os.path.join(path, split)
    if not os.path.isdir(root):
        raise DataError(f"audio folder {root!r} does not exist (expected PATH/{split}/"
                        "<speaker>/*.wav; see experiments/wavenet/prepare_speech.py)")
    codes, feats, spk, names = [], [], [], []
    for sid, name in enumerate(speakers):
        for f in sorted(glob.glob(os.path.join(root, name, "*.wav"))):
            x, rate = read_wav(f)
            c, m = encode_utterance(resample(x, rate, fmt.sample_rate), fmt)
            codes.append(c)
            feats.append(m)
            spk.append(sid)
            names.append(os.path.relpath(f, path))
    if not codes:
        raise DataError(f"no WAV files under {root}/<speaker>/")
    order = _limit_order(spk, limit)  # every speaker represented
    return AudioSet([codes[i] for i in order], [feats[i] for i in order],
                    np.asarray([spk[i] for i in order], np.int32), [names[i] for i in order])


# --------------------------------------------------------------------------- batching
class SpeakerConditioning(NamedTuple):
    """Per speaker (in speaker-id order) the start of one held-out test utterance: what
    conditions WaveNet's samples (`WaveNetFamily.sample`)."""

    features: np.ndarray  # float32 [S, length / hop, n_mels]
    codes: np.ndarray  # uint8 [S, length]: the utterance itself (to listen to)


class AudioData:
    """Train / eval batches over in-memory utterances (see the module docstring)."""

    def __init__(self, train: AudioSet, test: AudioSet, fmt: AudioFormat, num_speakers: int,
                 crop_length: int, batch_size: int, eval_batch_size: int,
                 eval_length: int, eval_context: int, seed: int = 0, source: str = ""):
        for name, v in (("crop_length", crop_length), ("eval_length", eval_length),
                        ("eval_context", eval_context)):
            if v % fmt.hop or v < 0 or (v == 0 and name != "eval_context"):
                raise ConfigError(f"data.{name}={v} must be a positive multiple of "
                                  f"data.hop={fmt.hop}")
        self.fmt, self.seed = fmt, seed
        self.train_set, self.test_set = train, test
        self.crop, self.eval_length, self.eval_context = crop_length, eval_length, eval_context
        self.eval_batch_size = eval_batch_size
        self.spec = DataSpec((crop_length,), 256, num_speakers, "audio",
                             sample_rate=fmt.sample_rate, hop=fmt.hop, n_fft=fmt.n_fft,
                             n_mels=fmt.n_mels, source=source)
        self._silence_feat = fmt.silence_features()
        self.train_batch = RandomAccessBatcher(len(train), batch_size, seed, self._fetch_train)
        self.chunks = [(i, s) for i, c in enumerate(test.codes)
                       for s in range(0, len(c), eval_length)]

    def _window(self, data: AudioSet, i: int, start: int, length: int, score_from: int = 0):
        """Samples [start, start + length) of utterance i (silence outside), with valid = 1
        on the real samples at positions >= score_from of the window."""
        codes, feats, hop = data.codes[i], data.feats[i], self.fmt.hop
        n = len(codes)
        audio = np.full((length,), mulaw.silence_code(), np.uint8)
        valid = np.zeros((length,), np.float32)
        mel = np.tile(self._silence_feat, (length // hop, 1))
        lo, hi = max(start, 0), min(start + length, n)
        if hi > lo:
            audio[lo - start : hi - start] = codes[lo:hi]
            valid[lo - start : hi - start] = 1.0
            mel[(lo - start) // hop : (hi - start) // hop] = feats[lo // hop : hi // hop]
        valid[:score_from] = 0.0
        return audio, valid, mel

    def _fetch_train(self, idx, step):
        rng = np.random.default_rng([self.seed, 1, int(step)])
        hop = self.fmt.hop
        out = []
        for i in idx:
            frames = len(self.train_set.codes[i]) // hop
            start = hop * int(rng.integers(0, max(frames - self.crop // hop, 0) + 1))
            out.append(self._window(self.train_set, i, start, self.crop))
        return self._stack(out, self.train_set.speakers[idx])

    @staticmethod
    def _stack(windows, speakers):
        audio, valid, mel = (np.stack(z) for z in zip(*windows, strict=True))
        return {keys.AUDIO: audio, keys.VALID: valid, keys.MEL: mel,
                keys.LABEL: np.asarray(speakers, np.int32)}

    def _fetch_eval(self, idx):
        c = self.eval_context
        wins = [self._window(self.test_set, self.chunks[k][0], self.chunks[k][1] - c,
                             c + self.eval_length, score_from=c) for k in idx]
        return self._stack(wins, [self.test_set.speakers[self.chunks[k][0]] for k in idx])

    def eval_batches(self) -> Iterator[dict]:
        return sequential_batches(len(self.chunks), self.eval_batch_size, self._fetch_eval)

    def conditioning(self, speaker: int, length: int, utterance: int = 0):
        """(features [length / hop, M], codes [length]) of the `utterance`-th test utterance
        of `speaker` (wrapping around), from its start: the local conditioning of samples."""
        ids = np.flatnonzero(self.test_set.speakers == speaker)
        if not len(ids):
            ids = np.arange(len(self.test_set))
        i = int(ids[utterance % len(ids)])
        audio, _, mel = self._window(self.test_set, i, 0, length)
        return mel, audio


    def speaker_conditioning(self, length: int) -> SpeakerConditioning:
        """Per speaker, the first `length` samples (a multiple of hop) of its first test
        utterance; speakers without test audio get the first test utterance overall."""
        mels, codes = zip(*(self.conditioning(s, length) for s in range(self.spec.num_classes)),
                          strict=True)
        return SpeakerConditioning(np.stack(mels), np.stack(codes))


def build_audio_data(cfg, seed: int) -> AudioData:
    """data.kind='audio': `cfg` is `config.data` (or its `AudioDataSettings`)."""
    s = cfg if isinstance(cfg, AudioDataSettings) else typed(AudioDataSettings, cfg, "data")
    fmt = s.format()
    path = s.path if s.path == BUILTIN_TONES else os.path.expanduser(s.path)
    speakers = _speakers(path)
    train = load_audio_folder(path, "train", fmt, speakers, s.train_limit)
    test = load_audio_folder(path, "test", fmt, speakers, s.test_limit)
    return AudioData(train, test, fmt, len(speakers), crop_length=s.crop_length,
                     batch_size=s.batch_size, eval_batch_size=s.eval_batch_size or s.batch_size,
                     eval_length=s.eval_length or s.crop_length, eval_context=s.eval_context,
                     seed=seed, source=path)


def _speakers(path: str) -> list[str]:
    if path == BUILTIN_TONES:
        return [name for name, _, _ in TONE_SPEAKERS]
    speakers = list_speakers(path)
    if not speakers:
        raise DataError(f"no speaker folders under {path}/train (expected PATH/train/"
                        "<speaker>/*.wav; see experiments/wavenet/prepare_speech.py)")
    return speakers


def load_speaker_conditioning(path: str, fmt: AudioFormat, length: int) -> SpeakerConditioning:
    """`AudioData.speaker_conditioning` of the whole test split of the folder `path` (no
    `test_limit`), read from disk: what a family needs before it samples."""
    speakers = _speakers(path)
    test = load_audio_folder(path, "test", fmt, speakers)
    data = AudioData(test, test, fmt, len(speakers), crop_length=fmt.hop, batch_size=1,
                     eval_batch_size=1, eval_length=fmt.hop, eval_context=0)
    return data.speaker_conditioning(length)
