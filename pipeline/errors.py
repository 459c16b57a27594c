"""The base of every error the pipeline reports to people as a message, not a stack trace."""


class PipelineError(Exception):
    """A failure with a message that says what is wrong and, where possible, what to do."""


class InputError(PipelineError):
    """The input of a job is missing, empty or unusable as a whole."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (or its type), for a one-line report."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
