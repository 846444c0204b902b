"""Correctness checks run end to end (not timed): resume after a kill, ..."""
