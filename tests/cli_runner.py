"""Running `clockd` as tests need it: in this process through `main(argv)`, which exercises the
same parser, handlers, messages and exit codes without paying for a fresh interpreter and its
imports, or as a real process where one matters (signals, a killed process, locks held by
another process, the module entry point)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from clockd.cli import main


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any CLOCKD_* setting, plus `extra`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLOCKD_")}
    environ.update(extra or {})
    return environ


def run_clockd(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str = "",
) -> Result:
    """`clockd ARGS` in this process, in folder `cwd`, with the environment of `environment`
    and `stdin` as its standard input (not a terminal, as from a pipe).

    The working folder, the environment, standard input and the root logger are restored
    afterwards.
    """
    saved_environ, saved_cwd, saved_stdin = dict(os.environ), os.getcwd(), sys.stdin
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(environment(env))
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin = io.StringIO(stdin)
        with redirect_stdout(stdout), redirect_stderr(stderr):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse: --help, a usage error
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin = saved_stdin
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    return Result(code, stdout.getvalue(), stderr.getvalue())


def clockd_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "clockd", *args]


def spawn_clockd(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdout: int | IO[str] | None = subprocess.PIPE,
    stderr: int | IO[str] | None = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """`python -m clockd ARGS` as a process of its own, running on while the test goes on."""
    return subprocess.Popen(
        clockd_command(*args),
        cwd=cwd,
        env=environment(env),
        stdout=stdout,
        stderr=stderr,
        text=True,
    )


def run_clockd_process(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> Result:
    """`python -m clockd ARGS` as a process of its own, waited for (and killed after
    `timeout` seconds)."""
    process = spawn_clockd(*args, cwd=cwd, env=env)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return Result(process.returncode, stdout, stderr)
