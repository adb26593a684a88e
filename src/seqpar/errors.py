"""The one exception type users see: a message that names the bad input and the fix."""


class SeqparError(Exception):
    """A user-facing error; the CLI prints its message without a traceback."""


def unknown(kind: str, value: str, known: list[str] | tuple[str, ...]) -> SeqparError:
    """Build the standard "unknown X 'v'; known: a, b, …" error."""
    return SeqparError(f"unknown {kind} {value!r}; known: {', '.join(known)}")


# How a grade that could not be computed starts its reason (counted by `seqpar report`).
HARNESS_ERROR = "harness error"
# The reason of a math grade whose equivalence check ran out of time (counted incorrect).
GRADE_TIMED_OUT = "grading timed out"
