"""Quality benchmarks: likelihoods, sample metrics, compressed sizes."""
