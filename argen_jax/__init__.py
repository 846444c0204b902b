"""argen_jax: autoregressive generative models in JAX/Flax.

Importing the package does no work (no environment changes): see `argen_jax.xla_env.apply`
for the recommended CPU XLA flags.
"""
