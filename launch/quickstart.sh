#!/usr/bin/env bash
# The main job on a fresh machine: set up ./.venv if needed, then train, evaluate and sample a
# class-conditional Gated PixelCNN on MNIST that ships with a pip package (no download).
# Extra arguments go to launch/main.py, e.g. `bash launch/quickstart.sh --config=...:tiny`.
set -euo pipefail
ARGEN_EXTRAS=test . "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
python launch/main.py --config=experiments/pixelcnn/mnist.py:tiny --workdir=runs/mnist_tiny "$@"
