"""The error a user's data or task definition raises (re-exported by eval.inputs.sources and eval.inputs.data): its
message says how to fix it, and every command prints it as one line (eval.run.cli.report_errors)."""


class DataError(ValueError):
    """A problem with the user's data or task definition; the message says how to fix it."""
