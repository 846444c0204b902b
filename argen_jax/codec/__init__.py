"""A trained model as a lossless codec: entropy coding (constriction's range coder) driven by
the model's exact discrete distributions, step by step in its sampler's order.

    codec = Codec.load(workdir)              # the run's family and newest (EMA) parameters
    files = codec.encode(arrays, labels)     # [Encoded(data=bytes, table_bits, ...)]
    arrays = codec.decode([f.data for f in files])

`python -m argen_jax.codec encode|decode` is the command line (PNG / idx images, WAV audio,
.npy token maps); `format.py` is the file layout, `tables.py` the integer tables, `coder.py`
the shared step walk of the encoder and the decoder. docs/design.md says what makes a file
decodable.
"""
from argen_jax.codec.coder import Codec, Encoded

__all__ = ["Codec", "Encoded"]
