"""The benchmark suite: `python -m experiments.benchmarks.<kind>.<name>`, kinds speed, memory,
quality and checks; common.py says how a benchmark is written."""
