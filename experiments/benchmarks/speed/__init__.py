"""Speed benchmarks: times and ratios measured side by side in one run."""
