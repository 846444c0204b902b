"""Vector quantizers, split along their three seams:

    codebook.py    `VectorQuantizer`: one codebook, single-scale VQ (VQGAN / LlamaGen), its
                   losses, EMA / dead-code-restart state and usage statistics
    resample.py    area downsampling and cubic (jax or PyTorch bicubic) upsampling of latents
    multiscale.py  `MultiScaleResidualQuantizer` (VAR) over one shared codebook, and the
                   flattening of per-scale token maps

The public names are re-exported here: `from argen_jax.layers import quantizer as qlib`.
"""
from argen_jax.layers.quantizer.codebook import (
    RESTART_RNG,
    STATE,
    QuantizerOutput,
    VectorQuantizer,
    entropy_loss,
    l2_normalize,
    perplexity_from_counts,
    usage_from_counts,
)
from argen_jax.layers.quantizer.multiscale import (
    MultiScaleResidualQuantizer,
    Phi,
    flatten_scales,
    split_scales,
)
from argen_jax.layers.quantizer.resample import (
    UPSAMPLE_METHODS,
    area_matrix,
    downsample,
    resize2d,
    torch_bicubic_matrix,
    upsample,
    upsample_matrix,
)

__all__ = [
    "RESTART_RNG", "STATE", "UPSAMPLE_METHODS", "MultiScaleResidualQuantizer", "Phi",
    "QuantizerOutput", "VectorQuantizer", "area_matrix", "downsample", "entropy_loss",
    "flatten_scales", "l2_normalize", "perplexity_from_counts", "resize2d", "split_scales",
    "torch_bicubic_matrix", "upsample", "upsample_matrix", "usage_from_counts",
]
