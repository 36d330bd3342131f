"""jwtkit's benchmarks: jwtkit beside its peers, in one run, as medians and ratios (`make bench`)."""
