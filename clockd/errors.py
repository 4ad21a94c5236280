"""Errors a user can fix. The command line prints them as one line each, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in input the user controls (files, arguments, environment)."""

    exit_code = 1


class ConfigError(UserError):
    """devices.yaml or the roster is invalid; carries one message per problem."""

    exit_code = 2

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(problems))

    def lines(self) -> list[str]:
        return [f"{self.source}: {problem}" for problem in self.problems]


class InputError(UserError):
    """An argument, file or setting that cannot be used as given (a usage error, like
    argparse's own)."""

    exit_code = 2
