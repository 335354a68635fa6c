"""Independent array work side by side, within the process's thread budget.

SciPy's ``ndimage`` filters and resampling, NumPy's sorting and zlib release the GIL, so two
such calls on two cores take the time of one. The budget is the one a cluster task is given
(:func:`runtime.cluster.cap_threads` sets ``OMP_NUM_THREADS``): a task capped to one thread
runs the calls one after the other. Results never depend on the order.

>>> in_parallel(lambda: 1 + 1, lambda: 2 * 3)
[2, 6]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["thread_budget", "in_parallel", "map_in_parallel"]

T = TypeVar("T")
R = TypeVar("R")


def thread_budget() -> int:
    """Threads this process may keep busy: ``OMP_NUM_THREADS`` when set, else the CPUs it may use."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def in_parallel(*calls: Callable[[], T]) -> list[T]:
    """Each call's result, in order; run side by side when the budget allows."""
    return list(map_in_parallel(lambda call: call(), calls))


def map_in_parallel(function: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``map(function, items)`` with up to :func:`thread_budget` calls at a time, in order."""
    threads = thread_budget()
    if threads == 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        yield from pool.map(function, items)
