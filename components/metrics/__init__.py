"""AU metrics: occurrence scores, curves, intensity agreement, resampling."""
