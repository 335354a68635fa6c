"""Command-line parsers whose defaults live in the library, not beside the flags.

A parser built with :func:`defaults_from` leaves every flag it does not set explicitly out of
the parsed namespace (``argparse.SUPPRESS``), so the options dataclass or function it feeds fills
in its own defaults: one source for each. ``--help`` still prints them: the formatter imports the
target only when help is asked for, so parsing a command line stays free of heavy imports.

>>> import argparse
>>> commands = argparse.ArgumentParser(prog="tool").add_subparsers(dest="command")
>>> train = commands.add_parser("train", **defaults_from("unext_long.options:TrainOptions"))
>>> _ = train.add_argument("--epochs", type=int, help="passes over the data")
>>> vars(train.parse_args([]))
{}
>>> "(default: 100)" in train.format_help()
True
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import inspect
from typing import Any

from runtime.cluster import CLUSTER_DESTS

__all__ = ["defaults_from", "library_defaults", "given_arguments"]


def library_defaults(target: str) -> dict[str, Any]:
    """The defaults of ``"module:Name"``: a dataclass's fields or a function's keyword parameters."""
    module, _, name = target.partition(":")
    obj = getattr(importlib.import_module(module), name)
    if dataclasses.is_dataclass(obj):
        return {
            f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(obj)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        }
    return {
        p.name: p.default
        for p in inspect.signature(obj).parameters.values()
        if p.default is not inspect.Parameter.empty
    }


def _shown(value: Any) -> str | None:
    """How a default reads in ``--help``; None where there is nothing to say (off, unset)."""
    if value is None or value is False or value == ():
        return None
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


class _LibraryDefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to each suppressed flag, X read from the target."""

    def __init__(self, prog: str, *, target: str) -> None:
        super().__init__(prog)
        self._target = target

    @functools.cached_property
    def _defaults(self) -> dict[str, Any]:
        return library_defaults(self._target)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is not argparse.SUPPRESS or action.dest not in self._defaults:
            return text
        shown = _shown(self._defaults[action.dest])
        return f"{text} (default: {shown})".lstrip() if shown else text


def defaults_from(target: str) -> dict[str, Any]:
    """``ArgumentParser``/``add_parser`` keywords: unset flags take their defaults from ``target``.

    ``target`` is ``"module:Name"``. Flags given an explicit ``default=`` keep it: those are the
    command line's own (``--gpus``).
    """
    return {
        "argument_default": argparse.SUPPRESS,
        "formatter_class": functools.partial(_LibraryDefaultsFormatter, target=target),
    }


def given_arguments(args: argparse.Namespace, *leave_out: str) -> dict[str, Any]:
    """The flags the user gave, lists as tuples, without ``leave_out`` and the cluster flags
    (those are :func:`runtime.cluster.cluster_options`'): the keywords of the options a command fills."""
    skip = {*leave_out, *CLUSTER_DESTS}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items() if k not in skip}
