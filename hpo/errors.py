"""The one exception the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a study file, an argument, a missing file or study.

    The message is shown as it is, on one line, so it must name the file or
    argument, the field and what is allowed.
    """


class SpecError(UserError):
    """A study file (or a ``--set`` override) that does not validate."""

    def __init__(self, source: str, field: str, message: str):
        self.source, self.field = source, field
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {message}")
