"""The base of every error the pipeline reports to people as a message, not a stack trace."""


class PipelineError(Exception):
    """A failure with a message that says what is wrong and, where possible, what to do."""


class InputError(PipelineError):
    """The input of a job is missing, empty or unusable as a whole."""
