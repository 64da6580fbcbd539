"""bench: a benchmark harness for normalizing-flow priors in inverse problems."""

__version__ = "0.1.0"
