"""argen_jax: autoregressive generative models in JAX/Flax."""
