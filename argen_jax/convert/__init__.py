"""Importers of other codebases' released checkpoints into argen_jax parameters.

Each converter reads a state dict (torch tensors or numpy arrays; torch itself is only needed
to open a `.pt` file: `pip install argen_jax[convert]`) and returns our `params` tree, checked
against the target module's shapes."""
