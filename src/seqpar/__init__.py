"""seqpar: parallel vs sequential test-time scaling for reasoning models.

The Python API (docs/api.md) is loaded on first use, so `import seqpar` stays fast and
free of torch: `seqpar.load_run`, `seqpar.load_study`, `seqpar.summaries`,
`seqpar.start_run`, `seqpar.start_study`, `seqpar.browse`, `seqpar.RunConfig`, …
"""

__version__ = "0.1.0"

__all__ = [  # the API, loaded on first use (see __getattr__)
    "AblationSpec",
    "HybridSpec",
    "NoveltySpec",
    "PaddedSpec",
    "ParallelSpec",
    "Run",
    "RunConfig",
    "SamplingParams",
    "SequentialSpec",
    "SequentialTemplate",
    "Study",
    "TaskSpec",
    "__version__",
    "browse",
    "load_run",
    "load_study",
    "samples_frame",
    "start_run",
    "start_study",
    "summaries",
]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (PEP 781)
if TYPE_CHECKING:
    from seqpar.api import (
        AblationSpec,
        HybridSpec,
        NoveltySpec,
        PaddedSpec,
        ParallelSpec,
        Run,
        RunConfig,
        SamplingParams,
        SequentialSpec,
        SequentialTemplate,
        Study,
        TaskSpec,
        browse,
        load_run,
        load_study,
        samples_frame,
        start_run,
        start_study,
        summaries,
    )


def __getattr__(name: str) -> object:
    """The API names, imported from seqpar.api on first use."""
    if name in __all__:
        from seqpar import api

        return getattr(api, name)
    raise AttributeError(f"module 'seqpar' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
