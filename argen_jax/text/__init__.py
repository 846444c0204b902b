"""Text encoders for caption conditions: a Flax T5 v1.1 / FLAN-T5 encoder (`t5.py`) loading
Hugging Face folders (`hf_folder.py`), LlamaGen's caption cleaning and the SentencePiece
tokenizer (`tokenizer.py`), the sharded frozen encoder (`encoder.py`) and the
`python -m argen_jax.text features` command (`__main__.py`)."""
