"""seqpar: parallel vs sequential test-time scaling for reasoning models."""

__version__ = "0.1.0"
