"""The names of a study's runs (its directories), shared by the planner and the report."""

from __future__ import annotations

PLAN_FILE = "study.json"  # the study's settings, analysis plan and run names
PARALLEL = "parallel"
SEQUENTIAL = "sequential"
PADDED = "padded-parallel"
PADDED_NEUTRAL = "padded-parallel-neutral"
ABLATE_TOP = "sequential-ablate-top"
ABLATE_RANDOM = "sequential-ablate-random"
HYBRID_PREFIX = "hybrid-k"


def padded_long(scale: float) -> str:
    """The padded-parallel run whose filler is `scale` times as long."""
    return f"{PADDED}-x{scale:g}"


def hybrid(k: int) -> str:
    """The hybrid run with k sequential rounds."""
    return f"{HYBRID_PREFIX}{k}"


def feedback(level: str) -> str:
    """The sequential run whose rounds see `level` feedback."""
    return f"{SEQUENTIAL}-feedback-{level}"


def rejecting(strategy: str) -> str:
    """The run of `strategy` with rejection of repeated behaviour."""
    return f"{strategy}-reject"
