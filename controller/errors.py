"""Errors the CLI shows as one line (kept apart from cli.py so `python -m controller.cli`
and the console script raise and catch the same class)."""


class CommandError(Exception):
    """An error the operator sees as one line on stderr; `code` is the exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code
