"""User-facing errors: one line that names the file and the problem, exit status 2.

Every command line of the toolkit wraps its work in :func:`exit_on_input_error`, so a
bad file never produces a traceback, only ``error: <file>: <problem>``. The file system's own
refusals (disk full, read-only folder, a folder where a file should go) end the same way:
they are the user's to fix, not a bug to trace.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TypeVar

__all__ = ["InputError", "exit_on_input_error", "cli_entry"]

EXIT_BAD_INPUT = 2
F = TypeVar("F", bound=Callable[..., object])
# What the file system answers about a path the user chose (not a bug of ours).
FILE_SYSTEM_ERRORS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.EEXIST,
        errno.ENAMETOOLONG,
        errno.ENOENT,
        errno.EIO,
    }
)


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
    """Turn :class:`InputError`, and the file system's refusals, into a one-line message on
    stderr and exit status 2."""
    try:
        yield
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except OSError as error:
        if error.errno not in FILE_SYSTEM_ERRORS:
            raise
        print(f"error: {error.filename or 'output'}: {error.strerror}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None


def cli_entry(main: F) -> F:
    """Decorator for console-script entry points (see :func:`exit_on_input_error`)."""

    @wraps(main)
    def wrapper(*args: object, **kwargs: object) -> object:
        with exit_on_input_error():
            return main(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
