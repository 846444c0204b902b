"""A run directory on disk: its config.json (`run_dir`) and Orbax checkpoints (`checkpoint`).

Below `models/` and `train/`: the loop writes runs, and anything that reopens one (a trained
tokenizer, a token file's tokenizer, the converters) reads them here without the loop.
"""
