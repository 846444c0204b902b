"""argen_jax: autoregressive generative models in JAX/Flax."""
from argen_jax import xla_env as _xla_env

_xla_env.apply()  # CPU XLA flags; must precede the first JAX computation (see xla_env.py)
