"""Template pools: instructions phrased from data files, rendered in a sandbox."""
