"""Synthesise a small multi-speaker English speech corpus offline with Debian's espeak-ng.

    apt-get update && apt-get install -y espeak-ng
    python experiments/wavenet/prepare_speech.py --out=/tmp/speech

Writes OUT/{train,test}/<voice>/<k>.wav (espeak-ng's native 22,050 Hz, 16-bit mono; the data
loader resamples to the config's rate) and OUT/sentences.txt. Every voice (an espeak-ng
language + variant + pitch + speed; the speaker of global conditioning) reads its own
random sentences from a small seeded grammar; test sentences are drawn from a disjoint set
(no test sentence appears in training), so the held-out NLL is on speech the model did not
train on. Deterministic for a given --seed. Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess

import numpy as np

# (name, espeak voice, pitch 0-99, words per minute): accents, genders and pitch differ.
VOICES = (
    ("us_m", "en-us", 45, 155),
    ("us_f", "en-us+f3", 60, 150),
    ("gb_m", "en-gb", 35, 145),
    ("gb_f", "en-gb+f4", 70, 160),
    ("scot_m", "en-gb-scotland+m3", 40, 140),
    ("rp_f", "en-gb-x-rp+f2", 55, 150),
    ("carib_m", "en-029+m5", 50, 165),
    ("nyc_f", "en-us-nyc+f1", 65, 155),
)

SUBJECTS = ("the old man", "a small dog", "my sister", "the teacher", "our neighbour",
            "the young pilot", "a tired farmer", "the quiet child", "his brother",
            "the city council", "a clever student", "the baker", "her friend", "the captain")
VERBS = ("found", "painted", "carried", "opened", "watched", "sold", "borrowed", "cleaned",
         "described", "followed", "repaired", "forgot", "packed", "counted")
OBJECTS = ("a red box", "the heavy door", "three green apples", "the broken clock",
           "a letter from home", "the wooden boat", "seven silver coins", "the long rope",
           "a basket of bread", "the blue kite", "an empty bottle", "the map of the island")
PLACES = ("near the river", "after dinner", "in the morning", "on the hill", "at the market",
          "before the storm", "in the garden", "under the bridge", "during the summer",
          "by the station", "at midnight", "behind the school")


def sentences(rng: np.random.Generator, n: int, exclude: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        s = " ".join([SUBJECTS[rng.integers(len(SUBJECTS))], VERBS[rng.integers(len(VERBS))],
                      OBJECTS[rng.integers(len(OBJECTS))], PLACES[rng.integers(len(PLACES))]])
        s = s[0].upper() + s[1:] + "."
        if s not in exclude and s not in out:
            out.append(s)
    return out


def synthesize(text: str, voice: str, pitch: int, speed: int, path: str) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", path,
                    text], check=True, capture_output=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="/tmp/speech")
    p.add_argument("--voices", type=int, default=len(VOICES), help="how many voices to use")
    p.add_argument("--train_per_voice", type=int, default=60)
    p.add_argument("--test_per_voice", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found: apt-get update && apt-get install -y espeak-ng")
    rng = np.random.default_rng(args.seed)
    voices = VOICES[: args.voices]
    test_pool = sentences(rng, args.test_per_voice * 2, set())
    held_out = set(test_pool)
    lines = []
    for name, voice, pitch, speed in voices:
        splits = {"test": [test_pool[i] for i in rng.permutation(len(test_pool))
                           [: args.test_per_voice]],
                  "train": sentences(rng, args.train_per_voice, held_out)}
        for split, texts in splits.items():
            d = os.path.join(args.out, split, name)
            os.makedirs(d, exist_ok=True)
            for k, text in enumerate(texts):
                synthesize(text, voice, pitch, speed, os.path.join(d, f"{k:04d}.wav"))
                lines.append(f"{split}\t{name}\t{k:04d}\t{text}")
        print(f"{name}: {len(splits['train'])} train, {len(splits['test'])} test utterances")
    with open(os.path.join(args.out, "sentences.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
