"""User-facing errors: one line that names the file and the problem, exit status 2.

Every command line of the toolkit wraps its work in :func:`exit_on_input_error`, so a
bad file never produces a traceback, only ``error: <file>: <problem>``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TypeVar

__all__ = ["InputError", "exit_on_input_error", "cli_entry"]

EXIT_BAD_INPUT = 2
F = TypeVar("F", bound=Callable[..., object])


class InputError(Exception):
    """A problem with something the user gave us (a file, a folder, an option).

    Args:
        source: the file or folder at fault (or an option name such as ``--root``).
        problem: what is wrong with it, in a few words.

    >>> str(InputError("case1/t1.nii.gz", "is 4D (shape 10x10x10x2)"))
    'case1/t1.nii.gz: is 4D (shape 10x10x10x2)'
    """

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


@contextmanager
def exit_on_input_error() -> Iterator[None]:
    """Turn :class:`InputError` into a one-line message on stderr and exit status 2."""
    try:
        yield
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None


def cli_entry(main: F) -> F:
    """Decorator for console-script entry points (see :func:`exit_on_input_error`)."""

    @wraps(main)
    def wrapper(*args: object, **kwargs: object) -> object:
        with exit_on_input_error():
            return main(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
