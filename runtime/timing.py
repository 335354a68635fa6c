"""Where the time goes: wall seconds per named stage of one run.

A run opens :func:`timed`; the code it calls marks its stages with :func:`stage` wherever they
are (reading, brain mask, registration, a model's inference...), without a timer passed down
every call. Outside :func:`timed` a stage costs nothing and records nothing.

>>> with timed() as seconds:
...     with stage("read"):
...         pass
...     with stage("read"):
...         pass
>>> list(seconds)
['read']
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from time import perf_counter

__all__ = ["timed", "stage", "format_stages"]

_ACTIVE: ContextVar[dict[str, float] | None] = ContextVar("mslong_stage_seconds", default=None)


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Collect the seconds of every :func:`stage` run inside the block, by name, in order."""
    seconds: dict[str, float] = {}
    token = _ACTIVE.set(seconds)
    try:
        yield seconds
    finally:
        _ACTIVE.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Add the block's wall seconds to stage ``name`` of the enclosing :func:`timed` run."""
    seconds = _ACTIVE.get()
    if seconds is None:
        yield
        return
    start = perf_counter()
    try:
        yield
    finally:
        seconds[name] = seconds.get(name, 0.0) + perf_counter() - start


def format_stages(seconds: dict[str, float], total: float | None = None) -> str:
    """A small table: one stage a line with its seconds and share of the total.

    >>> print(format_stages({"read": 1.0, "write": 3.0}))
    stage  seconds  share
    read       1.0    25%
    write      3.0    75%
    total      4.0   100%
    """
    total = sum(seconds.values()) if total is None else total
    width = max(len(name) for name in [*seconds, "total", "stage"])
    lines = [f"{'stage':<{width}}  seconds  share"]
    for name, value in [*seconds.items(), ("total", total)]:
        lines.append(f"{name:<{width}}  {value:7.1f}  {value / total if total else 0:5.0%}")
    return "\n".join(lines)
