"""One-line errors for the command-line entry points (prepare, train, eval, infer, list_tasks).

An expected user mistake (a missing path, an unknown name, a gin typo, a checkpoint that does not
fit the model, a missing or malformed flag) prints `error: <message>` on stderr and ends the
process with status 2, without a traceback; `--debug` re-raises it with its traceback. Anything
else is a bug and keeps its traceback. The absl entry points get `--debug` from
p5_jax.gin_bindings, the argparse ones from `add_debug_argument`; argparse entry points build
their parser with `ArgumentParser`, whose flag mistakes are one line too.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable
from typing import NoReturn

STATUS = 2
DEBUG_HELP = "Show an error's traceback instead of one `error: ...` line."


class JobError(Exception):
    """A problem with the job's settings or inputs for the user to fix (a wrong model file, a
    checkpoint that does not fit); the entry point prints its message on one line."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message  # gin appends "In call to configurable ..." to str(error)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with a flag mistake (a missing, unknown or malformed flag) reported as
    one `error: ...` line and status 2 instead of the usage text."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr, flush=True)
        sys.exit(STATUS)


def add_debug_argument(parser) -> None:
    """`--debug` for an argparse entry point."""
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)


def message_of(error: BaseException) -> str:
    """The error's own first line, without what gin appends to errors raised in configurables."""
    text = (error.message if isinstance(error, JobError) else str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def handle(error: BaseException, *, debug: bool, note: str | None = None) -> int:
    """For an `except` block: re-raises `error` (traceback and all) under --debug, else prints
    it as one `error: ...` line (ending in "(note)" when given) and returns the exit status."""
    if debug:
        raise error
    print(f"error: {message_of(error)}" + (f" ({note})" if note else ""), file=sys.stderr,
          flush=True)
    return STATUS


def did_you_mean(name: str, known: Iterable[str], *, cutoff: float = 0.6) -> str:
    """" (did you mean X?)" for the known name nearest to `name`, or "" when none is near."""
    nearest = difflib.get_close_matches(name, sorted(set(known)), n=1, cutoff=cutoff)
    return f" (did you mean {nearest[0]}?)" if nearest else ""
