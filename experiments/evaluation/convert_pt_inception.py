"""Convert pytorch-fid's FID Inception weights (a PyTorch state dict) to a .npz for JAX.

    python -m experiments.evaluation.convert_pt_inception \
        pt_inception-2015-12-05-6726825d.pth inception_fid.npz

Get the .pth from github.com/mseitzer/pytorch-fid/releases (tag `fid_weights`); it holds the
2015-12-05 TensorFlow Inception graph's weights used by FID / the ADM evaluator. Needs
PyTorch once, here only (`pip install torch==2.13.0`, CPU wheel); the .npz keeps the state
dict's names and layouts and is read by argen_jax.evaluation.inception.load_params.
"""
import sys

import numpy as np

from argen_jax.evaluation import inception


def convert(state_dict: dict, out_path: str) -> None:
    """state dict of arrays -> validated .npz (raises CheckpointError on a wrong network)."""
    sd = {k: np.asarray(v, np.float32) for k, v in state_dict.items()
          if not k.endswith("num_batches_tracked")}
    inception.state_dict_to_variables(sd)  # validates names and shapes
    inception.save_npz(out_path, sd)


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    import torch

    sd = torch.load(argv[1], map_location="cpu", weights_only=True)
    convert({k: v.numpy() for k, v in sd.items()}, argv[2])
    print(f"wrote {argv[2]} ({len(sd)} tensors)")


if __name__ == "__main__":
    main(sys.argv)
