"""Memory benchmarks: compiled memory plans and peak RSS."""
