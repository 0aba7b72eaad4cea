"""Typed domain errors. They carry a human message; only the CLI turns them into exit codes."""


class PoolerError(Exception):
    """Base of every expected failure: the CLI prints `Error: <message>` and exits with `exit_code`."""

    exit_code = 1


class UsageError(PoolerError):
    """The command was called wrongly (a bad option value, a missing file): exit code 2."""

    exit_code = 2


class NotFound(PoolerError):
    """A record, period or run that the command names does not exist."""
